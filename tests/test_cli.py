"""The main job's command line (tools/merge_and_export.py): help and flag validation.

Each case runs `python -m tools.merge_and_export ...` in a subprocess with this interpreter, from
the repo root (under Bazel: the runfiles copy of it). Only arguments that stop before the pipeline
starts are used: the default run itself is not tested here.
"""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS_IN_HELP = ["--models", "--method", "--criterion", "--budget", "--out", "--compare"]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", PAM_TF_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "tools.merge_and_export", *args],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=timeout)


def test_help_exits_0_and_lists_the_flags():
    proc = run_cli("--help")
    # absl's own --help handler exits with status 1; asking for help is not an error, so the tool
    # turns that into 0.
    assert proc.returncode == 0, (
        f"--help exited {proc.returncode}, expected 0\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    for flag in FLAGS_IN_HELP:
        # absl lists each flag on its own line, booleans as --[no]name: "  --budget: ...".
        listed = re.search(rf"^\s+--(\[no\])?{flag[2:]}:", proc.stdout, re.MULTILINE)
        assert listed, f"{flag} is not listed by --help:\n{proc.stdout}"


@pytest.mark.parametrize("args, message", [
    (["--budget=-1"], "flag --budget=-1: -1.0 is not a non-negative number"),
    (["--method=bogus"], "value should be one of <pam|none|mtz|shared>"),
    (["--criterion=bogus"], "value should be one of <taylor|vib|magnitude>"),
])
def test_invalid_flag_values_fail_with_absl_message(args, message):
    proc = run_cli(*args)
    assert proc.returncode != 0
    assert "Flags parsing error" in proc.stderr, proc.stderr
    assert message in proc.stderr, proc.stderr


def test_method_error_names_every_allowed_value():
    proc = run_cli("--method=bogus")
    assert proc.returncode != 0
    for value in ("pam", "none", "mtz", "shared"):
        assert value in proc.stderr, proc.stderr


def test_stray_positional_argument_fails(tmp_path):
    # --out points into tmp_path so that nothing could land in the repo even if parsing changed.
    proc = run_cli(f"--out={tmp_path / 'out'}", "stray")
    assert proc.returncode != 0
    assert "Unexpected arguments: stray" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_user_path_resolves_against_the_bazel_workspace(monkeypatch):
    # `bazel run` starts the tool inside the runfiles tree; tools._paths.user_path sends relative
    # user paths back to the folder the user ran bazel from ($BUILD_WORKSPACE_DIRECTORY).
    from tools._paths import user_path

    monkeypatch.delenv("BUILD_WORKSPACE_DIRECTORY", raising=False)
    assert user_path("runs/x") == "runs/x"
    assert user_path("") == ""
    monkeypatch.setenv("BUILD_WORKSPACE_DIRECTORY", "/ws")
    assert user_path("runs/x") == os.path.join("/ws", "runs/x")
    assert user_path("/abs/out") == "/abs/out"
    assert user_path("~/out") == os.path.expanduser("~/out")
    assert user_path("") == ""
