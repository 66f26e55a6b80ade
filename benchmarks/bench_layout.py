"""Benchmark: split layout (one conv per group + Concatenate) vs fused layout (one conv per layer).

Usage:  .venv/bin/python benchmarks/bench_layout.py [--out benchmarks/results/layout.json]
                                                    [--rounds 31] [--block-ms 20] [--threads 1]

Question: a merged layer with several groups runs, in the exported file, either as separate
convolutions plus a concat (the builder's layout: exactly the plan's MACs) or as one convolution
with a block-structured kernel (zeros for forbidden edges: fewer, larger ops but more MACs, see
:mod:`pam_tf.export.fused`). Which is faster on the host's LiteRT CPU runtime?

Setup: two merged plans made with ``plan_from_owners`` on chains traced from zoo models (28×28×1,
2 tasks of 5 binary labels, random-initialised weights: timing does not depend on values):

- LeNet-5: conv1 fully shared; conv2, fc3, fc4: 70 % shared, 30 % exclusive per task;
- vgg_small: conv1-conv4 fully shared; conv5, conv6, fc7, fc8: 70 % shared, 30 % exclusive.

For every combination both layouts are exported (float32) and checked: same outputs as the Keras
split model (≤ 1e-5), flatbuffer MACs = plan (split) / fused count (fused). Timing: LiteRT
interpreter, batch 1, same thread count for both, warm-up, then `rounds` interleaved rounds (the
order of the two layouts alternates every round) each timing a block of invokes of about
`block_ms`; the per-invoke median over rounds is reported, with the default XNNPACK delegate and
with the builtin kernels only. Results go to the JSON atomically, with machine info and load.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from pam_tf import io, zoo
from pam_tf.build import inherit_weights
from pam_tf.chain import check_same_chain, trace_model
from pam_tf.export import convert, flatbuffer_cost, parity, runtime
from pam_tf.export.fused import fused_cost
from pam_tf.plan import plan_from_owners
from pam_tf.tasks import Task

from ai_edge_litert.interpreter import Interpreter, OpResolverType

ROOT = Path(__file__).resolve().parents[1]

INPUT = (28, 28, 1)
CONFIGS = {"lenet5": ("conv2", "fc3", "fc4"),
           "vgg_small": ("conv5", "conv6", "fc7", "fc8")}
EXCLUSIVE = 0.3
RESOLVERS = {"xnnpack": OpResolverType.AUTO,
             "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}


def merged_plan(arch: str, later: tuple[str, ...]):
    """A 2-task plan: early layers fully shared, later ones 70 % shared / 30 % exclusive each."""
    tasks = [Task("a", "binary", 5, tuple(f"a{i}" for i in range(5))),
             Task("b", "binary", 5, tuple(f"b{i}" for i in range(5)))]
    traced = [trace_model(zoo.build_model(arch, INPUT, t, seed=i)) for i, t in enumerate(tasks)]
    chain = check_same_chain(traced)
    owners = []
    for layer in chain.hidden:
        d = layer.width
        own = [frozenset({0, 1})] * d + [frozenset()] * d  # model 0's neurons, shared
        if layer.name in later:
            k = round(d * EXCLUSIVE)
            for i in range(k):
                own[i] = frozenset({0})       # model 0: k exclusive to a, d-k shared
                own[d + i] = frozenset({1})   # model 1: k exclusive to b
        owners.append(own)
    plan = plan_from_owners(chain, ["a", "b"], [5, 5], ["sigmoid"] * 2, owners)
    return plan, inherit_weights(plan, traced)


def count_ops(data: bytes) -> int:
    from ai_edge_litert import schema_py_generated as schema
    m = schema.Model.GetRootAsModel(data, 0)
    return int(m.Subgraphs(0).OperatorsLength())


def make_interpreter(data: bytes, resolver: str, threads: int) -> Interpreter:
    interp = Interpreter(model_content=data, num_threads=threads,
                         experimental_op_resolver_type=RESOLVERS[resolver])
    interp.allocate_tensors()
    detail = interp.get_input_details()[0]
    x = np.random.default_rng(0).random(detail["shape"], dtype=np.float32)
    interp.set_tensor(detail["index"], x)
    return interp


def time_pair(models: dict[str, bytes], resolver: str, threads: int, rounds: int,
              block_ms: float) -> dict[str, dict]:
    """Interleaved timing of several files; returns per layout median/min/IQR µs per invoke."""
    interps = {k: make_interpreter(v, resolver, threads) for k, v in models.items()}
    for it in interps.values():  # warm-up
        for _ in range(50):
            it.invoke()
    first = next(iter(interps.values()))
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < block_ms / 1e3:
        first.invoke()
        n += 1
    block = max(10, n)
    samples: dict[str, list[float]] = {k: [] for k in interps}
    keys = list(interps)
    for r in range(rounds):
        for k in (keys if r % 2 == 0 else keys[::-1]):
            it = interps[k]
            t = time.perf_counter()
            for _ in range(block):
                it.invoke()
            samples[k].append((time.perf_counter() - t) / block * 1e6)
    out = {}
    for k, s in samples.items():
        q = np.percentile(s, [25, 75])
        out[k] = {"median_us": round(statistics.median(s), 2), "min_us": round(min(s), 2),
                  "iqr_us": [round(float(q[0]), 2), round(float(q[1]), 2)],
                  "invokes_per_round": block}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/layout.json"))
    ap.add_argument("--rounds", type=int, default=31)
    ap.add_argument("--block-ms", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    load_start = os.getloadavg()
    results = []
    for arch, later in CONFIGS.items():
        plan, weights = merged_plan(arch, later)
        x = parity.parity_inputs(plan.chain.input_shape, 16, 0)
        groups = {plan.chain.hidden[l].name: [(g.key, g.width) for g in gs]
                  for l, gs in enumerate(plan.layers)}
        print(f"{arch}: groups {groups}", flush=True)
        for combo in plan.combinations():
            files, info = {}, {}
            ref_model = convert.combination_model(plan, weights, combo, "split")
            ref = convert.keras_outputs(ref_model, x)
            for layout in ("split", "fused"):
                model = convert.combination_model(plan, weights, combo, layout)
                data = convert.convert_keras_model(model, "float32")
                got = runtime.run(runtime.load_interpreter(data), x, combo)
                diff = parity.max_abs_diff(got, ref, combo)
                parity.check(f"{arch} {layout} {'+'.join(combo)}", diff, 1e-5, "float32")
                want = plan.cost(combo) if layout == "split" else fused_cost(plan, combo)
                counted = flatbuffer_cost.count(data)
                flatbuffer_cost.check(counted, want.macs, want.flops, f"{arch} {layout}")
                files[layout] = data
                info[layout] = {"macs": counted.macs, "ops": count_ops(data),
                                "counted_ops": len(counted.ops), "bytes": len(data),
                                "max_abs_diff_vs_split_keras": diff}
            timing = {res: time_pair(files, res, args.threads, args.rounds, args.block_ms)
                      for res in RESOLVERS}
            for layout in info:
                info[layout]["time"] = {res: timing[res][layout] for res in RESOLVERS}
            speed = {res: round(timing[res]["split"]["median_us"] /
                                timing[res]["fused"]["median_us"], 3) for res in RESOLVERS}
            row = {"arch": arch, "combination": "+".join(combo), "split": info["split"],
                   "fused": info["fused"], "fused_speedup": speed,
                   "fused_extra_macs": round(info["fused"]["macs"] / info["split"]["macs"] - 1,
                                             4)}
            results.append(row)
            print(f"  {'+'.join(combo):4s} split {info['split']['macs']:>9,} MACs "
                  f"{info['split']['ops']:3d} ops | fused {info['fused']['macs']:>9,} MACs "
                  f"{info['fused']['ops']:3d} ops | " + " | ".join(
                      f"{res}: split {timing[res]['split']['median_us']:8.1f} µs, fused "
                      f"{timing[res]['fused']['median_us']:8.1f} µs (×{speed[res]:.2f})"
                      for res in RESOLVERS), flush=True)

    wins = {res: sum(r["fused_speedup"][res] > 1.0 for r in results) for res in RESOLVERS}
    geo = {res: round(float(np.exp(np.mean([np.log(r["fused_speedup"][res])
                                              for r in results]))), 3) for res in RESOLVERS}
    # Fused becomes the default only if it wins everywhere: a layout that is slower for some
    # architecture or runtime would make some combinations slower than the plan promises.
    fused_everywhere = all(wins[res] == len(results) for res in RESOLVERS)
    summary = {
        "fused_faster_cases": {res: f"{wins[res]}/{len(results)}" for res in RESOLVERS},
        "fused_speedup_geomean": geo,
        "fused_speedup_by_arch": {
            arch: {res: [r["fused_speedup"][res] for r in results if r["arch"] == arch]
                   for res in RESOLVERS} for arch in CONFIGS},
        "default_layout": "fused" if fused_everywhere else "split",
        "rule": "fused is the default only if it is faster in every case with both kernels",
    }
    doc = {
        "benchmark": "bench_layout",
        "question": "split (one conv per group + concat) vs fused (one block-structured conv "
                    "per layer) for merged combination models, LiteRT host CPU",
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "loadavg_start": [round(v, 2) for v in load_start],
                    "loadavg_end": [round(v, 2) for v in os.getloadavg()]},
        "settings": {"input_shape": list(INPUT), "batch": 1, "threads": args.threads,
                     "rounds": args.rounds, "block_ms": args.block_ms, "warmup_invokes": 50,
                     "exclusive_fraction_later_layers": EXCLUSIVE,
                     "later_layers": {k: list(v) for k, v in CONFIGS.items()},
                     "statistic": "median over interleaved rounds of per-invoke time"},
        "results": results,
        "summary": summary,
    }
    io.write_json(args.out, doc)
    print(f"summary: {summary}\nwrote {args.out}")


if __name__ == "__main__":
    main()
