"""Phone mode: time .tflite files with the user's ``benchmark_model`` over adb.

Flow: pick the device -> read its facts -> push the binary and the models into
``/data/local/tmp/pam_tf_bench`` (``/data/local/tmp`` is the one place a shell user may write and
execute) -> probe that the binary runs -> sweep (each run: cool-down, thermal/cpufreq snapshot,
``[taskset MASK] benchmark_model --graph=... flags``, snapshot) -> remove the work folder.

Every device command is built as an argv list and quoted with :func:`shlex.quote`; model files keep
their names on the phone (prefixed with a hash, so two files with one name cannot collide), so a name
with spaces or quotes is exercised for real.
"""
from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

from android_bench.adb import Adb, connect, quote_command
from android_bench.errors import (BenchError, BenchmarkFailedError, BinaryNotExecutableError,
                                  BinaryNotFoundError, DeviceDisconnectedError,
                                  LeftoverProcessError, MalformedOutputError, ReadingError,
                                  RunTimeoutError, UnauthorizedDeviceError)
from android_bench.models import ModelFile, ModelSet
from android_bench.parse import output_metrics, parse_benchmark_output
from android_bench.plan import Cooldown, CpuProfile, PlanConfig, RunSpec, build_plan
from android_bench.results import ResultsLog, check_and_write_meta
from android_bench.summary import write_summaries
from android_bench.sweep import Progress, RunOutcome, SweepReport, execute_plan
from android_bench import sysfs
from pam_tf.io import sha256_file

REMOTE_ROOT = "/data/local/tmp/pam_tf_bench"
REMOTE_BINARY = f"{REMOTE_ROOT}/benchmark_model"
#: ``pkill -f`` / ``pgrep -f`` pattern for our benchmark_model. The bracket keeps it from matching
#: the device shell that runs the pkill (its command line holds the pattern, not the path), which
#: pkill would otherwise kill along with the benchmark.
REMOTE_BINARY_PATTERN = f"{REMOTE_ROOT}/[b]enchmark_model"
#: How long a killed benchmark_model may take to exit before it gets SIGKILL.
KILL_GRACE_SECS = 2.0
KILL_POLL_SECS = 0.5

_ELF_MACHINES = {183: "arm64-v8a", 40: "armeabi-v7a", 62: "x86_64", 3: "x86"}
_EXEC_FAILURE_RE = re.compile(
    r"not executable|Exec format error|can't execute|cannot execute|Permission denied|"
    r"inaccessible or not found|No such file or directory|CANNOT LINK EXECUTABLE")


def remote_model_path(model: ModelFile) -> str:
    """Where a model lives on the phone: the work folder, hash prefix, original file name."""
    return f"{REMOTE_ROOT}/{model.sha256[:8]}_{Path(model.name).name}"


def check_local_binary(path: str | Path) -> Path:
    """The user's benchmark_model must exist here before anything touches the phone."""
    p = Path(path)
    if not p.is_file():
        raise BinaryNotFoundError(
            f"benchmark_model binary not found at {p}: get the android_aarch64 (or android_arm) "
            "benchmark_model build, or build it with Bazel (see android_bench/README.md), and pass "
            "its path with --benchmark_binary")
    return p


