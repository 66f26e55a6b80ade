"""Build a graph plan into a tf_keras model; inherit weights from the n traced networks.

Every node is built once per group of its class that the combination needs (layer
``<node>__<owners>``); a Conv2D/Dense group reads the concatenation of its readable input
groups, a channel-wise node (depthwise, add, activation, pad, pooling) maps group g to group g.
Weights are a flat dict like the chain builder's (``"<node>__<owners>/kernel"``, heads
``"<task>/kernel"``); a depthwise kernel is (k_h, k_w, width, 1).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from pam_tf.compat import keras
from pam_tf.graph.plan import GraphPlan
from pam_tf.graph.trace import INPUT_CLASS, Node, TracedGraph
from pam_tf.plan import PlanError

KERAS_ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "softmax")


def weight_shapes(plan: GraphPlan) -> dict[str, tuple[int, ...]]:
    """Expected shape of every weight array of `plan`."""
    shapes: dict[str, tuple[int, ...]] = {}
    for node in plan.graph.hidden:
        if node.kind not in ("conv", "dense", "depthwise"):
            continue
        for g in plan.groups_of(node.cls):
            name = plan.group_name(node, g)
            cin = plan.in_channels(node, g)
            if node.kind == "conv":
                shapes[f"{name}/kernel"] = (*node.kernel_size, cin, g.width)
            elif node.kind == "depthwise":
                shapes[f"{name}/kernel"] = (*node.kernel_size, g.width, 1)
            else:
                shapes[f"{name}/kernel"] = (node.fan_in * cin, g.width)
            shapes[f"{name}/bias"] = (g.width,)
    below = plan.groups_of(plan.graph.input_class(plan.graph.head))
    for h in plan.heads:
        cin = sum(below[i].width for i in plan.head_inputs(h.task))
        shapes[f"{h.task}/kernel"] = (plan.graph.head.fan_in * cin, h.units)
        shapes[f"{h.task}/bias"] = (h.units,)
    return shapes


def check_graph_weights(plan: GraphPlan, weights: dict[str, np.ndarray],
                        where: str = "weights") -> None:
    """Refuse weights that do not fit the plan, naming the first array that is wrong."""
    expected = weight_shapes(plan)
    if set(expected) != set(weights):
        missing, extra = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
        raise PlanError(f"{where}: missing {missing[:2]} / unexpected {extra[:2]} arrays for "
                        "this graph plan")
    for key, shape in expected.items():
        if tuple(weights[key].shape) != shape:
            raise PlanError(f"{where}: '{key}' has shape {tuple(weights[key].shape)}, the plan "
                            f"needs {shape}")


def _input_rows(plan: GraphPlan, node: Node, readable: Sequence[int]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per input row of a group (build order): its source model and its original row."""
    cls = plan.graph.input_class(node)
    below = plan.groups_of(cls)
    reps = node.fan_in if node.kind == "dense" else 1
    width = plan.graph.class_width(cls)
    models, rows = [], []
    for gi in readable:
        src = np.asarray(below[gi].sources, dtype=np.int64).reshape(-1, 2)
        rows.append((np.arange(reps)[:, None] * width + src[None, :, 1]).ravel())
        models.append(np.tile(src[:, 0], reps))
        if cls == INPUT_CLASS:  # every network reads the same input
            models[-1] = np.full_like(models[-1], -1)
    return np.concatenate(models), np.concatenate(rows)


def _inherit_kernel(kernel_of, node: Node, out_sources, in_models, in_rows) -> np.ndarray:
    """One group's kernel sliced from the original kernels; zeros across networks."""
    cols = []
    for m, j in out_sources:
        k = kernel_of(m)
        if node.kind == "depthwise":
            cols.append(k[:, :, j, :])
            continue
        mask = (in_models == m) | (in_models == -1)
        if node.kind == "conv":
            col = np.zeros(k.shape[:2] + (len(in_rows),), np.float32)
            col[:, :, mask] = k[:, :, in_rows[mask], j]
        else:
            col = np.zeros((len(in_rows),), np.float32)
            col[mask] = k[in_rows[mask], j]
        cols.append(col)
    axis = 2 if node.kind == "depthwise" else -1
    return np.stack(cols, axis=axis).astype(np.float32)


def _weights_at(traced: TracedGraph, position: int) -> tuple[np.ndarray, np.ndarray]:
    """(kernel, bias) of the node at `position`: nodes are matched by position, so networks
    whose layer names differ (Keras' automatic names) merge too."""
    return traced.weights[traced.graph.nodes[position].name]


def inherit_graph_weights(plan: GraphPlan, traced: Sequence[TracedGraph]
                          ) -> dict[str, np.ndarray]:
    """Initial weights of a graph plan from the n original networks (method.md §6)."""
    if len(traced) != len(plan.heads):
        raise PlanError(f"{len(traced)} models given for a plan of {len(plan.heads)} tasks")
    weights: dict[str, np.ndarray] = {}
    for pos, node in enumerate(plan.graph.hidden):
        if node.kind not in ("conv", "dense", "depthwise"):
            continue
        for g in plan.groups_of(node.cls):
            name = plan.group_name(node, g)
            in_models, in_rows = _input_rows(plan, node, plan.readable(node, g))
            weights[f"{name}/kernel"] = _inherit_kernel(
                lambda m: _weights_at(traced[m], pos)[0], node, g.sources, in_models, in_rows)
            weights[f"{name}/bias"] = np.array([_weights_at(traced[m], pos)[1][j]
                                                for m, j in g.sources], np.float32)
    head = plan.graph.head
    for h in plan.heads:
        in_models, in_rows = _input_rows(plan, head, plan.head_inputs(h.task))
        k, b = _weights_at(traced[h.source], len(plan.graph.nodes) - 1)
        kernel = np.zeros((len(in_rows), h.units), np.float32)
        mask = in_models == h.source
        kernel[mask] = k[in_rows[mask]]
        weights[f"{h.task}/kernel"] = kernel
        weights[f"{h.task}/bias"] = b.astype(np.float32)
    check_graph_weights(plan, weights)
    return weights


