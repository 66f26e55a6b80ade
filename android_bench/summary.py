"""Summaries of a results folder: per model and per task combination, as CSV and markdown.

Statistics are taken *across repeats* of each run's own mean latency: one run gives one number
(benchmark_model's ``avg``), and the spread over repeats (std, coefficient of variation, p50/p90)
is what tells whether a difference between two models is real. The benchmark's own in-run
percentiles (``median``/p95 in recent benchmark_model builds, p50/p90 in host mode) are reported
next to them, as the median over repeats, when the runs printed them.

A combination's latency is the sum over its files of each file's latency in the same repeat and
setting: the files of, e.g., the no-merge baseline run one after another, not concurrently.
Percentiles use linear interpolation between order statistics (NumPy's default).
"""
from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from android_bench.results import ResultsLog, atomic_write_text, latest_ok, load_meta

MODEL_CSV = "summary_models.csv"
MODEL_MD = "summary_models.md"
COMBO_CSV = "summary_combinations.csv"
COMBO_MD = "summary_combinations.md"

STAT_COLUMNS = ("n", "mean_ms", "std_ms", "cv", "p50_ms", "p90_ms", "min_ms", "max_ms")
MODEL_COLUMNS = ("target", "model", "sha256", "threads", "delegate", "affinity", *STAT_COLUMNS,
                 "bench_p50_ms", "bench_p90_ms", "bench_p95_ms", "init_ms", "cpu_fallback_runs",
                 "partial_delegation_runs", "failed_runs")
COMBO_COLUMNS = ("target", "combination", "tasks", "files", "threads", "delegate", "affinity", *STAT_COLUMNS,
                 "bench_p50_ms", "flops", "macs", "params", "bytes", "gzip_bytes", "accuracy",
                 "max_abs_diff", "cpu_fallback_runs")


def percentile(values: Sequence[float], q: float) -> float:
    """q-th percentile (0-100), linear interpolation (same as numpy.percentile's default)."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def describe(values: Sequence[float]) -> dict[str, float]:
    """n, mean, sample std (0 for one value), coefficient of variation, p50, p90, min, max."""
    n = len(values)
    if n == 0:
        return {k: math.nan for k in STAT_COLUMNS} | {"n": 0}
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"n": n, "mean_ms": mean, "std_ms": std, "cv": std / mean if mean else math.nan,
            "p50_ms": percentile(values, 50), "p90_ms": percentile(values, 90),
            "min_ms": min(values), "max_ms": max(values)}


def _median_or_none(values: Iterable[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return percentile(xs, 50) if xs else None


def _cell_key(record: dict[str, Any]) -> tuple[Any, ...]:
    s = record["settings"]
    return (s["target"], s["threads"], s["delegate"], s.get("affinity") or "")


def model_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model file, target, threads, delegate, affinity)."""
    ok = latest_ok(records)
    failed_ids = {r["run_id"] for r in records if r.get("status") != "ok"} - set(ok)
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    failures: dict[tuple[Any, ...], int] = defaultdict(int)
    names: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in ok.values():
        key = (r["model"]["name"], r["model"]["sha256"], *_cell_key(r))
        groups[key].append(r)
        names[key] = r
    for r in {r["run_id"]: r for r in records if r["run_id"] in failed_ids}.values():
        key = (r["model"]["name"], r["model"]["sha256"], *_cell_key(r))
        failures[key] += 1
        names.setdefault(key, r)
    rows = []
    for key in sorted(names, key=lambda k: (k[0], k[2], k[3], k[4], k[5])):
        runs = sorted(groups.get(key, []), key=lambda r: r["repeat"])
        name, sha, target, threads, delegate, affinity = key
        row: dict[str, Any] = {"target": target, "model": name, "sha256": sha[:12], "threads": threads,
                               "delegate": delegate, "affinity": affinity}
        row.update(describe([r["metrics"]["avg_ms"] for r in runs]))
        row.update(
            bench_p50_ms=_median_or_none(r["metrics"].get("p50_ms") for r in runs),
            bench_p90_ms=_median_or_none(r["metrics"].get("p90_ms") for r in runs),
            bench_p95_ms=_median_or_none(r["metrics"].get("p95_ms") for r in runs),
            init_ms=_median_or_none(r["metrics"].get("init_ms") for r in runs),
            cpu_fallback_runs=sum(bool(r["metrics"].get("cpu_fallback")) for r in runs),
            partial_delegation_runs=sum(r["metrics"].get("delegate_status") == "partial" for r in runs),
            failed_runs=failures.get(key, 0))
        rows.append(row)
    return rows


