"""Read timings out of TFLite/LiteRT ``benchmark_model`` output, old and new formats.

The formats come from the tool's source (``benchmark_model.cc``, ``benchmark_tflite_model.cc``
and ``Stat::OutputToStream`` in ``stats_calculator.h``); see
``tests/fixtures/benchmark_model/README.md`` for the lines this parser is checked against:

* Old (TF 1.x - 2.3): log lines without a severity prefix, ``Initialized session in 3.2ms``,
  ``Average inference timings in us: Warmup: W, Init: I, no stats: A`` (TF 1.x) or
  ``Inference timings in us: Init: I, First inference: F, Warmup (avg): W, Inference (avg): A``
  and ``Peak memory footprint (MB): init=.. overall=..``.
* New (TF >= 2.4, LiteRT): every line prefixed ``INFO:``/``WARN:``/``ERROR:``,
  ``Memory footprint delta from the start of the tool (MB): init=.. overall=..``,
  ``Overall peak memory footprint (MB) via periodic monitoring: P`` and, in recent builds,
  ``p5=.. median=.. p95=..`` appended to the run statistics line.

Each "Running benchmark for ..." header is followed by one statistics line
(``count=N first=.. curr=.. min=.. max=.. avg=.. std=..``, or ``count=N curr=X`` when all runs
took the same time); the first block is warm-up, the second the measured steady state. The parser
also accepts a labelled statistics line (``Steady-state: count=...``) and a separate
``Percentiles: p5=.. p50=..`` line, so a future format change of that kind still parses.

Delegate lines tell whether a requested delegate really ran the graph: a "will not be executed by
the delegate" line (or no line at all) means the timings are CPU timings in disguise, which the
result flags as ``cpu_fallback``.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from android_bench.errors import BenchmarkFailedError, MalformedOutputError

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
_PREFIX_RE = re.compile(r"^(?:INFO|WARN|WARNING|ERROR|VERBOSE|DEBUG|FATAL): ?")
_STAT_LABEL_RE = re.compile(r"^(?:(?P<label>[A-Za-z][\w\- ()]*?)\s*:\s*)?count=(?P<count>\d+)(?P<rest>.*)$")
_KV_RE = re.compile(r"(?P<key>[A-Za-z_][A-Za-z_0-9]*)=(?P<val>" + _NUM + r")")
_PERCENTILE_KEY_RE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")
_RUN_HEADER_RE = re.compile(r"^Running benchmark for ")
_SESSION_RE = re.compile(r"Initialized session in (?P<ms>" + _NUM + r") ?ms")
_TIMINGS_NEW_RE = re.compile(
    r"Inference timings in us: Init: (?P<init>" + _NUM + r"), First inference: (?P<first>" + _NUM
    + r"), Warmup \(avg\): (?P<warmup>" + _NUM + r"), Inference \(avg\): (?P<avg>" + _NUM + r")")
_TIMINGS_OLD_RE = re.compile(r"Average inference timings in us: (?P<body>.*)$")
_MEM_RE = re.compile(
    r"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
    r"init=(?P<init>" + _NUM + r") overall=(?P<overall>" + _NUM + r")")
_PEAK_RE = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: (?P<peak>" + _NUM + r")")
_MODEL_SIZE_RE = re.compile(r"The input model file size \(MB\): (?P<mb>" + _NUM + r")")
_PARAM_RE = re.compile(r"^(?P<name>[^:\[\]]{1,80}?)\s*:\s*\[(?P<value>.*)\]$")
_DELEGATE_FULL_RE = re.compile(
    r"Explicitly applied (?P<name>.+?) delegate, and the model graph will be completely executed by the delegate")
_DELEGATE_PARTIAL_RE = re.compile(
    r"Explicitly applied (?P<name>.+?) delegate, and the model graph will be partially executed by the "
    r"delegate w/ (?P<kernels>\d+) delegate kernels")
_DELEGATE_NONE_RE = re.compile(
    r"Though (?P<name>.+?) delegate is explicitly applied, the model graph will not be executed by the delegate")
_FAILURE_MARKERS = (
    "Benchmarking failed",
    "Disallowed CPU fallback detected",
    "Failed to apply ",
    "Failed to mmap model",
    "Failed to allocate tensors",
    "Failed to initialize the interpreter",
)

#: How a requested delegate shows up in the tool's delegate lines.
DELEGATE_LOG_NAMES = {"xnnpack": "XNNPACK", "gpu": "GPU", "nnapi": "NNAPI"}


@dataclass
class RunStats:
    """One ``Stat::OutputToStream`` line: times of individual inferences, in microseconds."""

    count: int
    first: float | None = None
    curr: float | None = None
    min: float | None = None
    max: float | None = None
    avg: float | None = None
    std: float | None = None
    all_same: bool = False
    percentiles: dict[str, float] = field(default_factory=dict)

    @property
    def p50(self) -> float | None:
        return self.percentiles.get("p50")


@dataclass
class DelegateLine:
    """What the tool said about one applied delegate."""

    name: str
    status: str  # "full" | "partial" | "none"
    kernels: int | None = None


@dataclass
class BenchmarkOutput:
    """Everything read from one run's output. Times in microseconds unless the name says ms/mb."""

    format: str  # "old" (no log severity prefix) or "new" ("INFO: " prefixed)
    timings_style: str  # "average" (TF 1.x line), "inference" (Init/First/Warmup/Inference), "none"
    init_session_ms: float | None = None
    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None
    warmup: RunStats | None = None
    steady: RunStats | None = None
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    peak_memory_mb: float | None = None
    model_size_mb: float | None = None
    params: dict[str, str] = field(default_factory=dict)
    delegates: list[DelegateLine] = field(default_factory=list)
    requested_delegate: str | None = None
    delegate_status: str = "not_requested"  # full | partial | none | not_reported | not_requested
    delegated_kernels: int | None = None
    cpu_fallback: bool = False
    fallback_reason: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def avg_us(self) -> float:
        """Mean steady-state inference time; the number the sweep reports."""
        if self.inference_avg_us is not None:
            return self.inference_avg_us
        assert self.steady is not None and self.steady.avg is not None
        return self.steady.avg

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["avg_us"] = self.avg_us
        return d


