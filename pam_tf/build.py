"""Build: plan + weights → a tf_keras multitask model (or the sub-model of one task combination).

One builder serves every producer of plans (PAM, no merging, fully shared, pruned plans), so all
methods are compared on identical code paths. Layer names are stable across combinations
(``<layer>__<owners>``, e.g. ``conv2__a.b``; heads are named after their task), so weights are
addressed by name and a combination sub-model is built directly from the plan rather than cut
out of the full model.

Weights are a flat dict ``{"<layer>__<owners>/kernel": array, ".../bias": array,
"<task>/kernel": ..., "<task>/bias": ...}``; :func:`inherit_weights` fills it from the original
networks block-diagonally (method.md §6): a neuron keeps its incoming weights from its own
network's neurons that it may still read, weights from other networks start at zero.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np

from pam_tf.chain import NeuronLayer, Op, TracedModel
from pam_tf.compat import keras
from pam_tf.plan import Group, Plan, PlanError

GroupHook = Callable[[str, int], "keras.layers.Layer | None"]


def group_layer_name(layer: NeuronLayer, group: Group) -> str:
    return f"{layer.name}__{group.key}"


def weight_shapes(plan: Plan) -> dict[str, tuple[int, ...]]:
    """Expected shape of every weight array of `plan`."""
    shapes: dict[str, tuple[int, ...]] = {}
    for l, (layer, groups) in enumerate(zip(plan.chain.hidden, plan.layers)):
        for g in groups:
            cin = plan.in_channels(l, g)
            name = group_layer_name(layer, g)
            if layer.kind == "conv":
                shapes[f"{name}/kernel"] = (*layer.kernel_size, cin, g.width)
            else:
                shapes[f"{name}/kernel"] = (layer.fan_in * cin, g.width)
            shapes[f"{name}/bias"] = (g.width,)
    head = plan.chain.head
    for h in plan.heads:
        cin = sum(plan.layers[-1][i].width for i in plan.head_inputs(h.task))
        shapes[f"{h.task}/kernel"] = (head.fan_in * cin, h.units)
        shapes[f"{h.task}/bias"] = (h.units,)
    return shapes


def check_weights(plan: Plan, weights: dict[str, np.ndarray], where: str = "weights") -> None:
    """Refuse weights that do not fit the plan, naming the first array that is wrong."""
    expected = weight_shapes(plan)
    missing = sorted(set(expected) - set(weights))
    if missing:
        raise PlanError(f"{where}: missing {len(missing)} array(s) for this plan, e.g. "
                        f"'{missing[0]}'")
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise PlanError(f"{where}: {len(extra)} array(s) the plan does not have, e.g. "
                        f"'{extra[0]}' (plan and weights are from different runs?)")
    for key, shape in expected.items():
        got = tuple(weights[key].shape)
        if got != shape:
            raise PlanError(f"{where}: '{key}' has shape {got}, the plan needs {shape}")
        if not np.all(np.isfinite(weights[key])):
            raise PlanError(f"{where}: '{key}' contains NaN or infinite values")


def _input_rows(plan: Plan, layer: int, readable: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per input row of a group of `layer` (in build order): source model and original row."""
    prev_groups = plan.layers[layer - 1]
    fan_in = plan.chain.layers[layer].fan_in if plan.chain.layers[layer].kind == "dense" else 1
    c_orig = plan.chain.hidden[layer - 1].width
    models, rows = [], []
    for gi in readable:
        src = np.asarray(prev_groups[gi].sources, dtype=np.int64).reshape(-1, 2)
        positions = np.arange(fan_in)[:, None]
        rows.append((positions * c_orig + src[None, :, 1]).ravel())
        models.append(np.tile(src[:, 0], fan_in))
    return np.concatenate(models), np.concatenate(rows)


def _inherit_block(kernel_of: Callable[[int], np.ndarray], out_sources: Sequence[tuple[int, int]],
                   in_models: np.ndarray | None, in_rows: np.ndarray | None,
                   conv: bool) -> np.ndarray:
    """Slice one group's kernel out of the original kernels, zeros across networks."""
    cols = []
    for m, j in out_sources:
        k = kernel_of(m)
        if in_models is None:  # first layer: every network reads the same input
            cols.append(k[..., j])
            continue
        if conv:
            col = np.zeros(k.shape[:2] + (len(in_rows),), np.float32)
            mask = in_models == m
            col[:, :, mask] = k[:, :, in_rows[mask], j]
        else:
            col = np.zeros((len(in_rows),), np.float32)
            mask = in_models == m
            col[mask] = k[in_rows[mask], j]
        cols.append(col)
    return np.stack(cols, axis=-1).astype(np.float32)


def inherit_weights(plan: Plan, traced: Sequence[TracedModel]) -> dict[str, np.ndarray]:
    """Initial weights of a plan from the n original networks (method.md §6)."""
    if len(traced) != len(plan.heads):
        raise PlanError(f"{len(traced)} models given for a plan of {len(plan.heads)} tasks")
    weights: dict[str, np.ndarray] = {}
    for l, (layer, groups) in enumerate(zip(plan.chain.hidden, plan.layers)):
        for g in groups:
            name = group_layer_name(layer, g)
            if l == 0:
                in_models = in_rows = None
            else:
                in_models, in_rows = _input_rows(plan, l, plan.readable(l, g))
            weights[f"{name}/kernel"] = _inherit_block(
                lambda m: traced[m].weights[l][0], g.sources, in_models, in_rows,
                layer.kind == "conv")
            weights[f"{name}/bias"] = np.array([traced[m].weights[l][1][j]
                                                for m, j in g.sources], np.float32)
    last = len(plan.layers)
    for h in plan.heads:
        in_models, in_rows = _input_rows(plan, last, plan.head_inputs(h.task))
        k = traced[h.source].weights[last][0]
        kernel = np.zeros((len(in_rows), h.units), np.float32)
        mask = in_models == h.source
        kernel[mask] = k[in_rows[mask]]
        weights[f"{h.task}/kernel"] = kernel
        weights[f"{h.task}/bias"] = traced[h.source].weights[last][1].astype(np.float32)
    check_weights(plan, weights)
    return weights