def combination_rows(records: list[dict[str, Any]], combinations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (combination, target, threads, delegate, affinity) where every file has runs.

    A repeat counts only when all files of the combination have a successful run in it.
    """
    ok = latest_ok(records)
    # (file name, cell, repeat) -> record
    by_file: dict[tuple[Any, ...], dict[str, Any]] = {}
    cells: set[tuple[Any, ...]] = set()
    for r in ok.values():
        by_file[(r["model"]["name"], _cell_key(r), r["repeat"])] = r
        cells.add(_cell_key(r))
    rows = []
    for combo in combinations:
        files = combo["files"]
        for cell in sorted(cells):
            repeats = sorted({rep for (name, c, rep) in by_file if c == cell and name in files})
            totals, p50s, fallbacks = [], [], 0
            for rep in repeats:
                runs = [by_file.get((f, cell, rep)) for f in files]
                if any(x is None for x in runs):
                    continue
                totals.append(sum(x["metrics"]["avg_ms"] for x in runs))  # type: ignore[index]
                p50 = [x["metrics"].get("p50_ms") for x in runs]  # type: ignore[union-attr]
                p50s.append(sum(p50) if all(v is not None for v in p50) else None)
                fallbacks += sum(bool(x["metrics"].get("cpu_fallback")) for x in runs)  # type: ignore[union-attr]
            if not totals:
                continue
            meta = combo.get("meta", {})
            target, threads, delegate, affinity = cell
            row: dict[str, Any] = {"target": target, "combination": combo["label"],
                                   "tasks": "+".join(combo.get("tasks", [])), "files": " + ".join(files),
                                   "threads": threads, "delegate": delegate, "affinity": affinity}
            row.update(describe(totals))
            acc = meta.get("accuracy")
            row.update(bench_p50_ms=_median_or_none(p50s), flops=meta.get("flops"), macs=meta.get("macs"),
                       params=meta.get("params"), bytes=meta.get("bytes"), gzip_bytes=meta.get("gzip_bytes"),
                       accuracy=(" ".join(f"{k}={v:.4g}" if isinstance(v, (int, float)) else f"{k}={v}"
                                          for k, v in acc.items()) if isinstance(acc, dict) else acc),
                       max_abs_diff=meta.get("max_abs_diff"), cpu_fallback_runs=fallbacks)
            rows.append(row)
    return rows


def _fmt(value: Any, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        if column == "cv":
            return f"{value:.4f}"
        if column.endswith("_ms"):
            return f"{value:.4f}"
        return f"{value:.6g}"
    return str(value)


def to_csv(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_fmt(row.get(c), c) for c in columns])
    return buf.getvalue()


def to_markdown_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    def cell(v: str) -> str:
        return v.replace("|", "\\|")
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(cell(_fmt(row.get(c), c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


_NOTES = (
    "Statistics are across repeats of each run's mean latency (benchmark_model `avg`, or the mean of "
    "per-inference `perf_counter` times in host mode): `n` repeats, `mean_ms`, sample `std_ms`, "
    "`cv` = std/mean, `p50_ms`/`p90_ms` (linear interpolation). `bench_p50_ms`/`bench_p90_ms`/`bench_p95_ms` "
    "are the benchmark's own in-run percentiles (median over repeats), empty when the tool did not print them. "
    "`cpu_fallback_runs` counts runs where a requested delegate executed nothing (silent CPU fallback)."
)
_COMBO_NOTE = (
    "A combination's latency is the **sum over its files** of each file's mean latency in the same repeat "
    "and setting (its files run one after another); `bench_p50_ms` is likewise the sum of the files' "
    "in-run medians, not a percentile of the sum."
)


def _header(meta: dict[str, Any] | None, title: str) -> str:
    lines = [f"# {title}", ""]
    if meta:
        dev = meta.get("device") or {}
        if dev:
            shown = ("model", "manufacturer", "soc", "android_release", "abi", "serial", "platform", "cpu")
            desc = ", ".join(f"{k}: {v}" for k, v in dev.items() if v and k in shown)
            lines.append(f"Target: {meta.get('target')} ({desc})")
        if meta.get("runtime"):
            lines.append(f"Runtime: {meta['runtime']}")
        if meta.get("source"):
            lines.append(f"Models: {meta['source']}")
        lines.append("")
    return "\n".join(lines) + "\n"


def _summary_rows(out_dir: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[dict[str, Any]]]:
    """(meta, model rows, combination rows) of a results folder."""
    records = ResultsLog(out_dir).read()
    meta = load_meta(out_dir)
    combos = (meta or {}).get("model_set", {}).get("combinations")
    if not combos:  # no meta: every model its own combination
        names = sorted({r["model"]["name"] for r in records})
        combos = [{"label": Path(n).stem, "tasks": [Path(n).stem], "files": [n], "meta": {}} for n in names]
    return meta, model_rows(records), combination_rows(records, combos)


def combination_summary(out_dir: str | Path) -> list[dict[str, Any]]:
    """The per-combination rows of a results folder, as the summary files show them."""
    return _summary_rows(Path(out_dir))[2]


def write_summaries(out_dir: str | Path) -> dict[str, Path]:
    """(Re)write the four summary files of a results folder from its results and meta."""
    out_dir = Path(out_dir)
    meta, mrows, crows = _summary_rows(out_dir)
    paths = {
        "models_csv": atomic_write_text(out_dir / MODEL_CSV, to_csv(mrows, MODEL_COLUMNS)),
        "combinations_csv": atomic_write_text(out_dir / COMBO_CSV, to_csv(crows, COMBO_COLUMNS)),
        "models_md": atomic_write_text(
            out_dir / MODEL_MD,
            _header(meta, "Latency per model") + _NOTES + "\n\n" + to_markdown_table(mrows, MODEL_COLUMNS)),
        "combinations_md": atomic_write_text(
            out_dir / COMBO_MD,
            _header(meta, "Latency per task combination") + _COMBO_NOTE + "\n\n" + _NOTES + "\n\n"
            + to_markdown_table(crows, COMBO_COLUMNS)),
    }
    return paths


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """Helper for callers and tests: a summary CSV as a list of dicts."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