def _num(text: str) -> float:
    return float(text)


def _strip_prefix(line: str) -> tuple[str, bool]:
    m = _PREFIX_RE.match(line)
    if m:
        return line[m.end():], True
    return line, False


def parse_stat_line(line: str) -> RunStats | None:
    """Parse ``count=.. first=.. ...`` (optionally ``Label: count=..``); None if not a stat line."""
    m = _STAT_LABEL_RE.match(line.strip())
    if not m:
        return None
    stats = RunStats(count=int(m.group("count")))
    rest = m.group("rest")
    if "(all same)" in rest:
        stats.all_same = True
        rest = rest.replace("(all same)", " ")
    for kv in _KV_RE.finditer(rest):
        key, val = kv.group("key"), _num(kv.group("val"))
        if key in ("first", "curr", "min", "max", "avg", "std"):
            setattr(stats, key, val)
        elif key == "median":
            stats.percentiles["p50"] = val
        elif _PERCENTILE_KEY_RE.match(key):
            stats.percentiles[key] = val
    if stats.count > 0 and stats.avg is None and stats.curr is not None and stats.min is None:
        # "count=N curr=X" is printed when every run took the same time X.
        stats.all_same = True
        stats.first = stats.min = stats.max = stats.avg = stats.curr
        stats.std = 0.0
    return stats


def _parse_percentile_line(line: str) -> dict[str, float] | None:
    if not line.startswith("Percentiles:"):
        return None
    out: dict[str, float] = {}
    for kv in _KV_RE.finditer(line):
        key = kv.group("key")
        if key == "median":
            out["p50"] = _num(kv.group("val"))
        elif _PERCENTILE_KEY_RE.match(key):
            out[key] = _num(kv.group("val"))
    return out


def _parse_old_timings(body: str, out: BenchmarkOutput) -> None:
    # "Warmup: 8123, Init: 3217, no stats: 1301.44" / "... Inference: 79760.9"
    for part in body.split(","):
        if ":" not in part:
            continue
        key, _, val = part.partition(":")
        key, val = key.strip().lower(), val.strip()
        if not re.fullmatch(_NUM, val):
            continue
        if key == "warmup":
            out.warmup_avg_us = _num(val)
        elif key == "init":
            out.init_us = _num(val)
        elif key in ("no stats", "inference"):
            out.inference_avg_us = _num(val)


