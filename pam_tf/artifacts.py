"""The files one stage hands the next, each with one writer and one reader.

    traced.json + traced_weights.npz   the traced single-task networks (trace stage), so later
                                       stages never re-trace the Keras models
    <name>.json + <weights>.npz        a plan and its weights (merge, build, prune stages)
    bench/latency.json                 the host benchmark's per-combination summary

The information table has its own pair (:class:`pam_tf.merge.InformationTable`). Every file is
written atomically; a plan is written after its weights, so a plan file marks a complete pair.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pam_tf import io
from pam_tf.chain import Chain, TracedModel
from pam_tf.graph.plan import GraphPlan, load_any_plan
from pam_tf.graph.trace import WEIGHTED_KINDS, Graph, TracedGraph
from pam_tf.networks import check_weights_for
from pam_tf.plan import Plan


def save_traced(folder: str, traced: Sequence[TracedModel | TracedGraph]) -> None:
    """The traced networks: chains or graphs (JSON) and their BN-folded weights (npz; a chain's
    by layer index, a graph's by node name)."""
    arrays = {}
    entries = []
    for m, t in enumerate(traced):
        if isinstance(t, TracedGraph):
            for node, (kernel, bias) in t.weights.items():
                arrays[f"{m}/{node}/kernel"] = kernel
                arrays[f"{m}/{node}/bias"] = bias
            entries.append({"name": t.name, "graph": t.graph.to_json(), "tensors": t.tensors})
            continue
        for l, (kernel, bias) in enumerate(t.weights):
            arrays[f"{m}/{l}/kernel"] = kernel
            arrays[f"{m}/{l}/bias"] = bias
        entries.append({"name": t.name, "chain": t.chain.to_json()})
    io.save_npz(os.path.join(folder, "traced_weights.npz"), arrays)
    io.write_json(os.path.join(folder, "traced.json"), entries)


def load_traced(folder: str) -> list[TracedModel | TracedGraph]:
    """What :func:`save_traced` wrote."""
    meta = io.read_json(os.path.join(folder, "traced.json"), what="traced networks")
    arrays = io.load_npz(os.path.join(folder, "traced_weights.npz"))
    out: list[TracedModel | TracedGraph] = []
    for m, entry in enumerate(meta):
        if "graph" in entry:
            graph = Graph.from_json(entry["graph"])
            weights = {n.name: (arrays[f"{m}/{n.name}/kernel"], arrays[f"{m}/{n.name}/bias"])
                       for n in graph.nodes if n.kind in WEIGHTED_KINDS}
            out.append(TracedGraph(entry["name"], graph, weights, dict(entry["tensors"])))
            continue
        chain = Chain.from_json(entry["chain"])
        weights = [(arrays[f"{m}/{l}/kernel"], arrays[f"{m}/{l}/bias"])
                   for l in range(len(chain.layers))]
        out.append(TracedModel(entry["name"], chain, weights))
    return out


@dataclass
class Network:
    """A plan and its weights: what the merge, build and prune stages produce."""

    plan: Plan | GraphPlan
    weights: dict[str, np.ndarray]

    def save(self, folder: str, plan_name: str, weights_name: str) -> None:
        io.save_npz(os.path.join(folder, weights_name), self.weights)
        self.plan.save(os.path.join(folder, plan_name))  # last: marks a complete pair

    @staticmethod
    def load(folder: str, plan_name: str, weights_name: str) -> "Network":
        plan = load_any_plan(os.path.join(folder, plan_name))
        path = os.path.join(folder, weights_name)
        weights = io.load_npz(path)
        check_weights_for(plan, weights, where=path)
        return Network(plan, weights)


def save_latency(folder: str, rows: Sequence[dict]) -> None:
    """bench/latency.json: combination → p50/p90 (ms) and threads, from the sweep's summary."""
    table = {r["tasks"]: {"p50_ms": float(r["p50_ms"]), "p90_ms": float(r["p90_ms"]),
                          "threads": r["threads"]} for r in rows}
    io.write_json(os.path.join(folder, "bench", "latency.json"), table)


def load_latency(folder: str) -> dict[str, dict]:
    """What :func:`save_latency` wrote ({} when the run has no benchmark)."""
    path = os.path.join(folder, "bench", "latency.json")
    return io.read_json(path, what="latency summary") if os.path.exists(path) else {}
