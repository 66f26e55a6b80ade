"""Benchmark: host latency of one .tflite file by three LiteRT paths, side by side (issue 16).

Usage:  .venv/bin/python benchmarks/bench_host_apis.py [--out benchmarks/results/host_apis.json]
                                                       [--size 96] [--threads 1] [--rounds 3]
                                                       [--num_runs 100] [--min_secs 1.0]

Question: do android_bench's host timings (``android_bench.host.time_model``) agree with LiteRT's
own benchmark tool, and does the CompiledModel API time like the Interpreter? Three paths on the
same file, same thread count, XNNPACK:

- ``interpreter``: ``time_model(api="interpreter")`` (Interpreter, ``invoke()``);
- ``compiled_model``: ``time_model(api="compiled_model")`` (CompiledModel, ``run_by_index``);
- ``benchmark_litert_model``: ``python -m ai_edge_litert.tools.benchmark_litert_model`` (a
  separate process; its JSON reports milliseconds with 2 decimals).

Model: ``pam_tf.zoo.vgg_small`` (six 3x3 convs) on ``size x size x 3`` inputs with random weights
(timing does not depend on values), float32, batch 1. At 96x96 one inference is a few ms, so the
per-call Python overhead of the two in-process paths (tens of µs) does not dominate. The three
paths run in ``rounds`` interleaved rounds (the order rotates every round); each round yields one
mean, median and minimum per path, and the table shows the median over rounds, with each path's
median and minimum relative to the tool's (on a loaded, shared machine the minimum is the
steadiest of the three). Results go to the JSON atomically, with machine info and load.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

PATHS = ("interpreter", "compiled_model", "benchmark_litert_model")
TOOL_MODULE = "ai_edge_litert.tools.benchmark_litert_model"


def vgg_tflite(size: int, path: Path) -> int:
    """Write the VGG-style model as float32 .tflite at ``path``; returns its MACs per inference."""
    from pam_tf.compat import tf
    from pam_tf.export import flatbuffer_cost
    from pam_tf.tasks import Task
    from pam_tf.zoo import build_model

    task = Task("t", "multiclass", 10, tuple(f"c{i}" for i in range(10)))
    model = build_model("vgg_small", (size, size, 3), task, seed=0)
    data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    path.write_bytes(data)
    return int(flatbuffer_cost.count_subgraph(data).macs)


def tool_available() -> bool:
    """Whether this ai_edge_litert ships the benchmark tool (added in the 2.x series)."""
    import importlib.util
    return importlib.util.find_spec(TOOL_MODULE) is not None


def time_in_process(api: str) -> Callable[[Path, int, int, float], dict[str, float]]:
    """A timer for one of android_bench's host paths."""
    def run(path: Path, threads: int, num_runs: int, min_secs: float) -> dict[str, float]:
        from android_bench.host import time_model

        m, _ = time_model(path, threads=threads, delegate="xnnpack", warmup_runs=10,
                          warmup_min_secs=0.2, num_runs=num_runs, min_secs=min_secs, api=api)
        return {"mean_ms": m["avg_ms"], "median_ms": m["p50_ms"], "min_ms": m["min_ms"],
                "init_ms": m["init_ms"], "runs": m["count"]}
    return run


def time_with_tool(path: Path, threads: int, num_runs: int, min_secs: float) -> dict[str, float]:
    """LiteRT's own benchmark tool in a fresh process (it has no --min_secs: runs only)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        proc = subprocess.run(
            [sys.executable, "-m", TOOL_MODULE, f"--model={path}", f"--num_threads={threads}",
             f"--num_runs={num_runs}", "--warmup_runs=10", f"--result_json={result}"],
            capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not result.exists():
            raise RuntimeError(f"{TOOL_MODULE} failed (exit {proc.returncode}): "
                               f"{(proc.stderr or proc.stdout).strip()[-500:]}")
        lat = json.loads(result.read_text())["latency"]
    return {"mean_ms": lat["avg_ms"], "median_ms": lat["median_ms"], "min_ms": lat["min_ms"],
            "init_ms": lat["init_ms"], "runs": lat["num_runs"]}


def run(size: int = 96, threads: int = 1, rounds: int = 3, num_runs: int = 100,
        min_secs: float = 1.0, folder: Path | None = None) -> dict[str, Any]:
    """Time the three paths on one VGG-style file; returns the results document."""
    timers = {"interpreter": time_in_process("interpreter"),
              "compiled_model": time_in_process("compiled_model")}
    if tool_available():
        timers["benchmark_litert_model"] = time_with_tool
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(folder or tmp) / f"vgg_small_{size}x{size}x3.tflite"
        macs = vgg_tflite(size, path)
        names = list(timers)
        per_round: dict[str, list[dict[str, float]]] = {n: [] for n in names}
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order
                per_round[name].append(timers[name](path, threads, num_runs, min_secs))
    results = {n: {k: statistics.median(x[k] for x in rows) for k in rows[0]} for n, rows in per_round.items()}
    ref = results.get("benchmark_litert_model")
    for row in results.values():  # on a shared machine the minimum is the steadiest statistic
        for stat in ("median", "min"):
            row[f"{stat}_vs_tool"] = (row[f"{stat}_ms"] / ref[f"{stat}_ms"]) if ref and ref[f"{stat}_ms"] else None
    return {"benchmark": "bench_host_apis",
            "question": "host latency of one file: android_bench Interpreter vs CompiledModel vs "
                        "LiteRT's benchmark_litert_model",
            "model": {"arch": "vgg_small", "input_shape": [size, size, 3], "macs": macs,
                      "dtype": "float32", "batch": 1},
            "settings": {"threads": threads, "rounds": rounds, "num_runs": num_runs,
                         "min_secs": min_secs, "kernels": "xnnpack",
                         "statistic": "median over interleaved rounds"},
            "tool_available": tool_available(),
            "results": results, "rounds": per_round}


def render(doc: dict[str, Any]) -> str:
    """The side-by-side table."""
    m = doc["model"]
    lines = [f"vgg_small {m['input_shape']} float32, {m['macs'] / 1e6:.1f} M MACs, "
             f"{doc['settings']['threads']} thread(s), median over {doc['settings']['rounds']} rounds",
             f"{'path':<24} {'mean ms':>9} {'median ms':>10} {'min ms':>8} {'init ms':>8} "
             f"{'median/tool':>12} {'min/tool':>9}"]
    for name, r in doc["results"].items():
        ratios = [f"{r[k]:.3f}" if r[k] is not None else "-" for k in ("median_vs_tool", "min_vs_tool")]
        lines.append(f"{name:<24} {r['mean_ms']:>9.3f} {r['median_ms']:>10.3f} {r['min_ms']:>8.3f} "
                     f"{r['init_ms']:>8.2f} {ratios[0]:>12} {ratios[1]:>9}")
    if not doc["tool_available"]:
        lines.append(f"({TOOL_MODULE} is not in this ai_edge_litert: only the two in-process paths)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "host_apis.json")
    p.add_argument("--size", type=int, default=96, help="input side (size x size x 3)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--num_runs", type=int, default=100)
    p.add_argument("--min_secs", type=float, default=1.0)
    args = p.parse_args(argv)
    from pam_tf import io

    load_start = os.getloadavg()
    doc = run(args.size, args.threads, args.rounds, args.num_runs, args.min_secs)
    doc["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                      "cpus": os.cpu_count(), "loadavg_start": [round(v, 2) for v in load_start],
                      "loadavg_end": [round(v, 2) for v in os.getloadavg()]}
    io.write_json(str(args.out), doc)
    print(render(doc))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
