"""Command line: flags -> one library call -> files. ``python -m android_bench --help``.

Exit codes: 0 all runs done; 1 some runs failed or the sweep stopped early (results kept, rerun
to resume); 2 bad input or setup problem (nothing measured); 3 the phone disconnected, or stopped
trusting this computer (unauthorized), mid-sweep (results kept, reconnect or accept the prompt and
rerun the same command to resume); 130 interrupted (Ctrl-C).

``run --serial A,B`` (or ``--all_devices``) sweeps several phones at once, one process each
(:mod:`android_bench.fleet`); its exit status is the largest of the phones' statuses above.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from android_bench.errors import USER_ERRORS, DeviceDisconnectedError, PlanError, UnauthorizedDeviceError
from android_bench.plan import DELEGATE_FLAGS, Cooldown, CpuProfile, PlanConfig
from android_bench.results import RESULTS_FILE
from android_bench.sweep import SweepReport


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one value")
    return values


def _str_list(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _add_models(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", type=Path, help="manifest.json listing task combinations and files")
    src.add_argument("--models_dir", type=Path, help="folder of .tflite files (each its own combination)")
    p.add_argument("--out", type=Path, required=True, help="results folder (created; reused to resume)")


def _add_plan(p: argparse.ArgumentParser, delegates_help: str) -> None:
    p.add_argument("--threads", type=_int_list, default=(1,), help="comma list of thread counts, e.g. 1,4")
    p.add_argument("--repeats", type=int, default=3, help="repeats of every (model, setting) cell")
    p.add_argument("--delegate", type=_str_list, default=("xnnpack",), help=delegates_help)
    p.add_argument("--require_full_delegation", action="store_true",
                   help="make benchmark_model fail instead of falling back to CPU for some ops")
    p.add_argument("--cpu_profile", type=Path,
                   help='JSON core groups, e.g. {"big": [4,5,6,7], "little": [0,1,2,3]}')
    p.add_argument("--affinity", type=_str_list, default=None,
                   help="comma list of core groups from --cpu_profile to pin to; 'none' = unpinned")
    p.add_argument("--seed", type=int, default=0, help="seed of the run order (and host-mode inputs)")
    p.add_argument("--warmup_runs", type=int, default=1)
    p.add_argument("--warmup_min_secs", type=float, default=0.5)
    p.add_argument("--num_runs", type=int, default=50, help="minimum timed runs per benchmark")
    p.add_argument("--min_secs", type=float, default=1.0, help="minimum timed seconds per benchmark")
    p.add_argument("--max_secs", type=float, default=150.0)
    p.add_argument("--cooldown_secs", type=float, default=0.0, help="fixed sleep before each run")
    p.add_argument("--cooldown_temp_c", type=float, default=None,
                   help="before each run, wait until every thermal zone reads below this")
    p.add_argument("--cooldown_max_wait_secs", type=float, default=120.0)
    p.add_argument("--cooldown_poll_secs", type=float, default=2.0)
    p.add_argument("--cooldown_zone_regex", default=None, help="only zones whose type matches, e.g. 'cpu|soc'")
    p.add_argument("--max_consecutive_failures", type=int, default=3)


def add_run_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``run``; also how :mod:`android_bench.fleet` rebuilds one phone's command."""
    _add_models(p)
    _add_plan(p, f"comma list of delegates: {', '.join(DELEGATE_FLAGS)}")
    p.add_argument("--benchmark_binary", type=Path, required=True, help="benchmark_model built for the phone")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--serial", default=None,
                       help="device serial (needed when several are connected); a comma list A,B sweeps "
                            "those phones at once, one results folder OUT/SERIAL/ each")
    which.add_argument("--all_devices", action="store_true",
                       help="sweep every ready phone adb lists, at once, into OUT/SERIAL/ each")
    p.add_argument("--adb", default="adb", help="adb executable (default: adb on PATH)")
    p.add_argument("--timeout_secs", type=float, default=300.0, help="time limit of one benchmark run")
    p.add_argument("--keep_device_files", action="store_true", help="leave the work folder on the phone")
    p.add_argument("--op_profiling", action="store_true", help="also pull per-op profiling CSVs")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m android_bench",
                                     description="Time .tflite models on an Android phone (benchmark_model "
                                                 "over adb) or on this machine (LiteRT).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("devices", help="list connected Android devices and their facts")
    p.add_argument("--adb", default="adb", help="adb executable (default: adb on PATH)")

    add_run_options(sub.add_parser("run", help="sweep on a phone (or several at once) with benchmark_model"))

    p = sub.add_parser("host", help="sweep on this machine with LiteRT (Interpreter or CompiledModel)")
    _add_models(p)
    _add_plan(p, "comma list of: xnnpack (LiteRT default), cpu (builtin kernels only)")
    p.add_argument("--host_api", choices=("interpreter", "compiled_model"), default="interpreter",
                   help="LiteRT API to time with: the Interpreter (default) or CompiledModel, the API "
                        "LiteRT is moving to (a results folder keeps the API it was made with)")

    p = sub.add_parser("summarize", help="rewrite the summary CSV/markdown of a results folder")
    p.add_argument("--out", type=Path, required=True,
                   help="results folder (of one phone, or of several: then every phone's and the device summary)")
    return parser


