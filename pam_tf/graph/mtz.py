"""Multi-Task Zipping (baseline B2) over coupling classes: MTZ for graph networks.

The chain version (:mod:`pam_tf.mtz.zipper`) zips layer by layer. In a graph the unit that plays
a layer's role is a coupling class (:mod:`pam_tf.graph.trace`): its channel j is one neuron
however many nodes carry it, so a class is zipped as a whole, class by class in the order of the
class ids (the order their first node appears in the topological node order), task by task
(task q into the trunk of tasks 0..q-1, in the run's task order), as the chain does per layer:

1. **Pair costs.** A class can have several producers (the Conv2D/Dense layers whose outputs are
   the class, e.g. both branches of a residual add). Pairing trunk channel i with task q's
   channel j forces *every* producer to compute one weight vector for both, so the pair's cost
   is the sum over the producers of the chain's per-producer cost ΔE
   (:func:`pam_tf.mtz.linalg.pair_costs`), each with the Hessian of that producer's own input as
   the network *zipped and retrained so far* computes it (recomputed before each task's zip: in
   a residual network a class's producers can read classes that depend on the class itself).
2. **Greedy one-to-one matching** of k = round(degree · width) pairs on that summed cost.
3. **Merged weights**: per producer, the chain's (H_A + H_B)⁻¹ (H_A a + H_B b). A depthwise filter
   (and its bias) of the class becomes the **mean** of the pair's two filters: it reads only its
   own channel, and after the merge that channel is the merged one for both parents, so both
   sides' filters read one and the same input, H_A = H_B, and the formula is the mean. (The
   Hessian of that input does not exist before the merge, and the filter is not part of the
   pair's cost: the producers decide which channels are alike.)
4. **Readers** of the class (Conv2D/Dense layers reading it, heads) read the merged channel
   wherever they read either parent: their input rows are added (MTZ's permutation).
5. Owners are re-derived from the weights, and the whole network is retrained jointly
   (:func:`pam_tf.graph.train.graph_finetune`) before the next class.

Why the state keeps a channel's *side* apart from its owners: classes can depend on each other
in a cycle (a residual stream feeds a block's inner conv, whose class feeds the stream's next
producer), so a class is sometimes zipped while a class it reads is not. Then a merged channel
reads both parents' (unzipped) inputs, and the plan's read rule makes those inputs shared before
they are zipped themselves. Which channels are still to be paired is therefore kept as `side`
(the tasks whose networks a channel was zipped from), while the owners of the plan follow from
the side and the non-zero weights (:meth:`ClassZipState.owners`), exactly as the chain's
``ZipState.legalize`` derives them. Once every class is fully zipped both agree.

Like the chain's :class:`pam_tf.mtz.state.ZipState`, the state holds one dense kernel per
weighted node over *all* pooled channels (index m·w_c + j for channel j of model m in class c;
an edge the plan lacks is an exact zero), so a dense all-task plan of the same weights computes
the same function and gives every producer's input for the Hessians.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from pam_tf.artifacts import Network
from pam_tf.compat import keras
from pam_tf.config import MtzConfig
from pam_tf.graph.build import build_graph_model, inherit_graph_weights, output_layer_name
from pam_tf.graph.merge import graph_plan_from_owners
from pam_tf.graph.plan import GraphPlan, graph_no_merge_plan
from pam_tf.graph.trace import INPUT_CLASS, Graph, Node, TracedGraph, check_same_graph
from pam_tf.mtz.linalg import greedy_match, layer_hessian, merged_weights, pair_costs
from pam_tf.mtz.state import _gather, _positions, _scatter
from pam_tf.mtz.zipper import METHOD, _check_complete, _damped, zip_inputs
from pam_tf.tasks import Task

__all__ = ["zip_graph_networks", "zip_class", "graph_merge_degree", "ClassZipState"]

PRODUCER_KINDS = ("conv", "dense")


def graph_merge_degree(config: MtzConfig, graph: Graph) -> float:
    """--mtz_merge as the one degree of every coupling class; a per-layer list is refused (the
    classes of a graph are not the layers a chain's list counts)."""
    degrees = config.merge_degrees()
    if len(degrees) != 1:
        raise ValueError(f"--mtz_merge={','.join(config.mtz_merge)}: graph networks take one "
                         f"merge degree for every coupling class ({len(graph.class_names)} "
                         f"classes: {', '.join(graph.class_names)}), not one per layer; pass "
                         "e.g. --mtz_merge=1")
    return degrees[0]


def _pooled(graph: Graph, cls: int, sources) -> np.ndarray:
    """Pooled indices of plan sources (m, j) in class `cls` (the input: j)."""
    src = np.asarray(sources, np.int64).reshape(-1, 2)
    if cls == INPUT_CLASS:
        return src[:, 1]
    return src[:, 0] * graph.class_width(cls) + src[:, 1]


def _pooled_size(graph: Graph, n: int, cls: int) -> int:
    """Channels of class `cls` over all n networks (the input is one, shared)."""
    return graph.class_width(cls) * (1 if cls == INPUT_CLASS else n)


def _blocks(plan: GraphPlan, node: Node, readable: Sequence[int]) -> list[np.ndarray]:
    """Pooled indices of each input block a group of `node` reads, in build order."""
    cls = plan.graph.input_class(node)
    groups = plan.groups_of(cls)
    return [_pooled(plan.graph, cls, groups[gi].sources) for gi in readable]


class ClassZipState:
    """Dense pooled form of a graph plan plus weights, and each channel's side (see module)."""

    def __init__(self, graph: Graph, tasks: Sequence[str], head_units: Sequence[int],
                 head_activations: Sequence[str], alive: list[np.ndarray],
                 side: list[np.ndarray], kernels: dict[str, np.ndarray],
                 biases: dict[str, np.ndarray], head_kernels: list[np.ndarray],
                 head_biases: list[np.ndarray]):
        self.graph, self.tasks = graph, tuple(tasks)
        self.head_units, self.head_activations = tuple(head_units), tuple(head_activations)
        self.alive, self.side = alive, side
        self.kernels, self.biases = kernels, biases
        self.head_kernels, self.head_biases = head_kernels, head_biases

    # ----- plan ↔ dense ---------------------------------------------------------------------
    @staticmethod
    def from_plan(plan: GraphPlan, weights: dict[str, np.ndarray],
                  side: list[np.ndarray] | None = None) -> "ClassZipState":
        """The dense form of `plan` with `weights`; `side` defaults to the plan's owners (the
        no-merge start), after a retraining it is the previous state's."""
        graph, n = plan.graph, len(plan.tasks)
        sizes = [n * graph.class_width(c) for c in range(len(graph.class_names))]
        alive = [np.zeros(p, bool) for p in sizes]
        owners = [np.zeros((p, n), bool) for p in sizes]
        for c, groups in enumerate(plan.classes):
            for g in groups:
                idx = _pooled(graph, c, g.sources)
                alive[c][idx] = True
                owners[c][idx] = [t in g.owners for t in plan.tasks]
        kernels, biases = {}, {}
        for node in graph.hidden:
            if node.kind == "depthwise":
                k = np.zeros((*node.kernel_size, sizes[node.cls]), np.float32)
            elif node.kind in PRODUCER_KINDS:
                k = np.zeros((_positions(node), _pooled_size(graph, n, graph.input_class(node)),
                              sizes[node.cls]), np.float32)
            else:
                continue
            b = np.zeros(sizes[node.cls], np.float32)
            for g in plan.groups_of(node.cls):
                name = plan.group_name(node, g)
                cols = _pooled(graph, node.cls, g.sources)
                if node.kind == "depthwise":
                    k[..., cols] = weights[f"{name}/kernel"][..., 0]
                else:
                    _scatter(k, weights[f"{name}/kernel"], _blocks(plan, node,
                                                                   plan.readable(node, g)),
                             cols, node)
                b[cols] = weights[f"{name}/bias"]
            kernels[node.name], biases[node.name] = k, b
        head = graph.head
        head_kernels, head_biases = [], []
        for h in plan.heads:
            k = np.zeros((head.fan_in, _pooled_size(graph, n, graph.input_class(head)), h.units),
                         np.float32)
            _scatter(k, weights[f"{h.task}/kernel"], _blocks(plan, head, plan.head_inputs(h.task)),
                     np.arange(h.units), head)
            head_kernels.append(k)
            head_biases.append(np.asarray(weights[f"{h.task}/bias"], np.float32))
        return ClassZipState(graph, plan.tasks, [h.units for h in plan.heads],
                             [h.activation for h in plan.heads], alive,
                             owners if side is None else [s.copy() for s in side], kernels,
                             biases, head_kernels, head_biases)

    def to_plan(self, owners: list[np.ndarray], method: str = METHOD,
                meta: dict | None = None) -> GraphPlan:
        """The graph plan of per-channel owners (one group per owner set)."""
        pooled = [[frozenset(int(t) for t in np.flatnonzero(row)) if live else frozenset()
                   for row, live in zip(own, alive)] for own, alive in zip(owners, self.alive)]
        return graph_plan_from_owners(self.graph, self.tasks, self.head_units,
                                      self.head_activations, pooled, method=method, meta=meta)

    def plan(self, meta: dict | None = None) -> GraphPlan:
        """The plan of the current network: owners derived from sides and weights."""
        return self.to_plan(self.owners(), meta=meta)

    def weights_for(self, plan: GraphPlan) -> dict[str, np.ndarray]:
        """`plan`'s weights sliced out of the dense kernels (the plan's channels by source)."""
        graph = self.graph
        out: dict[str, np.ndarray] = {}
        for node in graph.hidden:
            if node.name not in self.kernels:
                continue
            k = self.kernels[node.name]
            for g in plan.groups_of(node.cls):
                name = plan.group_name(node, g)
                cols = _pooled(graph, node.cls, g.sources)
                if node.kind == "depthwise":
                    out[f"{name}/kernel"] = k[..., cols][..., None].astype(np.float32)
                else:
                    out[f"{name}/kernel"] = _gather(k, _blocks(plan, node,
                                                               plan.readable(node, g)),
                                                    cols, node)
                out[f"{name}/bias"] = self.biases[node.name][cols].astype(np.float32)
        for t, h in enumerate(plan.heads):
            out[f"{h.task}/kernel"] = _gather(self.head_kernels[t],
                                              _blocks(plan, graph.head, plan.head_inputs(h.task)),
                                              np.arange(h.units), graph.head)
            out[f"{h.task}/bias"] = self.head_biases[t].astype(np.float32)
        return out

    # ----- reading rules ------------------------------------------------------------------------
    def owners(self) -> list[np.ndarray]:
        """Owners per pooled channel: its side, widened until every non-zero edge is one the
        plan allows (a channel read by a channel of tasks T must be computed whenever a task of
        T runs). Classes can read each other in a cycle, so this repeats until nothing widens."""
        graph = self.graph
        owners = [s & a[:, None] for s, a in zip(self.side, self.alive)]
        head_cls = graph.input_class(graph.head)
        heads = self.head_kernels if head_cls != INPUT_CLASS else []
        changed = True
        while changed:
            changed = False
            for t, k in enumerate(heads):
                read = np.any(k != 0, axis=(0, 2)) & ~owners[head_cls][:, t]
                changed |= bool(read.any())
                owners[head_cls][read, t] = True
            for node in graph.hidden:
                below = graph.input_class(node)
                if node.kind not in PRODUCER_KINDS or below == INPUT_CLASS:
                    continue
                read = np.any(self.kernels[node.name] != 0, axis=0)        # (P_in, P_out)
                need = (read.astype(np.int64) @ owners[node.cls].astype(np.int64)) > 0
                new = need & ~owners[below]
                changed |= bool(new.any())
                owners[below] |= new
        return owners

    def input_owners(self, cls: int, owners: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(pooled indices of the live channels, their `owners`) of class `cls`; the model
        input belongs to every task."""
        if cls == INPUT_CLASS:
            width = self.graph.class_width(INPUT_CLASS)
            return np.arange(width), np.ones((width, len(self.tasks)), bool)
        live = np.flatnonzero(self.alive[cls])
        return live, owners[cls][live]

    # ----- the dense network's function ---------------------------------------------------------
    def node_outputs(self, names: Sequence[str], x: np.ndarray) -> dict[str, np.ndarray]:
        """What nodes `names` output for images `x` over the live channels of their class (in
        pooled order), computed by the dense all-task plan of the current weights ("input": the
        images themselves)."""
        out = {"input": np.asarray(x, np.float32)}
        names = [n for n in dict.fromkeys(names) if n != "input"]
        if not names:
            return out
        every = [np.repeat(a[:, None], len(self.tasks), axis=1) for a in self.alive]
        plan = self.to_plan(every, method="mtz_probe")
        model = build_graph_model(plan, self.weights_for(plan), name="mtz_probe")
        layers = [output_layer_name(plan, node, plan.groups_of(node.cls)[0])
                  for node in map(self.graph.node, names)]
        probe = keras.Model(model.inputs, [model.get_layer(n).output for n in layers])
        acts = probe.predict(out["input"], verbose=0, batch_size=256)
        out.update(zip(names, acts if isinstance(acts, list) else [acts]))
        return out

    # ----- zipping ---------------------------------------------------------------------------
    def producers(self, cls: int) -> list[Node]:
        return [n for n in self.graph.hidden if n.cls == cls and n.kind in PRODUCER_KINDS]

    def vectors(self, node: Node, inputs: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Weight vectors (len(cols), positions·len(inputs) + 1) of `node`'s channels `cols`
        over input channels `inputs`, position-major like patches, bias last."""
        k = self.kernels[node.name][:, inputs][:, :, cols].astype(np.float64)
        flat = k.transpose(2, 0, 1).reshape(len(cols), -1)
        return np.concatenate([flat, self.biases[node.name][cols, None].astype(np.float64)],
                              axis=1)

    def write_merged(self, node: Node, inputs: np.ndarray, keep: np.ndarray,
                     merged: np.ndarray) -> None:
        """Producer `node`'s channels `keep` take the merged vectors (nothing outside `inputs`)."""
        k = self.kernels[node.name]
        k[:, :, keep] = 0.0
        k[:, inputs[:, None], keep[None, :]] = merged[:, :-1].reshape(
            len(keep), -1, len(inputs)).transpose(1, 2, 0).astype(np.float32)
        self.biases[node.name][keep] = merged[:, -1].astype(np.float32)

    def merge_channels(self, cls: int, keep: np.ndarray, away: np.ndarray) -> None:
        """After the producers are written: depthwise filters of the pairs become their mean,
        readers read `keep` wherever they read `away`, and `away` is gone everywhere."""
        for node in self.graph.hidden:
            if node.cls == cls and node.kind == "depthwise":
                k, b = self.kernels[node.name], self.biases[node.name]
                k[..., keep] = (k[..., keep] + k[..., away]) / 2
                b[keep] = (b[keep] + b[away]) / 2
            if node.cls == cls and node.name in self.kernels:
                self.kernels[node.name][..., away] = 0.0
                self.biases[node.name][away] = 0.0
        readers = [self.kernels[n.name] for n in self.graph.hidden
                   if n.kind in PRODUCER_KINDS and self.graph.input_class(n) == cls]
        if self.graph.input_class(self.graph.head) == cls:
            readers += self.head_kernels
        for k in readers:
            k[:, keep, :] += k[:, away, :]
            k[:, away, :] = 0.0
        self.alive[cls][away] = False
        self.side[cls][away] = False


def _producer_hessian(state: ClassZipState, node: Node, acts: np.ndarray,
                      live: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """H of `node`'s input restricted to input channels `inputs` (pooled), bias last."""
    pos = np.searchsorted(live, inputs)
    if node.kind == "conv":
        return layer_hessian(acts[..., pos], "conv", kernel_size=node.kernel_size,
                             strides=node.strides, padding=node.padding)
    x = acts.reshape(len(acts), node.fan_in, len(live))[:, :, pos]
    return layer_hessian(x.reshape(len(acts), -1), "dense")


def zip_class(state: ClassZipState, cls: int, trunk: Sequence[int], q: int, k: int,
              xs: np.ndarray, damping: float, progress: Callable[[str], None] = print) -> dict:
    """Zip k channels of task q's side of class `cls` into the trunk (the channels zipped from
    exactly the tasks `trunk`), in place; returns what was done. `xs`: the Hessian images."""
    name = state.graph.class_names[cls]
    n = len(state.tasks)
    want_trunk = np.zeros(n, bool)
    want_trunk[list(trunk)] = True
    want_q = np.zeros(n, bool)
    want_q[q] = True
    side, alive = state.side[cls], state.alive[cls]
    a_cols = np.flatnonzero(alive & np.all(side == want_trunk, axis=1))
    b_cols = np.flatnonzero(alive & np.all(side == want_q, axis=1))
    into = "+".join(state.tasks[t] for t in trunk)
    if len(a_cols) == 0 or len(b_cols) == 0:
        raise ValueError(f"class '{name}': nothing to zip: {len(a_cols)} channels zipped from "
                         f"exactly {{{into}}} and {len(b_cols)} from '{state.tasks[q]}' "
                         "(expected both sides unzipped before this class's zip)")
    k = min(k, len(a_cols), len(b_cols))
    record = {"class": name, "into": into, "task": state.tasks[q], "pairs": int(k)}
    if k == 0:
        return record
    producers = state.producers(cls)
    acts = state.node_outputs([p.inputs[0] for p in producers], xs)
    owners = state.owners()
    parts, costs, damped = [], 0.0, {}
    for node in producers:
        live, own = state.input_owners(state.graph.input_class(node), owners)
        inputs = live[np.all(own[:, want_trunk], axis=1) | own[:, q]]
        h = _producer_hessian(state, node, acts[node.inputs[0]], live, inputs)
        # same images for every task: both sides of the pair read the same producer input
        h, amount = _damped(h, np.arange(len(h)), damping,
                            f"{node.name} ({into} and {state.tasks[q]})", progress)
        if amount > 0:
            damped[node.name] = amount
        a, b = state.vectors(node, inputs, a_cols), state.vectors(node, inputs, b_cols)
        costs = costs + pair_costs(h, h, a, b)
        parts.append((node, inputs, h, a, b))
    ri, cj = greedy_match(costs, k)
    keep, away = a_cols[ri], b_cols[cj]
    for node, inputs, h, a, b in parts:
        state.write_merged(node, inputs, keep, merged_weights(h, h, a[ri], b[cj]))
    width = state.graph.class_width(cls)
    matched = [[[int(i // width), int(i % width)], [int(j // width), int(j % width)]]
               for i, j in zip(keep, away)]
    state.merge_channels(cls, keep, away)
    side[keep] = want_trunk | want_q
    chosen = costs[ri, cj]
    record.update(cost_total=float(chosen.sum()), cost_median=float(np.median(chosen)),
                  cost_max=float(chosen.max()), damped=damped, matched=matched)
    return record


def zip_graph_networks(traced: Sequence[TracedGraph], tasks: Sequence[Task], train: tuple,
                       config: MtzConfig = MtzConfig(), *, models: Sequence | None = None,
                       seed: int = 0, progress: Callable[[str], None] = print) -> Network:
    """MTZ's merged network of n traced graph networks: a graph plan plus weights.

    `train` is (x, {task: y}), the training half: its seeded `config.mtz_samples` images give
    the Hessians (and the accuracy shown after each class, next to each single-task model's
    accuracy on the same images when `models` are given); the retraining uses all of it.
    """
    from pam_tf.graph.train import graph_evaluate, graph_finetune

    graph = check_same_graph(traced)
    degree = graph_merge_degree(config, graph)
    names, x, ys, xs, ys_s, reference = zip_inputs(len(traced), tasks, train, config, models,
                                                   seed)
    plan = graph_no_merge_plan(graph, names, [t.n_outputs for t in tasks],
                               [tr.graph.head.activation for tr in traced])
    state = ClassZipState.from_plan(plan, inherit_graph_weights(plan, traced))
    steps = config.mtz_retrain_steps
    classes_meta = []
    progress(f"MTZ: zipping {len(tasks)} graph networks class by class ({len(graph.class_names)} "
             f"coupling classes; tasks in order {', '.join(names)}; degree {degree:g}; Hessians "
             f"from {len(xs)} images; {steps} retraining steps per class)")
    for c, name in enumerate(graph.class_names):
        k = int(round(degree * graph.class_width(c)))
        if k == 0:
            progress(f"  class {name}: degree {degree:g}, nothing zipped")
            continue
        records = [zip_class(state, c, range(q), q, k, xs, config.mtz_damping, progress)
                   for q in range(1, len(tasks))]
        plan = state.plan()
        _check_complete(plan, f"class '{name}'")
        weights = state.weights_for(plan)
        if steps:
            weights = graph_finetune(plan, weights, tasks, (x, ys), steps=steps,
                                     batch_size=config.mtz_batch_size, lr=config.mtz_lr,
                                     seed=seed * 1000 + c)
        state = ClassZipState.from_plan(plan, weights, side=state.side)
        accuracy = graph_evaluate(plan, weights, tasks, (xs, ys_s))
        classes_meta.append({"class": name, "zips": records, "retrain_steps": steps,
                             "accuracy": accuracy, "widths": plan.widths()[c]})
        costs = "; ".join(f"{r['task']} into {r['into']}: {r['pairs']} pairs, "
                          f"ΔE total {r.get('cost_total', 0):.4g}" for r in records)
        acc = ", ".join(f"{t} {accuracy[t]:.4f}" + (f" (single-task {reference[t]:.4f})"
                                                    if reference else "") for t in names)
        progress(f"  class {name}: {costs}; width {plan.widths()[c]}; after {steps} retraining "
                 f"steps accuracy on the Hessian images: {acc}")
    plan = state.plan(meta={"mtz": {
        "degrees": [degree], "samples": int(len(xs)), "order": names, "classes": classes_meta,
        "reference_accuracy_samples": reference}})
    _check_complete(plan, "the end")
    return Network(plan, state.weights_for(plan))
