r"""Check android_bench against the real ``adb`` client, no phone needed (CI, issue 16).

    python -m tools.ci_adb_check                # adb from PATH
    python -m tools.ci_adb_check --adb /usr/bin/adb

The fake adb of the tests prints what we believe adb prints; this runs the paths a user without
a phone (or with a mistyped serial) meets against the client itself, and checks the exact
messages and exit codes of ``python -m android_bench devices`` and ``run``, plus the adb-level
error mapping (``shell`` / ``push`` to an unknown serial, ``shell`` with no device), whichever
wording the installed client uses.

It starts its own adb server on a free loopback port (``ANDROID_ADB_SERVER_PORT``) and stops it
at the end, so a server the user already runs, and the phones it holds, are left alone. When
that server does see a device (a developer's machine), the no-device checks are skipped and the
script says so. Exit status: 0 all checks passed, 1 a check failed (each is listed), 2 no adb.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
NO_DEVICE_RUN = ("error: no Android device found: connect a phone with USB debugging enabled "
                 "(Settings > Developer options) and check that `adb devices` lists it")
NO_DEVICE_LIST = "no devices (connect a phone with USB debugging enabled)"
UNKNOWN_SERIAL = "NOPE0000"
UNKNOWN_SERIAL_RUN = f"error: device {UNKNOWN_SERIAL} not found; connected devices: none"


def free_port() -> int:
    """A loopback port nobody listens on, for a private adb server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """``python -m android_bench ARGS`` from the repository root, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "android_bench", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def expect(problems: list[str], what: str, proc: subprocess.CompletedProcess, rc: int,
           stream: str, text: str) -> None:
    """Record a problem unless ``proc`` exited ``rc`` and printed ``text`` as a line of ``stream``."""
    out = getattr(proc, stream)
    ok = proc.returncode == rc and text in out.splitlines()
    print(f"  {'ok  ' if ok else 'FAIL'} {what}: exit {proc.returncode}, {stream}: {out.strip()!r}")
    if not ok:
        problems.append(f"{what}: expected exit {rc} and the {stream} line {text!r}; got exit "
                        f"{proc.returncode}, stdout {proc.stdout.strip()!r}, stderr {proc.stderr.strip()!r}")


def expect_raises(problems: list[str], what: str, call: Callable[[], object],
                  error: type[Exception], text: str) -> None:
    """Record a problem unless ``call()`` raises ``error`` whose message contains ``text``."""
    try:
        call()
    except error as e:
        ok = text in str(e)
        print(f"  {'ok  ' if ok else 'FAIL'} {what}: {type(e).__name__}: {e}")
        if not ok:
            problems.append(f"{what}: {type(e).__name__} without {text!r}: {e}")
        return
    except Exception as e:  # noqa: BLE001 - a wrong class is exactly what this check reports
        print(f"  FAIL {what}: {type(e).__name__}: {e}")
        problems.append(f"{what}: expected {error.__name__}, got {type(e).__name__}: {e}")
        return
    print(f"  FAIL {what}: no error")
    problems.append(f"{what}: expected {error.__name__}, nothing was raised")


def adb_level_checks(adb: str, scratch: Path, problems: list[str]) -> None:
    """The real client's own error lines, through android_bench.adb's mapping."""
    from android_bench.adb import Adb
    from android_bench.errors import DeviceDisconnectedError

    local = scratch / "x.bin"
    local.write_bytes(b"x")
    expect_raises(problems, f"Adb(serial={UNKNOWN_SERIAL}).shell", lambda: Adb(adb, UNKNOWN_SERIAL).shell(["true"]),
                  DeviceDisconnectedError, f"'{UNKNOWN_SERIAL}' not found")
    expect_raises(problems, f"Adb(serial={UNKNOWN_SERIAL}).push",
                  lambda: Adb(adb, UNKNOWN_SERIAL).push(local, "/data/local/tmp/x.bin"),
                  DeviceDisconnectedError, f"'{UNKNOWN_SERIAL}' not found")
    expect_raises(problems, "Adb().shell with no device", lambda: Adb(adb).shell(["true"]),
                  DeviceDisconnectedError, "no devices/emulators found")


def cli_checks(adb: str, env: dict[str, str], scratch: Path, problems: list[str]) -> None:
    """``devices`` and ``run`` with no phone and with an unknown serial."""
    models = scratch / "models"
    models.mkdir()
    (models / "m.tflite").write_bytes(b"not timed: no phone")
    binary = scratch / "benchmark_model"
    binary.write_bytes(b"not run: no phone")
    run = ["run", "--benchmark_binary", str(binary), "--models_dir", str(models), "--adb", adb]
    expect(problems, "android_bench devices", bench_cli(["devices", "--adb", adb], env), 0,
           "stdout", NO_DEVICE_LIST)
    expect(problems, "android_bench run (no phone)",
           bench_cli([*run, "--out", str(scratch / "out1")], env), 2, "stderr", NO_DEVICE_RUN)
    expect(problems, f"android_bench run --serial {UNKNOWN_SERIAL}",
           bench_cli([*run, "--out", str(scratch / "out2"), "--serial", UNKNOWN_SERIAL], env), 3,
           "stderr", UNKNOWN_SERIAL_RUN)


def run(adb: str) -> list[str]:
    """Every check against the client at ``adb``; returns the problems found (none: passed)."""
    port = str(free_port())
    before = os.environ.get("ANDROID_ADB_SERVER_PORT")
    os.environ["ANDROID_ADB_SERVER_PORT"] = port  # this process's Adb calls and the CLI's
    env = dict(os.environ)
    problems: list[str] = []
    version = subprocess.run([adb, "version"], capture_output=True, text=True, timeout=30)
    print(f"adb: {adb}: " + " | ".join(version.stdout.strip().splitlines()[:2]))
    print(f"private adb server on 127.0.0.1:{port}")
    try:
        subprocess.run([adb, "start-server"], capture_output=True, text=True, timeout=60, env=env)
        listing = subprocess.run([adb, "devices"], capture_output=True, text=True, timeout=60, env=env)
        attached = [l for l in listing.stdout.splitlines()[1:] if l.strip() and not l.startswith("*")]
        with tempfile.TemporaryDirectory(prefix="pam-tf-adb-check.") as tmp:
            if attached:
                print(f"skipped: the no-device checks need no device attached; adb sees {attached}")
            else:
                adb_level_checks(adb, Path(tmp), problems)
                cli_checks(adb, env, Path(tmp), problems)
    finally:
        subprocess.run([adb, "kill-server"], capture_output=True, timeout=60, env=env)
        if before is None:
            del os.environ["ANDROID_ADB_SERVER_PORT"]
        else:
            os.environ["ANDROID_ADB_SERVER_PORT"] = before
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.ci_adb_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--adb", default="adb", help="adb client to check (default: adb on PATH)")
    args = parser.parse_args(argv)
    adb = shutil.which(args.adb)
    if adb is None:
        print(f"ci_adb_check: error: no adb client at {args.adb!r} (Debian: apt-get install -y adb)",
              file=sys.stderr)
        return 2
    problems = run(adb)
    if problems:
        print(f"ci_adb_check: {len(problems)} check(s) FAILED:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print("ci_adb_check: android_bench matches the real adb client")
    return 0


if __name__ == "__main__":
    sys.exit(main())