def _classify_delegate(out: BenchmarkOutput, requested: str | None) -> None:
    if not requested or requested == "cpu":
        out.delegate_status = "not_requested"
        return
    log_name = DELEGATE_LOG_NAMES.get(requested, requested).upper()
    mine = [d for d in out.delegates if d.name.upper() == log_name]
    if not mine:
        out.delegate_status = "not_reported"
        out.cpu_fallback = True
        out.fallback_reason = (f"{log_name} delegate was requested but the output never says it was applied; "
                               "the timings are most likely CPU timings")
        return
    line = mine[-1]
    out.delegate_status = line.status
    out.delegated_kernels = line.kernels
    if line.status == "none":
        out.delegated_kernels = 0
        out.cpu_fallback = True
        out.fallback_reason = f"{log_name} delegate was applied but executes no node: silent CPU fallback"
    elif line.status == "full":
        out.delegated_kernels = 1


def _failure_lines(lines: list[str]) -> list[str]:
    return [ln for ln in lines if any(marker in ln for marker in _FAILURE_MARKERS)]


@dataclass
class _Scan:
    """What reading one output collects besides :class:`BenchmarkOutput` fields: its stat lines
    (unlabelled ones in order, each right after a run header; labelled ones by role), the last
    percentile line, and how many timing lines carried a log severity prefix."""

    blocks: list[RunStats] = field(default_factory=list)
    labelled: dict[str, RunStats] = field(default_factory=dict)
    pending_header: bool = False
    seen_header: bool = False
    prefixed: int = 0
    extra_percentiles: dict[str, float] | None = None

    def count_prefix(self, raw: str) -> None:
        """Count a timing line printed with a severity prefix (new builds)."""
        self.prefixed += bool(_PREFIX_RE.match(raw.strip()))

    def add_stats(self, raw: str, line: str, match: re.Match) -> None:
        """A ``[Label:] count=...`` line: a warm-up or steady-state block, or one to ignore."""
        stats = parse_stat_line(line)
        assert stats is not None
        label = (match.group("label") or "").lower()
        if label:
            if "warm" in label:
                self.labelled["warmup"] = stats
            elif "steady" in label or "inference" in label:
                self.labelled["steady"] = stats
            else:
                return
        elif self.pending_header or not self.seen_header:
            self.blocks.append(stats)
        else:
            return
        self.pending_header = False
        self.count_prefix(raw)


def parse_benchmark_output(text: str, requested_delegate: str | None = None) -> BenchmarkOutput:
    """Parse one run's combined stdout+stderr.

    ``requested_delegate`` ("xnnpack", "gpu", "nnapi", "cpu" or None) is the delegate the run asked
    for; it decides whether missing or "not executed" delegate lines count as a CPU fallback.

    Raises :class:`BenchmarkFailedError` when the tool reports its own failure and
    :class:`MalformedOutputError` when no steady-state timing can be found.
    """
    raw_lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [_strip_prefix(raw.strip())[0] for raw in raw_lines]

    failures = _failure_lines(lines)
    if failures:
        raise BenchmarkFailedError("benchmark_model reported a failure: " + " | ".join(failures[:5]))

    out = BenchmarkOutput(format="old", timings_style="none", requested_delegate=requested_delegate)
    scan = _Scan()
    for raw, line in zip(raw_lines, lines):
        if line:
            _read_line(out, scan, raw, line)
    _settle_stats(out, scan, lines)
    _derive_times(out)
    # New builds log through TFLITE_LOG with a severity prefix; old ones printed bare lines.
    out.format = "new" if scan.prefixed else "old"
    _classify_delegate(out, requested_delegate)
    return out


def _read_line(out: BenchmarkOutput, scan: _Scan, raw: str, line: str) -> None:
    """One non-empty line (``line``: without its severity prefix; ``raw``: as printed)."""
    if _RUN_HEADER_RE.match(line):
        scan.pending_header = scan.seen_header = True
        return
    stat_match = _STAT_LABEL_RE.match(line)
    if stat_match and not line.startswith(("Timings (microseconds)", "Memory (bytes)")):
        scan.add_stats(raw, line, stat_match)
        return
    pct = _parse_percentile_line(line)
    if pct is not None:
        scan.extra_percentiles = pct
        return
    _read_info_line(out, scan, raw, line)