def _activate(x, activation: str, name: str):
    if activation == "linear":
        return x
    if activation == "relu6":
        return keras.layers.ReLU(6.0, name=name)(x)
    return keras.layers.Activation(activation, name=name)(x)


def _layer(node: Node, width: int, name: str):
    """The Keras layer computing one group of one node (activation applied separately when it
    cannot be fused, i.e. ReLU6)."""
    fused = node.activation if node.activation in KERAS_ACTIVATIONS else "linear"
    if node.kind == "conv":
        return keras.layers.Conv2D(width, node.kernel_size, strides=node.strides,
                                   padding=node.padding, activation=fused, name=name)
    if node.kind == "depthwise":
        return keras.layers.DepthwiseConv2D(node.kernel_size, strides=node.strides,
                                            padding=node.padding, activation=fused, name=name)
    if node.kind == "dense":
        return keras.layers.Dense(width, activation=fused, name=name)
    if node.kind == "act":
        return (keras.layers.ReLU(6.0, name=name) if node.activation == "relu6"
                else keras.layers.Activation(node.activation, name=name))
    if node.kind == "pad":
        t, b, l, r = node.pad
        return keras.layers.ZeroPadding2D(((t, b), (l, r)), name=name)
    if node.kind in ("max_pool", "avg_pool"):
        cls = keras.layers.MaxPooling2D if node.kind == "max_pool" else \
            keras.layers.AveragePooling2D
        return cls(node.pool_size, node.strides, node.padding, name=name)
    if node.kind == "global_avg_pool":
        return keras.layers.GlobalAveragePooling2D(name=name)
    if node.kind == "global_max_pool":
        return keras.layers.GlobalMaxPooling2D(name=name)
    if node.kind == "flatten":
        return keras.layers.Flatten(name=name)
    if node.kind == "add":
        return keras.layers.Add(name=name)
    raise PlanError(f"node '{node.name}': unknown kind {node.kind!r}")  # pragma: no cover


def output_layer_name(plan: GraphPlan, node: Node, group) -> str:
    """Name of the built layer whose output is `node`'s group `group` (after its activation):
    the group's own layer, or the ReLU6 that follows a weighted layer (Keras cannot fuse it).
    Probes of a node's output tensor (MTZ's Hessians) read this layer."""
    lname = plan.group_name(node, group)
    if node.kind in ("conv", "dense", "depthwise") and node.activation not in KERAS_ACTIVATIONS:
        return f"{lname}__{node.activation}"
    return lname


def build_graph_model(plan: GraphPlan, weights: dict[str, np.ndarray] | None = None,
                      combination: Iterable[str] | None = None,
                      name: str | None = None) -> "keras.Model":
    """The multitask model of a graph plan (all tasks, or `combination`), one output per task."""
    combo = plan.normalise_combination(combination if combination is not None else plan.tasks)
    needed = plan.needed(combo)
    if weights is not None:
        check_graph_weights(plan, weights)
    inputs = keras.Input(plan.graph.input_shape, name="image")
    out: dict[tuple[str, int], object] = {("input", 0): inputs}
    cache: dict[tuple, object] = {}
    for node in plan.graph.hidden:
        groups = plan.groups_of(node.cls)
        for gi in needed[node.name]:
            g = groups[gi]
            lname = plan.group_name(node, g)
            if node.kind == "add":
                x = [out[(src, gi)] for src in node.inputs]
            else:
                x = _read(out, cache, node.inputs[0], tuple(plan.readable(node, g)),
                          f"{lname}__in")
            y = _layer(node, g.width, lname)(x)
            if output_layer_name(plan, node, g) != lname:
                y = _activate(y, node.activation, output_layer_name(plan, node, g))
            out[(node.name, gi)] = y
    outputs = []
    head = plan.graph.head
    for t in combo:
        h = plan.heads[plan.tasks.index(t)]
        x = _read(out, cache, head.inputs[0], tuple(plan.head_inputs(t)), f"{t}__in")
        outputs.append(keras.layers.Dense(h.units, activation=h.activation, name=t)(x))
    model = keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0],
                        name=name or f"{plan.method}__{'__'.join(combo)}")
    if weights is not None:
        for layer in model.layers:
            kernel = weights.get(f"{layer.name}/kernel")
            if kernel is not None:
                layer.set_weights([kernel, weights[f"{layer.name}/bias"]])
    return model


def _read(out: dict, cache: dict, src: str, readable: tuple[int, ...], name: str):
    """The input tensor of a group: one group's tensor or a (cached) concatenation."""
    if len(readable) == 1:
        return out[(src, readable[0])]
    key = (src, readable)
    if key not in cache:
        cache[key] = keras.layers.Concatenate(axis=-1, name=name)(
            [out[(src, i)] for i in readable])
    return cache[key]


__all__ = ["build_graph_model", "inherit_graph_weights", "weight_shapes", "check_graph_weights",
           "output_layer_name"]