def apply_ops(x, ops: Sequence[Op], prefix: str):
    """Apply the weightless ops of the chain (pooling, flatten, global pooling) to `x`."""
    for i, op in enumerate(ops):
        name = f"{prefix}__{op.kind}{i}" if len(ops) > 1 else f"{prefix}__{op.kind}"
        if op.kind == "max_pool":
            x = keras.layers.MaxPooling2D(op.pool_size, op.strides, op.padding, name=name)(x)
        elif op.kind == "avg_pool":
            x = keras.layers.AveragePooling2D(op.pool_size, op.strides, op.padding, name=name)(x)
        elif op.kind == "flatten":
            x = keras.layers.Flatten(name=name)(x)
        elif op.kind == "global_max_pool":
            x = keras.layers.GlobalMaxPooling2D(name=name)(x)
        elif op.kind == "global_avg_pool":
            x = keras.layers.GlobalAveragePooling2D(name=name)(x)
        else:  # pragma: no cover - Op kinds are produced by chain.trace_model only
            raise PlanError(f"unknown op kind {op.kind}")
    return x


def _neuron_layer(layer: NeuronLayer, width: int, name: str, activation: str):
    if layer.kind == "conv":
        return keras.layers.Conv2D(width, layer.kernel_size, strides=layer.strides,
                                   padding=layer.padding, activation=activation, name=name)
    return keras.layers.Dense(width, activation=activation, name=name)


def build_model(plan: Plan, weights: dict[str, np.ndarray] | None = None,
                combination: Iterable[str] | None = None, *,
                group_hook: Callable[[str, int], object] | None = None,
                name: str | None = None) -> "keras.Model":
    """The multitask model of `plan` (all tasks, or only `combination`), one output per task.

    `group_hook(layer_name, width)` may return a Keras layer inserted after each hidden group's
    activation (the pruner's gates); outputs of the model are named after the tasks.
    """
    combo = plan.normalise_combination(combination if combination is not None else plan.tasks)
    needed = plan.needed(combo)
    if weights is not None:
        check_weights(plan, weights)
    inputs = keras.Input(plan.chain.input_shape, name="image")
    x0 = apply_ops(inputs, plan.chain.pre, "input") if plan.chain.pre else inputs
    prev: dict[int, object] = {}
    for l, (layer, groups) in enumerate(zip(plan.chain.hidden, plan.layers)):
        outs: dict[int, object] = {}
        concat_cache: dict[tuple[int, ...], object] = {}
        for gi in needed[l]:
            g = groups[gi]
            lname = group_layer_name(layer, g)
            if l == 0:
                x = x0
            else:
                readable = tuple(plan.readable(l, g))
                x = _concat([prev[i] for i in readable], concat_cache, readable,
                            f"{lname}__in")
            y = _neuron_layer(layer, g.width, lname, layer.activation)(x)
            if group_hook is not None:
                hook = group_hook(lname, g.width)
                if hook is not None:
                    y = hook(y)
            outs[gi] = apply_ops(y, layer.post, lname) if layer.post else y
        prev = outs
    outputs = []
    concat_cache = {}  # heads read the last hidden layer: fresh cache
    for t in combo:
        head = plan.heads[plan.task_index(t)]
        readable = tuple(plan.head_inputs(t))
        x = _concat([prev[i] for i in readable], concat_cache, readable, f"{t}__in")
        outputs.append(keras.layers.Dense(head.units, activation=head.activation, name=t)(x))
    model = keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0],
                        name=name or f"{plan.method}__{'__'.join(combo)}")
    if weights is not None:
        set_weights(model, weights)
    return model


def _concat(tensors: list, cache: dict, key: tuple[int, ...], name: str):
    if len(tensors) == 1:
        return tensors[0]
    if key not in cache:
        cache[key] = keras.layers.Concatenate(axis=-1, name=name)(tensors)
    return cache[key]


def set_weights(model, weights: dict[str, np.ndarray]) -> None:
    """Load plan weights into a model built by :func:`build_model` (any combination)."""
    for layer in model.layers:
        kernel = weights.get(f"{layer.name}/kernel")
        if kernel is not None:
            layer.set_weights([kernel, weights[f"{layer.name}/bias"]])


def get_weights(model, plan: Plan) -> dict[str, np.ndarray]:
    """Read plan weights back from a full model built by :func:`build_model` (after training)."""
    shapes = weight_shapes(plan)
    out: dict[str, np.ndarray] = {}
    names = {key.rsplit("/", 1)[0] for key in shapes}
    for layer in model.layers:
        if layer.name in names:
            k, b = layer.get_weights()
            out[f"{layer.name}/kernel"] = k
            out[f"{layer.name}/bias"] = b
    check_weights(plan, out, where=f"model '{model.name}'")
    return out


def output_dict(model, outputs) -> dict[str, np.ndarray]:
    """Model outputs (a list or a single array) keyed by task name."""
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return {name.split("/")[0]: np.asarray(o) for name, o in zip(model.output_names, outputs)}
