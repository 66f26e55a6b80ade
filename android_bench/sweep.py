"""The sweep loop shared by phone and host mode: resume, cool down, run, record, summarise.

The loop owns the fault policy, so both targets behave the same:

* a run that fails on its own (timeout, malformed output, the tool's own failure) is recorded with
  ``status`` ``timeout``/``error`` and the sweep goes on; ``max_consecutive_failures`` in a row
  stop it (a hung GPU driver should not cost hours of timeouts);
* faults that doom every later run (phone gone, binary not runnable) stop the sweep at once;
* either way every finished run is already on disk, summaries are rewritten from what exists,
  and a rerun resumes from the completed run ids (failed runs are retried).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from android_bench.errors import (BenchError, BenchmarkFailedError, MalformedOutputError,
                                  ReadingError, RunTimeoutError)
from android_bench.plan import Cooldown, RunSpec, wait_for_cooldown
from android_bench.results import CLOCK_FIELD, SCHEMA_VERSION, ResultsLog
from android_bench.summary import combination_summary, write_summaries

Progress = Callable[[str], None]


@dataclass
class RunOutcome:
    """What an executor returns for one successful run."""

    metrics: dict[str, Any]
    raw_output: str
    command: list[str]
    extra: dict[str, Any] = field(default_factory=dict)


class Executor(Protocol):
    """A target that can time one planned run (the phone over adb, or this machine)."""

    def snapshot(self) -> tuple[dict[str, float], dict[str, int]]:
        """(thermal zone °C, CPU kHz) right now; empty dicts where the device exposes none;
        raises ReadingError when the reading itself failed."""

    def hottest(self, zone_regex: str | None) -> float | None:
        """Hottest plausible thermal zone, for temperature-based cool-down."""

    def run(self, spec: RunSpec) -> RunOutcome:
        """Time one run; raise a BenchError subclass on failure."""


@dataclass
class SweepReport:
    """How a sweep ended."""

    out_dir: Path
    total: int
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    cpu_fallback: int = 0
    stopped: str | None = None
    failures: list[str] = field(default_factory=list)
    summary_paths: dict[str, Path] = field(default_factory=dict)
    combinations: list[dict] = field(default_factory=list)  # summary rows per combination

    @property
    def complete(self) -> bool:
        return self.stopped is None and self.failed == 0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


#: Run failures that are recorded, after which the sweep continues.
RECORDED_FAILURES: dict[type[BenchError], str] = {
    RunTimeoutError: "timeout",
    MalformedOutputError: "error",
    BenchmarkFailedError: "error",
}


def _read(executor: Executor, when: str,
          errors: dict[str, str]) -> tuple[dict[str, float] | None, dict[str, int] | None]:
    """One snapshot; a failed reading is recorded as failed (None, and why in ``errors[when]``),
    never as an empty dict, which means the device has no readable zones."""
    try:
        return executor.snapshot()
    except ReadingError as e:
        errors[when] = str(e)
        return None, None


def _read_after(executor: Executor, errors: dict[str, str]) -> tuple[Any, Any, BenchError | None]:
    """The snapshot after a run. If the phone goes away (or stops trusting this computer) right
    after the run, the run itself is still good: return the device error for the caller to raise
    once the run is recorded, instead of losing the run."""
    try:
        return (*_read(executor, "after", errors), None)
    except BenchError as e:
        errors["after"] = str(e)
        return None, None, e


def execute_plan(plan: Sequence[RunSpec], out_dir: str | Path, executor: Executor, *,
                 base_record: dict[str, Any], cooldown: Cooldown = Cooldown(),
                 progress: Progress = print, max_consecutive_failures: int = 3,
                 sleep: Callable[[float], None] = time.sleep) -> SweepReport:
    """Run every not-yet-completed run of ``plan``, appending one record per run.

    Exceptions other than the recorded run failures propagate after the summaries are rewritten,
    so the caller can report them; the report of the partial sweep is attached as ``e.report``.
    """
    log = ResultsLog(out_dir)
    done = log.completed_ids()
    todo = [s for s in plan if s.run_id not in done]
    report = SweepReport(out_dir=Path(out_dir), total=len(plan), skipped=len(plan) - len(todo))
    if report.skipped:
        progress(f"resuming: {report.skipped} of {len(plan)} runs already done in {log.path}")
    consecutive = 0
    try:
        for spec in todo:
            where = (f"[{spec.index + 1}/{len(plan)}] {spec.model.name} {spec.settings.label()} "
                     f"repeat {spec.repeat}")
            started = time.monotonic()  # wall_secs covers cool-down + snapshots + the run
            cool = wait_for_cooldown(cooldown, lambda: executor.hottest(cooldown.zone_regex), sleep=sleep)
            waited = cool.pop("waited_secs")
            reading_errors: dict[str, str] = {}
            thermal_before, freq_before = _read(executor, "before", reading_errors)
            record: dict[str, Any] = {
                "schema": SCHEMA_VERSION, **base_record, "run_id": spec.run_id, "index": spec.index,
                "model": spec.model.to_dict(), "settings": spec.settings.to_dict(), "repeat": spec.repeat,
                "cooldown": cool, "thermal_before": thermal_before, "cpufreq_before": freq_before,
                "reading_errors": reading_errors}
            clock = {"started_at": _now(), "cooldown_waited_secs": waited}
            try:
                outcome = executor.run(spec)
            except tuple(RECORDED_FAILURES) as e:  # type: ignore[misc]
                status = RECORDED_FAILURES[type(e)]
                thermal_after, freq_after, gone = _read_after(executor, reading_errors)
                clock.update(finished_at=_now(), wall_secs=round(time.monotonic() - started, 3))
                record.update(status=status, error={"type": type(e).__name__, "message": str(e)},
                              metrics=None, raw_output=getattr(e, "raw_output", ""),
                              command=getattr(e, "command", []), thermal_after=thermal_after,
                              cpufreq_after=freq_after, **{CLOCK_FIELD: clock})
                log.append(record)
                report.failed += 1
                report.failures.append(f"{where}: {e}")
                progress(f"{where}: FAILED ({type(e).__name__}): {e}")
                if gone is not None:
                    raise gone
                consecutive += 1
                if consecutive >= max_consecutive_failures:
                    report.stopped = (f"stopped after {consecutive} failed runs in a row; "
                                      f"fix the cause and rerun the same command to resume")
                    break
                continue
            thermal_after, freq_after, gone = _read_after(executor, reading_errors)
            clock.update(finished_at=_now(), wall_secs=round(time.monotonic() - started, 3))
            record.update(status="ok", error=None, metrics=outcome.metrics, raw_output=outcome.raw_output,
                          command=outcome.command, thermal_after=thermal_after, cpufreq_after=freq_after,
                          **outcome.extra, **{CLOCK_FIELD: clock})
            log.append(record)
            consecutive = 0
            report.ok += 1
            flag = ""
            if outcome.metrics.get("cpu_fallback"):
                report.cpu_fallback += 1
                flag = f"  [CPU FALLBACK: {outcome.metrics.get('fallback_reason')}]"
            elif outcome.metrics.get("delegate_status") == "partial":
                flag = f"  [partially delegated: {outcome.metrics.get('delegated_kernels')} delegate kernels]"
            progress(f"{where}: avg {outcome.metrics['avg_ms']:.3f} ms{flag}")
            if gone is not None:
                raise gone
    except BenchError as e:
        report.stopped = str(e)
        report.summary_paths = write_summaries(out_dir)
        e.report = report  # type: ignore[attr-defined]
        raise
    report.summary_paths = write_summaries(out_dir)
    report.combinations = combination_summary(out_dir)
    return report