def _read_info_line(out: BenchmarkOutput, scan: _Scan, raw: str, line: str) -> None:
    """A line that is not a stat line: timings summary, memory, delegates, parameters, warnings."""
    if m := _SESSION_RE.search(line):
        out.init_session_ms = _num(m.group("ms"))
    elif m := _TIMINGS_NEW_RE.search(line):
        out.timings_style = "inference"
        scan.count_prefix(raw)
        out.init_us = _num(m.group("init"))
        out.first_inference_us = _num(m.group("first"))
        out.warmup_avg_us = _num(m.group("warmup"))
        out.inference_avg_us = _num(m.group("avg"))
    elif m := _TIMINGS_OLD_RE.search(line):
        out.timings_style = "average"
        scan.count_prefix(raw)
        _parse_old_timings(m.group("body"), out)
    elif m := _MEM_RE.search(line):
        out.memory_init_mb = _num(m.group("init"))
        out.memory_overall_mb = _num(m.group("overall"))
    elif m := _PEAK_RE.search(line):
        out.peak_memory_mb = _num(m.group("peak"))
    elif m := _MODEL_SIZE_RE.search(line):
        out.model_size_mb = _num(m.group("mb"))
    elif m := _DELEGATE_FULL_RE.search(line):
        out.delegates.append(DelegateLine(m.group("name"), "full", 1))
    elif m := _DELEGATE_PARTIAL_RE.search(line):
        out.delegates.append(DelegateLine(m.group("name"), "partial", int(m.group("kernels"))))
    elif m := _DELEGATE_NONE_RE.search(line):
        out.delegates.append(DelegateLine(m.group("name"), "none", 0))
    elif m := _PARAM_RE.match(line):
        out.params[m.group("name").strip()] = m.group("value")
    elif raw.strip().startswith(("WARN", "ERROR")):
        out.warnings.append(line)


def _settle_stats(out: BenchmarkOutput, scan: _Scan, lines: list[str]) -> None:
    """Pick the warm-up and steady-state stats (labelled ones win); refuse unusable timings."""
    if len(scan.blocks) >= 2:
        out.warmup, out.steady = scan.blocks[0], scan.blocks[-1]
    elif len(scan.blocks) == 1:
        out.steady = scan.blocks[0]
    out.warmup = scan.labelled.get("warmup", out.warmup)
    out.steady = scan.labelled.get("steady", out.steady)
    if out.steady is not None and scan.extra_percentiles:
        out.steady.percentiles.update(scan.extra_percentiles)
    if out.steady is not None and out.steady.count == 0:
        raise MalformedOutputError("benchmark_model output has a steady-state line with count=0 (no run finished)")
    if out.steady is None and out.inference_avg_us is None:
        head = " | ".join(ln for ln in lines if ln)[:300]
        raise MalformedOutputError(
            "benchmark_model output has no steady-state timing (no 'count=... avg=...' line and no "
            f"'Inference timings in us' line); output starts: {head!r}")
    if out.inference_avg_us is None and out.steady is not None and out.steady.avg is None:
        raise MalformedOutputError("benchmark_model steady-state line has no avg= value")


def _derive_times(out: BenchmarkOutput) -> None:
    """Fill warm-up, first-inference and init times that one output style leaves out."""
    if out.warmup is not None and out.warmup_avg_us is None:
        out.warmup_avg_us = out.warmup.avg
    if out.first_inference_us is None and out.warmup is not None:
        out.first_inference_us = out.warmup.first
    if out.init_us is None and out.init_session_ms is not None:
        out.init_us = out.init_session_ms * 1000.0
    if out.init_session_ms is None and out.init_us is not None:
        out.init_session_ms = out.init_us / 1000.0


def _ms(us: float | None) -> float | None:
    return None if us is None else us / 1000.0


def output_metrics(out: BenchmarkOutput) -> dict[str, Any]:
    """The per-run numbers stored in a result record (milliseconds), same keys as host mode."""
    st = out.steady
    pct = st.percentiles if st else {}
    return {
        "avg_ms": out.avg_us / 1000.0,
        "count": st.count if st else None,
        "min_ms": _ms(st.min) if st else None,
        "max_ms": _ms(st.max) if st else None,
        "std_ms": _ms(st.std) if st else None,
        "p5_ms": _ms(pct.get("p5")),
        "p50_ms": _ms(pct.get("p50")),
        "p90_ms": _ms(pct.get("p90")),
        "p95_ms": _ms(pct.get("p95")),
        "p99_ms": _ms(pct.get("p99")),
        "init_ms": out.init_session_ms,
        "first_inference_ms": _ms(out.first_inference_us),
        "warmup_avg_ms": _ms(out.warmup_avg_us),
        "warmup_count": out.warmup.count if out.warmup else None,
        "memory_init_mb": out.memory_init_mb,
        "memory_overall_mb": out.memory_overall_mb,
        "peak_memory_mb": out.peak_memory_mb,
        "delegate_status": out.delegate_status,
        "delegated_kernels": out.delegated_kernels,
        "cpu_fallback": out.cpu_fallback,
        "fallback_reason": out.fallback_reason,
        "output_format": out.format,
    }
