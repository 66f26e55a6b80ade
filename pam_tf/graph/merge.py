"""PAM over coupling classes: each class of a graph network is regrouped once.

In a chain, PAM regroups each hidden layer's pooled neurons (method.md §5). In a graph the unit
is a coupling class: its channel j is one neuron however many tensors it appears in (a residual
stream's channel is written by several convs and read after each add). The information of a
class is that of the tensors it covers: a neuron is the vector of its values (post-activation,
spatially reduced) in every covered tensor, so the squared distance of two samples over a set
of neurons is the sum over neurons *and* tensors. That is the per-neuron squared-difference
stack :func:`pam_tf.regroup.regroup_layer` accepts as ``sq``; the greedy, α and modes are the
chain's, unchanged.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from pam_tf.compat import keras
from pam_tf.config import InfoConfig, MergeConfig
from pam_tf.graph.plan import GraphPlan
from pam_tf.graph.trace import Graph, TracedGraph, check_same_graph
from pam_tf.information import reduce_conv
from pam_tf.merge import InformationTable
from pam_tf.plan import Group, Head, canonical_order
from pam_tf.regroup import layer_task_information, neuron_sq_diffs, regroup_layer
from pam_tf.tasks import Task

COVERED_KINDS = ("conv", "dense", "depthwise", "add", "act")  # tensors that carry a class


def class_tensors(graph: Graph) -> list[list[str]]:
    """Per hidden class, the nodes whose outputs it covers (pads and pools only re-read them)."""
    return [[n.name for n in graph.class_nodes(c) if n.kind in COVERED_KINDS]
            for c in range(len(graph.class_names))]


def pooled_class_activations(models: Sequence, traced: Sequence[TracedGraph], x: np.ndarray,
                             reduce: str = "max") -> list[list[np.ndarray]]:
    """Per class, per covered tensor: (N, n·w) values of all n networks, model-major (column
    m·w + j is channel j of model m), conv tensors reduced spatially (method.md §4)."""
    covered = class_tensors(traced[0].graph)
    flat = [name for names in covered for name in names]
    position = {n.name: i for i, n in enumerate(traced[0].graph.nodes)}
    per_model = []
    for model, tr in zip(models, traced):  # nodes matched by position: names may differ
        own = [tr.graph.nodes[position[n]].name for n in flat]
        probe = keras.Model(model.inputs, [model.get_layer(tr.tensors[n]).output for n in own])
        acts = probe.predict(x, verbose=0, batch_size=256)
        acts = acts if isinstance(acts, list) else [acts]
        per_model.append(dict(zip(flat, (reduce_conv(np.asarray(a), reduce) for a in acts))))
    return [[np.concatenate([pm[n] for pm in per_model], axis=1).astype(np.float64)
             for n in names] for names in covered]


def class_sq(tensor_acts: Sequence[np.ndarray]) -> np.ndarray:
    """(m, N, N): per neuron of the class, squared sample differences summed over its tensors."""
    out = neuron_sq_diffs(tensor_acts[0])
    for a in tensor_acts[1:]:
        out += neuron_sq_diffs(a)
    return out


def class_sigma2(sq: np.ndarray, sigma2: float, scale: str) -> float:
    """σ² of a class, as :func:`pam_tf.merge.layer_sigma2` scales it for a layer (the median
    squared distance of two samples over all of the class's neurons and tensors)."""
    if scale == "absolute":
        return float(sigma2)
    if scale != "layer":
        raise ValueError(f"sigma2_scale must be 'absolute' or 'layer', got {scale!r}")
    d = sq.sum(axis=0)
    median = float(np.median(d[np.triu_indices(len(d), 1)]))
    return float(sigma2) * median if median > 0 else float(sigma2)


def _readable_everywhere(graph: Graph, classes: list[list[Group]]) -> bool:
    """Drop groups some Conv2D/Dense producer of their class could not read anything for;
    True when something was dropped (dropping can orphan a group above: repeat)."""
    changed = False
    for node in graph.hidden:
        if node.kind not in ("conv", "dense") or node.cls < 0:
            continue
        src = graph.input_class(node)
        if src < 0:
            continue
        keep = [g for g in classes[node.cls]
                if any(set(g.owners) <= set(b.owners) for b in classes[src])]
        changed |= len(keep) != len(classes[node.cls])
        classes[node.cls] = keep
    return changed


def graph_plan_from_owners(graph: Graph, tasks: Sequence[str], head_units: Sequence[int],
                           head_activations: Sequence[str],
                           owners: Sequence[Sequence[frozenset[int]]], method: str = "pam",
                           meta: dict | None = None) -> GraphPlan:
    """Turn per-class owner sets of the pooled channels into a graph plan.

    owners[c][m·w_c + j]: task indices owning channel j of model m in class c (empty: dropped).
    A group that some producer of its class could not feed (no superset group in that
    producer's input class) is dropped, until none is left; `meta['dropped_unreadable']`
    counts the channels."""
    classes: list[list[Group]] = []
    for c in range(len(graph.class_names)):
        w = graph.class_width(c)
        by_owner: dict[tuple[str, ...], list[tuple[int, int]]] = {}
        for k, own in enumerate(owners[c]):
            if own:
                by_owner.setdefault(tuple(tasks[t] for t in sorted(own)), []).append(
                    (k // w, k % w))
        classes.append(list(canonical_order(tasks, [Group(o, tuple(s))
                                                    for o, s in by_owner.items()])))
    before = sum(g.width for gs in classes for g in gs)
    while _readable_everywhere(graph, classes):
        pass
    dropped = before - sum(g.width for gs in classes for g in gs)
    heads = tuple(Head(t, int(u), a, i) for i, (t, u, a) in
                  enumerate(zip(tasks, head_units, head_activations)))
    return GraphPlan(method, tuple(tasks), graph, tuple(tuple(gs) for gs in classes), heads,
                     meta={**(meta or {}), "dropped_unreadable": dropped})


def _class_kind(graph: Graph, c: int) -> str:
    """'conv' when a Conv2D writes the class (α of conv layers), else 'dense'."""
    return "conv" if any(n.kind == "conv" for n in graph.class_nodes(c)) else "dense"


def measure_graph_information(models: Sequence, traced: Sequence[TracedGraph],
                              tasks: Sequence[Task], x: np.ndarray, y: dict[str, np.ndarray],
                              config: InfoConfig = InfoConfig(),
                              progress: Callable[[str], None] = print) -> InformationTable:
    """The information stage for graph networks: per coupling class its tensors' pooled
    values (side by side in the table's acts), σ² and I(class; Y_t) per task."""
    graph = check_same_graph(traced)
    acts = pooled_class_activations(models, traced, x, config.reduce)
    labels = [t.information_labels(y[t.name]) for t in tasks]
    sigma2, info = [], []
    for c, name in enumerate(graph.class_names):
        sq = class_sq(acts[c])
        sigma2.append(class_sigma2(sq, config.sigma2, config.sigma2_scale))
        info.append(layer_task_information(None, labels, sigma2[-1], sq=sq))
        progress(f"  class {name:>8} ({len(acts[c])} tensors): " + ", ".join(
            f"I(class; {t.name}) = {v:.3f} nats" for t, v in zip(tasks, info[-1])))
    return InformationTable(list(graph.class_names), [t.name for t in tasks],
                            [np.concatenate(a, axis=1) for a in acts], sigma2, info,
                            {t.name: y[t.name] for t in tasks}, config,
                            tensors=[len(a) for a in acts])


def _class_blocks(table: InformationTable, c: int) -> list[np.ndarray]:
    """A class's per-tensor (N, n·d) blocks back out of the table."""
    return np.split(table.acts[c], table.tensors[c], axis=1)


def pam_graph_plan_from_information(traced: Sequence[TracedGraph], tasks: Sequence[Task],
                                    table: InformationTable,
                                    merge: MergeConfig = MergeConfig(),
                                    progress: Callable[[str], None] = print) -> GraphPlan:
    """Regroup every coupling class once from a measured graph information table."""
    graph = check_same_graph(traced)
    if table.tensors is None or table.layers != list(graph.class_names):
        raise ValueError(f"the information table covers {table.layers}, not the coupling "
                         f"classes {list(graph.class_names)} of a graph network")
    labels = [t.information_labels(table.labels[t.name]) for t in tasks]
    owners, class_meta = [], []
    for c, name in enumerate(graph.class_names):
        start = time.perf_counter()
        sq = class_sq(_class_blocks(table, c))
        grouping = regroup_layer(None, labels, merge.alpha_for(_class_kind(graph, c)),
                                 mode=merge.mode, sigma2=table.sigma2[c],
                                 relative=merge.alpha_relative,
                                 layer_information=table.information[c], sq=sq)
        owners.append(grouping.owners)
        sizes = {"+".join(tasks[i].name for i in sorted(k)): len(v)
                 for k, v in grouping.groups().items()}
        class_meta.append({"class": name, "tensors": table.tensors[c],
                           "alpha": grouping.alpha_used, "sigma2": table.sigma2[c],
                           "information": grouping.layer_information,
                           "dropped": len(grouping.dropped()), "groups": sizes})
        progress(f"  regroup class {name} ({table.tensors[c]} tensors): {sq.shape[0]} "
                 "channels -> " + ", ".join(f"{k}: {v}" for k, v in sizes.items())
                 + f", dropped {len(grouping.dropped())} ({time.perf_counter() - start:.1f} s)")
    return graph_plan_from_owners(
        graph, [t.name for t in tasks], [t.n_outputs for t in tasks],
        [tr.graph.head.activation for tr in traced], owners, method="pam",
        meta={"pam": {**merge.to_json(), **table.config.to_json()}, "classes": class_meta,
              "info_samples": table.samples})


def pam_graph_plan(models: Sequence, traced: Sequence[TracedGraph], tasks: Sequence[Task],
                   x_info: np.ndarray, y_info: dict[str, np.ndarray],
                   merge: MergeConfig = MergeConfig(), info: InfoConfig = InfoConfig(),
                   progress: Callable[[str], None] = print) -> GraphPlan:
    """PAM on graph networks: measure and regroup every coupling class once."""
    table = measure_graph_information(models, traced, tasks, x_info, y_info, info, progress)
    return pam_graph_plan_from_information(traced, tasks, table, merge, progress)


__all__ = ["pam_graph_plan", "pam_graph_plan_from_information", "measure_graph_information",
           "graph_plan_from_owners", "pooled_class_activations", "class_sq", "class_tensors",
           "class_sigma2"]
