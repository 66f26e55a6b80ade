"""android_bench against what real adb clients and phones do: both wordings of adb's errors, a
phone that stops trusting the computer mid-sweep, failed thermal/clock readings, and a hung
benchmark_model that keeps running on the phone after the host gave up on it."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fake_adb"))
import fakeadb  # noqa: E402

from android_bench import android  # noqa: E402
from android_bench.adb import Adb, CommandResult, connect  # noqa: E402
from android_bench.android import REMOTE_ROOT, run_android_sweep  # noqa: E402
from android_bench.cli import main as cli_main  # noqa: E402
from android_bench.errors import (DeviceDisconnectedError, LeftoverProcessError,  # noqa: E402
                                  MultipleDevicesError, NoDeviceError, UnauthorizedDeviceError)
from android_bench.models import load_models_dir  # noqa: E402
from android_bench.plan import PlanConfig  # noqa: E402
from android_bench.results import ResultsLog  # noqa: E402

QUICK = dict(num_runs=5, min_secs=0.0, warmup_runs=1, warmup_min_secs=0.0)


@pytest.fixture()
def models_dir(tmp_path: Path) -> Path:
    return fakeadb.fake_models_dir(tmp_path)


def _sweep(fake, models_dir, out, **kw):
    config = PlanConfig(threads=(1,), repeats=1, **QUICK)
    return run_android_sweep(load_models_dir(models_dir), out, fakeadb.fake_benchmark_binary(out.parent),
                             config, adb_path=str(fake.adb), progress=lambda _line: None, **kw)


# ----- adb's wordings ---------------------------------------------------------------------------
@pytest.mark.parametrize("line, error", [
    ("error: device 'X1' not found", DeviceDisconnectedError),           # adb <= 33
    ("adb: device 'X1' not found", DeviceDisconnectedError),             # current platform-tools
    ("adb: error: failed to get feature set: device 'X1' not found",     # push/pull, Debian's adb 29
     DeviceDisconnectedError),
    ("error: no devices/emulators found", DeviceDisconnectedError),
    ("adb: no devices/emulators found", DeviceDisconnectedError),
    ("error: device offline", DeviceDisconnectedError),
    ("adb: device offline", DeviceDisconnectedError),
    ("error: device unauthorized.", UnauthorizedDeviceError),
    ("adb: device unauthorized.", UnauthorizedDeviceError),
])
def test_both_wordings_of_adb_errors_are_recognised(line, error):
    result = CommandResult(["adb", "-s", "X1", "shell", "true"], 1, "", line + "\n")
    with pytest.raises(error):
        Adb("adb", "X1")._raise_for_device_error(result)


def test_benchmark_model_error_lines_are_not_taken_for_adb_errors():
    text = "ERROR: device offline? no: Failed to apply GPU delegate.\nadb: usage: ...\n"
    Adb("adb", "X1")._raise_for_device_error(CommandResult(["adb"], 1, text, ""))


def test_modern_fake_wordings_map_to_the_same_errors_as_the_legacy_ones(tmp_path):
    gone = fakeadb.install(tmp_path / "gone", [fakeadb.device("FAKE0001", gone=True)], wording="modern")
    with pytest.raises(DeviceDisconnectedError, match="disconnected: adb: device 'FAKE0001' not found"):
        Adb(str(gone.adb), "FAKE0001").shell(["true"])
    with pytest.raises(DeviceDisconnectedError, match="disconnected: adb: no devices/emulators found"):
        Adb(str(gone.adb)).shell(["true"])
    locked = fakeadb.install(tmp_path / "locked", [fakeadb.device(state="unauthorized")], wording="modern")
    with pytest.raises(UnauthorizedDeviceError, match="device FAKE0001 is unauthorized: unlock the phone"):
        Adb(str(locked.adb), "FAKE0001").shell(["getprop"])
    offline = fakeadb.install(tmp_path / "offline", [fakeadb.device(state="offline")], wording="modern")
    with pytest.raises(DeviceDisconnectedError, match="disconnected: adb: device offline"):
        Adb(str(offline.adb), "FAKE0001").get_state()
    two = fakeadb.install(tmp_path / "two", [fakeadb.device("A1"), fakeadb.device("B2")], wording="modern")
    with pytest.raises(MultipleDevicesError, match="2 devices connected"):
        connect(str(two.adb))
    none = fakeadb.install(tmp_path / "none", [], wording="modern")
    with pytest.raises(NoDeviceError, match="no Android device found"):
        connect(str(none.adb))


# ----- unauthorized mid-sweep -------------------------------------------------------------------
@pytest.mark.parametrize("wording", ["legacy", "modern"])
def test_phone_unauthorized_mid_sweep_is_reported_as_unauthorized(tmp_path, models_dir, wording):
    fake = fakeadb.install(tmp_path, wording=wording)
    fake.set_faults(unauthorize_on_run=2)
    with pytest.raises(UnauthorizedDeviceError) as e:
        _sweep(fake, models_dir, tmp_path / "out")
    message = str(e.value)
    assert message.startswith("device FAKE0001 is unauthorized: unlock the phone")
    assert "disconnected" not in message
    assert "2 of 3 runs are saved" in message and "accept the prompt on the phone" in message
    records = ResultsLog(tmp_path / "out").read()
    assert [r["status"] for r in records] == ["ok", "ok"]  # run 2 finished before the phone locked
    assert records[1]["thermal_after"] is None and "unauthorized" in records[1]["reading_errors"]["after"]


def test_cli_exit_status_3_and_message_for_unauthorized_mid_sweep(tmp_path, models_dir, capsys):
    fake = fakeadb.install(tmp_path, wording="modern")
    fake.set_faults(unauthorize_on_run=1)
    rc = cli_main(["run", "--benchmark_binary", str(fakeadb.fake_benchmark_binary(tmp_path)),
                   "--models_dir", str(models_dir), "--out", str(tmp_path / "out"), "--adb", str(fake.adb),
                   "--repeats", "1", "--num_runs", "5", "--min_secs", "0", "--warmup_min_secs", "0"])
    assert rc == 3
    assert "error: device FAKE0001 is unauthorized" in capsys.readouterr().err


# ----- thermal / clock readings -------------------------------------------------------------------
def test_failed_thermal_reading_is_recorded_as_failed_not_absent(tmp_path, models_dir):
    fake = fakeadb.install(tmp_path)
    fake.set_faults(sysfs_unreadable=True)
    report = _sweep(fake, models_dir, tmp_path / "out")
    assert report.ok == 3  # a reading that fails never costs the run
    for r in ResultsLog(tmp_path / "out").read():
        assert r["thermal_before"] is None and r["cpufreq_after"] is None
        assert r["reading_errors"]["before"].startswith("thermal/cpufreq reading failed (exit 2): grep: ")
        assert "Permission denied" in r["reading_errors"]["after"]


def test_successful_readings_have_no_reading_errors(tmp_path, models_dir):
    fake = fakeadb.install(tmp_path)
    _sweep(fake, models_dir, tmp_path / "out")
    records = ResultsLog(tmp_path / "out").read()
    assert all(r["reading_errors"] == {} and len(r["thermal_before"]) == 3 for r in records)


# ----- a hung run left running on the phone -----------------------------------------------------
def test_hung_run_that_ignores_sigterm_is_killed_with_sigkill_and_checked_gone(tmp_path, models_dir,
                                                                              monkeypatch):
    monkeypatch.setattr(android, "KILL_GRACE_SECS", 0.2)
    fake = fakeadb.install(tmp_path)
    fake.set_faults(hang_on_runs=[1], survives_pkill="term")
    report = _sweep(fake, models_dir, tmp_path / "out", timeout_secs=1.5)
    assert (report.ok, report.failed) == (2, 1)
    assert "killed it on the device (checked: gone)" in report.failures[0]
    shell = [c[3] for c in fake.calls() if c[2:3] == ["shell"]]
    pattern = f"'{REMOTE_ROOT}/[b]enchmark_model'"
    assert f"pkill -f {pattern}" in shell and f"pkill -9 -f {pattern}" in shell
    assert f"pgrep -f {pattern}" in shell
    assert fake.procs() == []


def test_benchmark_that_survives_sigkill_stops_the_sweep(tmp_path, models_dir, monkeypatch):
    monkeypatch.setattr(android, "KILL_GRACE_SECS", 0.2)
    fake = fakeadb.install(tmp_path)
    fake.set_faults(hang_on_runs=[1], survives_pkill="all")
    with pytest.raises(LeftoverProcessError, match=r"still running on device FAKE0001 \(pid 4243\)"):
        _sweep(fake, models_dir, tmp_path / "out", timeout_secs=1.5)
    records = ResultsLog(tmp_path / "out").read()
    assert [r["status"] for r in records] == ["timeout"]  # nothing was timed next to it
    assert "still running on the device after pkill and pkill -9 (pid 4243)" in records[0]["error"]["message"]
    assert fake.runs() == 1


def test_phone_without_pgrep_still_gets_sigkill_and_the_record_says_unverified(tmp_path, models_dir,
                                                                               monkeypatch):
    monkeypatch.setattr(android, "KILL_GRACE_SECS", 0.2)
    fake = fakeadb.install(tmp_path)
    fake.set_faults(hang_on_runs=[1], missing_commands=["pgrep"])
    report = _sweep(fake, models_dir, tmp_path / "out", timeout_secs=1.5)
    assert (report.ok, report.failed) == (2, 1)
    assert "could not check that it is gone (no pgrep on the device)" in report.failures[0]
    assert f"pkill -9 -f '{REMOTE_ROOT}/[b]enchmark_model'" in [c[3] for c in fake.calls() if c[2:3] == ["shell"]]
    assert fake.procs() == []


def test_fake_pkill_whose_pattern_matches_its_own_shell_kills_that_shell(tmp_path):
    """Why the harness brackets a letter of the pattern: a plain path matches the device shell
    that runs pkill, and pkill kills it (exit 143), as on a phone."""
    fake = fakeadb.install(tmp_path)
    adb = connect(str(fake.adb))
    plain = adb.shell(["pkill", "-f", f"{REMOTE_ROOT}/benchmark_model"])
    bracketed = adb.shell(["pkill", "-f", f"{REMOTE_ROOT}/[b]enchmark_model"])
    assert (plain.returncode, bracketed.returncode) == (143, 1)
