"""Several phones at once: one sweep per phone, in parallel, each in its own process.

``python -m android_bench run --serial A,B`` (or ``--all_devices``) starts, for every phone,
``python -m android_bench run --serial A --out OUT/A ...`` with the same flags, and relays its
output prefixed ``[A]``. A process per phone, not a thread, because then each sweep is exactly
the single-phone path: its own results folder, resume state, ``meta.json`` with the device's
facts, CPU profile and exit status; a phone that drops out ends only its own process; and Ctrl-C
reaches every child, which saves what it has and says how to resume.

``OUT/devices.json`` records each phone's exit status; ``OUT/summary_devices.{csv,md}`` put
every phone's per-combination rows in one table whose first columns name the device. The
overall exit status is the largest of the phones' (0 only when every phone finished; 3 when one
dropped out or stopped trusting this computer; see :mod:`android_bench.cli`).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence, TextIO

from android_bench.errors import FleetError, NoDeviceError
from android_bench.plan import CpuProfile
from android_bench.results import (META_FILE, RESULTS_FILE, ResultsLog, atomic_write_text, latest_ok,
                                   load_meta)
from android_bench.summary import COMBO_COLUMNS, combination_summary, to_csv, to_markdown_table

DEVICES_FILE = "devices.json"
FLEET_CSV = "summary_devices.csv"
FLEET_MD = "summary_devices.md"
DEVICE_COLUMNS = ("device", "device_model", "device_soc")

#: What a child's exit status means (the statuses of android_bench.cli).
STATUS_TEXT = {0: "finished", 1: "incomplete: some runs failed or the sweep stopped early",
               2: "not started: bad input or setup problem",
               3: "disconnected or unauthorized (reconnect it or accept the prompt, then rerun)",
               130: "interrupted"}

Print = Callable[[str], None]


def pick_serials(adb_path: str, serials: Sequence[str], all_devices: bool,
                 progress: Print = print) -> list[str]:
    """The phones to sweep: the serials given, or with `all_devices` every phone ``adb devices``
    lists as ready (the others are named and skipped). Raises FleetError on a repeated serial or
    one that cannot name a results folder, NoDeviceError when no phone is ready."""
    if all_devices:
        from android_bench.adb import Adb

        entries = Adb(adb_path).devices()
        for e in entries:
            if e.state != "device":
                progress(f"skipping {e.describe()}: not ready")
        serials = [e.serial for e in entries if e.state == "device"]
        if not serials:
            raise NoDeviceError("--all_devices: no phone is ready (adb devices lists "
                                f"{len(entries)} device(s), none in state 'device')")
    repeated = sorted({s for s in serials if list(serials).count(s) > 1})
    if repeated:
        raise FleetError(f"--serial names {', '.join(repeated)} more than once: each phone "
                         "gets one sweep")
    for s in serials:
        if s in (".", "..") or "/" in s or not s.strip():
            raise FleetError(f"--serial {s!r} cannot name a results folder (OUT/SERIAL/)")
    return list(serials)


def profile_paths(cpu_profile: Path | None, serials: Sequence[str]) -> dict[str, Path | None]:
    """Each phone's CPU profile: one file for every phone, or a folder holding SERIAL.json for
    each (phones of different SoCs have different core groups). A missing one is named before
    any phone is touched."""
    if cpu_profile is None or not cpu_profile.is_dir():
        return {s: cpu_profile for s in serials}
    paths = {s: cpu_profile / f"{s}.json" for s in serials}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FleetError(f"--cpu_profile {cpu_profile} is a folder but has no profile for "
                         f"{', '.join(missing)} (one SERIAL.json per phone)")
    for path in paths.values():
        CpuProfile.load(path)  # a malformed profile stops everything before any phone starts
    return paths


def check_fleet_folder(out: Path) -> None:
    """OUT holds one folder per phone; a single phone's results there would be mixed up."""
    if out.exists() and not out.is_dir():
        raise FleetError(f"--out {out} is a file, not a folder")
    if (out / RESULTS_FILE).exists() or (out / META_FILE).exists():
        raise FleetError(f"--out {out} holds a single phone's sweep; several phones write one "
                         "folder each under --out: choose another --out")


def run_argv(parser: argparse.ArgumentParser, args: argparse.Namespace,
             **override: object) -> list[str]:
    """The ``run`` arguments that reproduce `args` (with `override`), as ``--flag=value``, for
    one phone's process. Built from the parser's own options, so a flag added to ``run`` later
    is passed on without changes here."""
    values = {**vars(args), **override}
    argv = []
    for action in parser._actions:  # noqa: SLF001 - argparse has no public list of options
        if not action.option_strings or action.dest in ("help", "all_devices"):
            continue
        value, flag = values.get(action.dest), action.option_strings[-1]
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, (tuple, list)):
            argv.append(f"{flag}={','.join(str(v) for v in value)}")
        else:
            argv.append(f"{flag}={value}")
    return argv


