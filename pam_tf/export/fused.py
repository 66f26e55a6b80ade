"""The "fused" layout of a combination model: one Conv2D/Dense per layer instead of one per group.

Why it exists: the builder runs a merged layer as one convolution per group plus a Concatenate
("split" layout). That costs exactly the plan's MACs, but runtimes prefer few large kernels to
many small ones. The fused layout runs all the groups a combination needs in a layer as a single
convolution whose kernel is block-structured: a group's columns hold its own weights in the rows
of the groups it may read and zeros in the rows it may not (forbidden edges). The function is
identical; the MACs exceed the plan's by the zero blocks. ``benchmarks/bench_layout.py`` measures
which is faster; the export default is the split layout (see that benchmark's results).

Channel order: a fused layer's output channels are the needed groups in canonical order. A dense
layer after Flatten reads (position, channel) rows, position-major; the builder instead flattens
each group separately and concatenates, so rows are permuted accordingly.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from pam_tf.build import apply_ops, check_weights, group_layer_name
from pam_tf.compat import keras
from pam_tf.cost import Cost, neuron_layer_cost, total
from pam_tf.plan import Plan


def _offsets(widths: Sequence[int]) -> list[int]:
    return [int(v) for v in np.concatenate([[0], np.cumsum(widths)[:-1]])] if widths else []


def _place_rows(plan: Plan, layer: int, readable: Sequence[int], needed_prev: Sequence[int],
                fan_in: int) -> np.ndarray:
    """For each input row of a group's (flattened) kernel: its row in the fused layer's input."""
    prev = plan.layers[layer - 1]
    widths = [prev[i].width for i in needed_prev]
    off = dict(zip(needed_prev, _offsets(widths)))
    total_c = sum(widths)
    rows = []
    for r in readable:
        w = prev[r].width
        p = np.arange(fan_in)[:, None]
        c = np.arange(w)[None, :]
        rows.append((p * total_c + off[r] + c).ravel())  # builder row order: p·w + c
    return np.concatenate(rows)


def fused_kernels(plan: Plan, weights: dict[str, np.ndarray], combo: Sequence[str]
                  ) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, tuple]]:
    """Block-structured (kernel, bias) per hidden layer and per head for `combo`."""
    needed = plan.needed(combo)
    hidden: list[tuple[np.ndarray, np.ndarray]] = []
    for l, (layer, groups) in enumerate(zip(plan.chain.hidden, plan.layers)):
        idx = needed[l]
        widths = [groups[i].width for i in idx]
        out_off = _offsets(widths)
        conv = layer.kind == "conv"
        fan_in = 1 if conv else layer.fan_in
        if l == 0:
            c_in = plan.chain.hidden[0].in_channels
        else:
            c_in = sum(plan.layers[l - 1][i].width for i in needed[l - 1])
        if conv:
            kernel = np.zeros((*layer.kernel_size, c_in, sum(widths)), np.float32)
        else:
            kernel = np.zeros((fan_in * c_in, sum(widths)), np.float32)
        bias = np.zeros(sum(widths), np.float32)
        for gi, o in zip(idx, out_off):
            g = groups[gi]
            name = group_layer_name(layer, g)
            k, b = weights[f"{name}/kernel"], weights[f"{name}/bias"]
            cols = slice(o, o + g.width)
            bias[cols] = b
            if l == 0:
                kernel[..., cols] = k
                continue
            rows = _place_rows(plan, l, plan.readable(l, g), needed[l - 1], fan_in)
            if conv:
                kernel[:, :, rows, cols] = k
            else:
                kernel[rows, cols] = k
        hidden.append((kernel, bias))
    heads = {}
    head_fan_in = plan.chain.head.fan_in
    for t in plan.normalise_combination(combo):
        h = plan.heads[plan.task_index(t)]
        c_in = sum(plan.layers[-1][i].width for i in needed[-1])
        kernel = np.zeros((head_fan_in * c_in, h.units), np.float32)
        rows = _place_rows(plan, len(plan.layers), plan.head_inputs(t), needed[-1], head_fan_in)
        kernel[rows] = weights[f"{t}/kernel"]
        heads[t] = (kernel, weights[f"{t}/bias"].astype(np.float32), h)
    return hidden, heads


def build_fused_model(plan: Plan, weights: dict[str, np.ndarray], combo: Sequence[str],
                      name: str | None = None) -> "keras.Model":
    """The combination model with one neuron layer per hidden layer; outputs named by task."""
    check_weights(plan, weights)
    combo = plan.normalise_combination(combo)
    hidden, heads = fused_kernels(plan, weights, combo)
    inputs = keras.Input(plan.chain.input_shape, name="image")
    x = apply_ops(inputs, plan.chain.pre, "input") if plan.chain.pre else inputs
    for layer, (kernel, bias) in zip(plan.chain.hidden, hidden):
        lname = f"{layer.name}__fused"
        if layer.kind == "conv":
            nl = keras.layers.Conv2D(kernel.shape[-1], layer.kernel_size, strides=layer.strides,
                                     padding=layer.padding, activation=layer.activation,
                                     name=lname)
        else:
            nl = keras.layers.Dense(kernel.shape[-1], activation=layer.activation, name=lname)
        x = nl(x)
        nl.set_weights([kernel, bias])
        x = apply_ops(x, layer.post, lname) if layer.post else x
    outputs = []
    for t, (kernel, bias, h) in heads.items():
        dense = keras.layers.Dense(h.units, activation=h.activation, name=t)
        outputs.append(dense(x))
        dense.set_weights([kernel, bias])
    return keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0],
                       name=name or f"{plan.method}__fused__{'_'.join(combo)}")


def fused_cost(plan: Plan, combo: Sequence[str]) -> Cost:
    """MACs/FLOPs of the fused layout (zero blocks included): ≥ plan.cost(combo)."""
    combo = plan.normalise_combination(combo)
    needed = plan.needed(combo)
    parts = []
    c_in = plan.chain.hidden[0].in_channels
    for l, layer in enumerate(plan.chain.hidden):
        c_out = sum(plan.layers[l][i].width for i in needed[l])
        parts.append(layer.cost(c_in, c_out))
        c_in = c_out
    head = plan.chain.head
    for t in combo:
        parts.append(neuron_layer_cost(head.fan_in, c_in, head.out_positions,
                                       plan.heads[plan.task_index(t)].units))
    return total(parts)