def elf_abi(path: str | Path) -> str | None:
    """Android ABI an ELF executable is built for, or None when it is not an ELF file."""
    with open(path, "rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    order = "little" if head[5] == 1 else "big"
    return _ELF_MACHINES.get(int.from_bytes(head[18:20], order), f"e_machine={int.from_bytes(head[18:20], order)}")


def check_binary_abi(binary: Path, facts: dict[str, str]) -> None:
    """Catch an x86 or 32-bit build pushed to an arm64-only phone before the sweep starts."""
    abi = elf_abi(binary)
    supported = [a for a in (facts.get("abilist") or facts.get("abi") or "").split(",") if a]
    if abi and supported and abi not in supported:
        raise BinaryNotExecutableError(
            f"{binary} is built for {abi} but device {facts.get('serial')} runs {', '.join(supported)}: "
            f"it would be 'not executable' there; use the android_aarch64 build for arm64-v8a phones "
            f"or android_arm for armeabi-v7a")


def _exec_failure(text: str) -> str | None:
    for line in text.split("\n"):
        if _EXEC_FAILURE_RE.search(line) and (REMOTE_BINARY in line or "CANNOT LINK" in line):
            return line.strip()
    return None


class AndroidExecutor:
    """Runs planned runs on one phone."""

    def __init__(self, adb: Adb, binary: Path, *, timeout_secs: float, out_dir: Path,
                 op_profiling: bool = False) -> None:
        self.adb = adb
        self.binary = binary
        self.timeout_secs = timeout_secs
        self.out_dir = out_dir
        self.op_profiling = op_profiling
        self.zone_types: dict[str, str] = {}
        self.leftover: list[str] = []  # pids of a killed run still alive on the phone

    # -- setup / teardown ----------------------------------------------------------------------
    def setup(self, models: list[ModelFile], progress: Progress) -> None:
        self.adb.mkdir(REMOTE_ROOT)
        progress(f"pushing {self.binary.name} to {REMOTE_BINARY}")
        self.adb.push(self.binary, REMOTE_BINARY, timeout=max(120.0, self.binary.stat().st_size / 1e6))
        self.adb.chmod_executable(REMOTE_BINARY)
        self.probe_binary()
        listing = self.adb.shell(sysfs.ZONE_TYPES_COMMAND, timeout=30)
        self.zone_types = sysfs.zone_types(sysfs.parse_grep_listing(listing.stdout))
        for model in models:
            progress(f"pushing {model.name}")
            self.adb.push(model.path, remote_model_path(model), timeout=max(120.0, model.size / 1e6))

    def probe_binary(self) -> None:
        """Run ``benchmark_model --help`` once: a wrong-ABI or broken binary fails here, clearly."""
        try:
            result = self.adb.shell([REMOTE_BINARY, "--help"], timeout=60, merge_stderr=True)
        except subprocess.TimeoutExpired:
            raise BinaryNotExecutableError(f"{REMOTE_BINARY} --help did not return within 60 s") from None
        failure = _exec_failure(result.stdout)
        if failure or result.returncode in (126, 127):
            raise BinaryNotExecutableError(
                f"benchmark_model cannot run on device {self.adb.serial}: {failure or result.stdout.strip()!r}; "
                "check that the binary matches the phone's ABI (android_aarch64 for arm64-v8a, android_arm "
                "for armeabi-v7a)")

    def cleanup(self) -> None:
        self.adb.remove(REMOTE_ROOT)

    # -- per run -------------------------------------------------------------------------------
    def snapshot(self) -> tuple[dict[str, float], dict[str, int]]:
        """Thermal zones and CPU clocks; raises :class:`ReadingError` when nothing could be read
        (grep failed, or adb timed out), so the record says "failed" rather than "none"."""
        try:
            result = self.adb.shell(sysfs.SNAPSHOT_COMMAND, timeout=30)
        except subprocess.TimeoutExpired:
            raise ReadingError("thermal/cpufreq reading timed out after 30 s") from None
        values = sysfs.parse_grep_listing(result.stdout)
        if result.returncode != 0 and not values:
            why = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[0]
            raise ReadingError(f"thermal/cpufreq reading failed (exit {result.returncode}): {why}")
        return sysfs.split_snapshot(values)

    def hottest(self, zone_regex: str | None) -> float | None:
        try:
            temps, _ = self.snapshot()
        except ReadingError:
            return None  # cool-down cannot wait on what it cannot read; the record says so
        return sysfs.hottest(temps, self.zone_types, zone_regex)

    def argv(self, spec: RunSpec) -> list[str]:
        s = spec.settings
        argv = ["taskset", s.affinity_mask] if s.affinity_mask else []
        argv += [REMOTE_BINARY, f"--graph={remote_model_path(spec.model)}", *s.benchmark_flags(),
                 f"--benchmark_name={spec.run_id}"]
        if self.op_profiling:
            argv += ["--enable_op_profiling=true",
                     f"--profiling_output_csv_file={REMOTE_ROOT}/profile_{spec.run_id}.csv"]
        return argv

    def run(self, spec: RunSpec) -> RunOutcome:
        self._refuse_if_leftover()
        argv = self.argv(spec)
        command = quote_command(argv)
        try:
            result = self.adb.shell(command, timeout=self.timeout_secs, merge_stderr=True)
        except subprocess.TimeoutExpired as e:
            left = self._kill_remote()
            what = (f"benchmark_model did not finish within {self.timeout_secs:g} s "
                    f"({spec.model.name}, {spec.settings.label()}); ")
            if left:
                self.leftover = left
                what += (f"it is still running on the device after pkill and pkill -9 "
                         f"(pid {', '.join(left)})")
            elif left is None:
                what += "killed it; could not check that it is gone (no pgrep on the device)"
            else:
                what += "killed it on the device (checked: gone), later runs go on"
            err = RunTimeoutError(what)
            err.raw_output, err.command = (e.output or ""), argv  # type: ignore[attr-defined]
            raise err from None
        text = result.stdout
        failure = _exec_failure(text)
        if failure:
            raise BinaryNotExecutableError(f"benchmark_model cannot run on device {self.adb.serial}: {failure}")
        try:
            parsed = parse_benchmark_output(text, spec.settings.delegate)
        except (MalformedOutputError, BenchmarkFailedError) as e:
            self.adb.get_state()  # a truncated output from a vanished phone is a disconnect, not bad output
            e.raw_output, e.command = text, argv  # type: ignore[attr-defined]
            raise
        if result.returncode not in (0, None):
            self.adb.get_state()
        extra: dict[str, Any] = {}
        if self.op_profiling:
            local = self.out_dir / "profiles" / f"{spec.run_id}.csv"
            local.parent.mkdir(parents=True, exist_ok=True)
            remote = f"{REMOTE_ROOT}/profile_{spec.run_id}.csv"
            self.adb.pull(remote, local)
            self.adb.remove(remote)
            extra["profile_csv"] = str(local.relative_to(self.out_dir))
        return RunOutcome(metrics=output_metrics(parsed), raw_output=text, command=argv, extra=extra)

    def _remote_pids(self) -> list[str] | None:
        """Pids of our benchmark_model on the phone; None when the phone cannot tell (no pgrep)."""
        try:
            result = self.adb.shell(["pgrep", "-f", REMOTE_BINARY_PATTERN], timeout=30)
        except subprocess.TimeoutExpired:
            return None
        if result.returncode not in (0, 1):
            return None
        return [p for p in result.stdout.split() if p.isdigit()]

    def _kill_remote(self) -> list[str] | None:
        """Stop our benchmark_model on the phone after the host gave up on a run: killing the
        ``adb shell`` does not stop it there, and left running it heats the phone for the next
        run. SIGTERM, wait up to KILL_GRACE_SECS, then SIGKILL. Returns the pids still running
        ([] = verified gone, None = cannot verify)."""
        left: list[str] | None = None
        for signal_args, grace in (([], KILL_GRACE_SECS), (["-9"], KILL_POLL_SECS)):
            try:
                self.adb.shell(["pkill", *signal_args, "-f", REMOTE_BINARY_PATTERN], timeout=30)
            except subprocess.TimeoutExpired:
                pass
            left = self._wait_gone(grace)
            if left == []:
                return left
        return left  # still running, or unknown (then SIGKILL was sent anyway)

    def _wait_gone(self, grace: float) -> list[str] | None:
        """Poll pgrep for up to ``grace`` seconds until our benchmark_model is gone."""
        deadline = time.monotonic() + grace
        while True:
            left = self._remote_pids()
            if left is None or not left or time.monotonic() >= deadline:
                return left
            time.sleep(KILL_POLL_SECS)

    def _refuse_if_leftover(self) -> None:
        """A benchmark_model that survived SIGKILL skews every later timing: stop the sweep
        (unless it has ended since)."""
        if not self.leftover:
            return
        left = self._remote_pids()
        if not left:
            self.leftover = []
            return
        raise LeftoverProcessError(
            f"an earlier benchmark_model is still running on device {self.adb.serial} (pid "
            f"{', '.join(left)}) and would skew every later run: reboot the phone (adb reboot) "
            "and rerun the same command to resume")


def run_android_sweep(model_set: ModelSet, out_dir: str | Path, benchmark_binary: str | Path,
                      config: PlanConfig, *, adb_path: str = "adb", serial: str | None = None,
                      cpu_profile: CpuProfile | None = None, cooldown: Cooldown = Cooldown(),
                      timeout_secs: float = 300.0, keep_device_files: bool = False,
                      op_profiling: bool = False, progress: Progress = print,
                      max_consecutive_failures: int = 3) -> SweepReport:
    """Time every model of ``model_set`` on a phone; results and summaries go to ``out_dir``.

    Resumable: rerunning with the same arguments skips completed runs. Raises a
    :class:`~android_bench.errors.BenchError` subclass (with ``.report`` when runs were made) if the
    sweep cannot go on.
    """
    out_dir = Path(out_dir)
    binary = check_local_binary(benchmark_binary)
    adb = connect(adb_path, serial)
    facts = adb.device_facts()
    check_binary_abi(binary, facts)
    runtime = f"benchmark_model sha256:{sha256_file(binary)[:16]}"
    plan = build_plan(model_set.models, config, target="android", runtime=runtime, cpu_profile=cpu_profile)
    check_and_write_meta(out_dir, {
        "target": "android", "device_serial": adb.serial, "device": facts, "runtime": runtime,
        "benchmark_binary": str(binary), "source": model_set.source, "model_set": model_set.to_dict(),
        "cpu_profile": cpu_profile.groups if cpu_profile else None, "plan_config": config.__dict__,
        "measurement": config.measurement(),
        "cooldown": cooldown.__dict__, "timeout_secs": timeout_secs})
    progress(f"device {adb.serial}: {facts.get('manufacturer')} {facts.get('model')}, SoC {facts.get('soc')}, "
             f"Android {facts.get('android_release')}, {facts.get('abi')}")
    done = ResultsLog(out_dir).completed_ids()
    pending = [s for s in plan if s.run_id not in done]
    if not pending:
        progress(f"all {len(plan)} runs already done; rewriting summaries")
        return SweepReport(out_dir=out_dir, total=len(plan), skipped=len(plan),
                           summary_paths=write_summaries(out_dir))
    executor = AndroidExecutor(adb, binary, timeout_secs=timeout_secs, out_dir=out_dir, op_profiling=op_profiling)
    models = list({s.model.name: s.model for s in pending}.values())
    base = {"target": "android", "device": {"serial": adb.serial, "model": facts.get("model"),
                                            "soc": facts.get("soc")}}
    try:
        executor.setup(models, progress)
        return execute_plan(plan, out_dir, executor, base_record=base, cooldown=cooldown, progress=progress,
                            max_consecutive_failures=max_consecutive_failures)
    except (DeviceDisconnectedError, UnauthorizedDeviceError) as e:
        # the phone went away or stopped trusting this computer mid-sweep: same class, so the
        # user is told what really happened, plus what is saved and how to resume
        report = getattr(e, "report", None)
        saved = (report.ok + report.skipped) if report else len(done)
        todo = ("reconnect the phone" if isinstance(e, DeviceDisconnectedError)
                else "accept the prompt on the phone")
        err = type(e)(
            f"{e}; {saved} of {len(plan)} runs are saved in {out_dir / 'results.jsonl'}: {todo} "
            "and rerun the same command to resume")
        err.report = report  # type: ignore[attr-defined]
        raise err from None
    finally:
        if not keep_device_files:
            try:
                executor.cleanup()
            except (BenchError, subprocess.TimeoutExpired):
                pass