def _relay(stream: TextIO, serial: str, sink: TextIO) -> None:
    for line in stream:
        sink.write(f"[{serial}] {line}")
        sink.flush()


def sweep_one(serial: str, argv: list[str]) -> int:
    """One phone's sweep in its own ``python -m android_bench run`` process; its output is
    relayed prefixed with the serial; returns its exit status."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.Popen([sys.executable, "-m", "android_bench", "run", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    relays = [threading.Thread(target=_relay, args=(proc.stdout, serial, sys.stdout)),
              threading.Thread(target=_relay, args=(proc.stderr, serial, sys.stderr))]
    for t in relays:
        t.start()
    rc = proc.wait()  # Ctrl-C reaches the child too (same process group): it saves and exits 130
    for t in relays:
        t.join()
    return rc


def run_fleet(parser: argparse.ArgumentParser, args: argparse.Namespace, serials: list[str],
              progress: Print = print) -> int:
    """Sweep every phone of `serials` at once (one process each, see :func:`sweep_one`), into
    ``args.out/SERIAL/``; write ``devices.json`` and the device summary; return the largest of
    the phones' exit statuses."""
    out = Path(args.out)
    check_fleet_folder(out)
    profiles = profile_paths(args.cpu_profile, serials)
    out.mkdir(parents=True, exist_ok=True)
    progress(f"{len(serials)} phones, one sweep each, in parallel: {', '.join(serials)} "
             f"(results in {out}/SERIAL/)")
    argvs = {s: run_argv(parser, args, serial=s, out=out / s, cpu_profile=profiles[s])
             for s in serials}
    with ThreadPoolExecutor(max_workers=len(serials)) as pool:
        futures = {s: pool.submit(sweep_one, s, argvs[s]) for s in serials}
        statuses = {s: f.result() for s, f in futures.items()}
    atomic_write_text(out / DEVICES_FILE, json.dumps(
        {s: {"exit_status": rc, "status": STATUS_TEXT.get(rc, f"exit status {rc}"),
             "results": s} for s, rc in statuses.items()}, indent=2) + "\n")
    for s, rc in statuses.items():
        progress(f"{s}: {STATUS_TEXT.get(rc, f'exit status {rc}')} (exit {rc}); "
                 f"results in {out / s}")
    for path in write_fleet_summary(out).values():
        progress(f"wrote {path}")
    worst = max(statuses.values())
    if worst:
        failed = [s for s, rc in statuses.items() if rc]
        progress(f"{len(failed)} of {len(serials)} phones did not finish: {', '.join(failed)}; "
                 "rerun the same command to resume them (finished phones are skipped)")
    return worst


def _device_of(folder: Path) -> dict[str, str]:
    dev = (load_meta(folder) or {}).get("device") or {}
    return {"device_model": dev.get("model") or "", "device_soc": dev.get("soc") or ""}


def write_fleet_summary(out: str | Path) -> dict[str, Path]:
    """(Re)write OUT/summary_devices.{csv,md} from OUT/devices.json and each phone's folder:
    one row per (phone, combination, setting), its first columns naming the phone."""
    out = Path(out)
    devices = json.loads((out / DEVICES_FILE).read_text())
    rows, status_rows = [], []
    for serial, entry in devices.items():
        folder = out / entry.get("results", serial)
        named = {"device": serial, **_device_of(folder)}
        ok = len(latest_ok(ResultsLog(folder).read())) if (folder / RESULTS_FILE).exists() else 0
        status_rows.append({**named, "status": entry["status"], "exit": entry["exit_status"],
                            "ok_runs": ok})
        if (folder / RESULTS_FILE).exists():
            rows += [{**named, **row} for row in combination_summary(folder)]
    columns = (*DEVICE_COLUMNS, *COMBO_COLUMNS)
    md = ("# Latency per task combination, per phone\n\n"
          "One sweep per phone (`OUT/SERIAL/`, its own summaries beside its results); the "
          "`device` column says which phone each number comes from.\n\n"
          + to_markdown_table(status_rows, (*DEVICE_COLUMNS, "status", "exit", "ok_runs"))
          + "\n" + to_markdown_table(rows, columns))
    return {"devices_csv": atomic_write_text(out / FLEET_CSV, to_csv(rows, columns)),
            "devices_md": atomic_write_text(out / FLEET_MD, md)}
