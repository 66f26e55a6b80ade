"""tools.ci_adb_check: android_bench against the real adb client (Debian's `adb` package), no
phone needed. Runs where an adb client is installed (CI installs it; see .ci/run)."""
import os
import shutil

import pytest

from tools import ci_adb_check

ADB = shutil.which("adb")


@pytest.mark.skipif(ADB is None, reason="no adb client on PATH (CI installs Debian's adb package; "
                                        "locally: apt-get install -y adb)")
def test_no_device_and_unknown_serial_messages_match_the_real_client(capsys):
    before = os.environ.get("ANDROID_ADB_SERVER_PORT")
    problems = ci_adb_check.run(ADB)
    out = capsys.readouterr().out
    assert problems == []
    if "skipped: the no-device checks" not in out:  # a developer's phone is attached
        assert out.count("  ok   ") == 6
    assert os.environ.get("ANDROID_ADB_SERVER_PORT") == before  # the private server's port is not left behind


def test_missing_adb_client_is_exit_status_2(tmp_path, capsys):
    assert ci_adb_check.main(["--adb", str(tmp_path / "no-adb")]) == 2
    assert "ci_adb_check: error: no adb client at" in capsys.readouterr().err