def _plan_inputs(args: argparse.Namespace) -> tuple[PlanConfig, CpuProfile | None, Cooldown]:
    profile = None
    if args.cpu_profile and args.cpu_profile.is_dir():  # one SERIAL.json per phone (android_bench.fleet)
        if not (args.command == "run" and (args.all_devices or len(_str_list(args.serial or "")) > 1)):
            raise PlanError(f"--cpu_profile {args.cpu_profile} is a folder: a folder of SERIAL.json "
                            "profiles is for several phones at once (--serial A,B or --all_devices)")
    elif args.cpu_profile:
        profile = CpuProfile.load(args.cpu_profile)
    affinities: tuple[str | None, ...] = (None,)
    if args.affinity:
        affinities = tuple(None if a.lower() == "none" else a for a in args.affinity)
    config = PlanConfig(threads=args.threads, delegates=args.delegate, affinities=affinities,
                        repeats=args.repeats, seed=args.seed, warmup_runs=args.warmup_runs,
                        warmup_min_secs=args.warmup_min_secs, num_runs=args.num_runs, min_secs=args.min_secs,
                        max_secs=args.max_secs, require_full_delegation=args.require_full_delegation)
    cooldown = Cooldown(secs=args.cooldown_secs, temp_c=args.cooldown_temp_c,
                        max_wait_secs=args.cooldown_max_wait_secs, poll_secs=args.cooldown_poll_secs,
                        zone_regex=args.cooldown_zone_regex)
    return config, profile, cooldown


def _print_report(report: SweepReport) -> int:
    print(f"{report.ok} runs done now, {report.skipped} done before, {report.failed} failed, "
          f"of {report.total} planned")
    if report.cpu_fallback:
        print(f"WARNING: {report.cpu_fallback} runs fell back to CPU although a delegate was requested "
              "(see cpu_fallback_runs in the summary)")
    for line in report.failures:
        print(f"  failed: {line}")
    for path in report.summary_paths.values():
        print(f"wrote {path}")
    if report.stopped:
        print(f"stopped: {report.stopped}")
    return 0 if report.complete else 1


def _devices(args: argparse.Namespace) -> int:
    from android_bench.adb import Adb
    entries = Adb(args.adb).devices()
    if not entries:
        print("no devices (connect a phone with USB debugging enabled)")
        return 0
    for entry in entries:
        line = f"{entry.serial}\t{entry.state}"
        if entry.state == "device":
            facts = Adb(args.adb, entry.serial).device_facts()
            line += (f"\t{facts['manufacturer']} {facts['model']}\tSoC {facts['soc']}\t"
                     f"Android {facts['android_release']}\t{facts['abi']}")
        elif entry.state == "unauthorized":
            line += "\t(accept the RSA key prompt on the phone)"
        print(line)
    return 0


def _summarize(out: Path) -> int:
    """Rewrite a results folder's summaries; for a folder of several phones, each phone's and the
    device summary."""
    from android_bench.fleet import DEVICES_FILE, write_fleet_summary
    from android_bench.summary import write_summaries
    fleet = (out / DEVICES_FILE).exists()
    folders = [out / s for s in json.loads((out / DEVICES_FILE).read_text())] if fleet else [out]
    for folder in folders:
        if fleet and not (folder / RESULTS_FILE).exists():
            continue  # a phone that never started has nothing to summarise
        for path in write_summaries(folder).values():
            print(f"wrote {path}")
    if fleet:
        for path in write_fleet_summary(out).values():
            print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "devices":
            return _devices(args)
        if args.command == "summarize":
            return _summarize(args.out)
        from android_bench.models import load_model_set
        model_set = load_model_set(args.manifest, args.models_dir)
        config, profile, cooldown = _plan_inputs(args)  # validated once, before any phone is touched
        serials = _str_list(args.serial) if args.command == "run" and args.serial else ()
        if args.command == "run" and (args.all_devices or len(serials) > 1):
            from android_bench.android import check_local_binary
            from android_bench.fleet import pick_serials, run_fleet
            check_local_binary(args.benchmark_binary)
            parser = add_run_options(argparse.ArgumentParser(add_help=False))
            return run_fleet(parser, args, pick_serials(args.adb, serials, args.all_devices))
        if args.command == "run":
            from android_bench.android import run_android_sweep
            report = run_android_sweep(
                model_set, args.out, args.benchmark_binary, config, adb_path=args.adb, serial=serials[0] if serials else None,
                cpu_profile=profile, cooldown=cooldown, timeout_secs=args.timeout_secs,
                keep_device_files=args.keep_device_files, op_profiling=args.op_profiling,
                max_consecutive_failures=args.max_consecutive_failures)
        else:
            from android_bench.host import run_host_sweep
            report = run_host_sweep(model_set, args.out, config, cpu_profile=profile, cooldown=cooldown,
                                    max_consecutive_failures=args.max_consecutive_failures,
                                    host_api=args.host_api)
        return _print_report(report)
    except KeyboardInterrupt:
        print(f"interrupted: finished runs are saved in {getattr(args, 'out', '?')}; rerun the same command "
              "to resume", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        partial = getattr(e, "report", None)
        if partial is not None:
            for path in partial.summary_paths.values():
                print(f"wrote {path}")
        print(f"error: {e}", file=sys.stderr)
        if isinstance(e, DeviceDisconnectedError) or (
                partial is not None and isinstance(e, UnauthorizedDeviceError)):
            return 3
        return 1 if partial is not None else 2
