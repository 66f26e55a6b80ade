"""Cost accounting in the paper's convention (method.md §9), around layer *shapes*.

Every neuron layer is reduced to four numbers, so the same formula serves a whole Keras model,
one group of a merged layer, and a task combination:

- ``fan_in``: inputs each output value reads per input channel (k_h·k_w for a conv, the number of
  flattened positions per channel for a dense layer after Flatten, 1 otherwise);
- ``in_channels``, ``out_positions`` (H_out·W_out for a conv, 1 for a dense), ``out_channels``.

FLOPs = (2·fan_in·in_channels − 1)·out_positions·out_channels, i.e. conv
(2·k_h·k_w·C_in − 1)·H_out·W_out·C_out and dense (2·n_in − 1)·n_out. MACs = fan_in·in_channels·
out_positions·out_channels. Params = fan_in·in_channels·out_channels (no bias). Pooling,
activations, batch norm and biases are not counted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Cost:
    """FLOPs (paper convention), MACs and weight parameters of some part of a network."""

    flops: int = 0
    macs: int = 0
    params: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.macs + other.macs, self.params + other.params)

    def __sub__(self, other: "Cost") -> "Cost":
        return Cost(self.flops - other.flops, self.macs - other.macs, self.params - other.params)

    def as_dict(self) -> dict:
        return {"flops": self.flops, "macs": self.macs, "params": self.params}


def neuron_layer_cost(fan_in: int, in_channels: int, out_positions: int,
                      out_channels: int) -> Cost:
    """Cost of one conv/dense layer (or one group of it) given its shape numbers."""
    if min(fan_in, out_positions) < 1 or min(in_channels, out_channels) < 0:
        raise ValueError(f"invalid layer shape: fan_in={fan_in}, in_channels={in_channels}, "
                         f"out_positions={out_positions}, out_channels={out_channels}")
    if in_channels == 0 or out_channels == 0:
        return Cost()
    n_in = fan_in * in_channels
    return Cost(flops=(2 * n_in - 1) * out_positions * out_channels,
                macs=n_in * out_positions * out_channels,
                params=n_in * out_channels)


def input_channel_cost(fan_in: int, in_channels: int, out_positions: int,
                       out_channels: int) -> Cost:
    """What one more input channel adds to a layer that already reads `in_channels` (>= 1).

    It is the difference of two :func:`neuron_layer_cost` values, so a neuron's price in the
    layers that read it (FLOPs-aware pruning) follows the one formula above: one column of
    fan_in multiply-adds in every output value, 2·fan_in·out_positions·out_channels FLOPs.
    """
    if in_channels < 1:
        raise ValueError(f"input_channel_cost needs a layer that reads >= 1 channel, got "
                         f"in_channels={in_channels}: from 0 channels the -1 of the first "
                         "addition would be counted too")
    return (neuron_layer_cost(fan_in, in_channels + 1, out_positions, out_channels)
            - neuron_layer_cost(fan_in, in_channels, out_positions, out_channels))


def conv_cost(kh: int, kw: int, c_in: int, h_out: int, w_out: int, c_out: int) -> Cost:
    """Conv2D: (2·kh·kw·C_in − 1)·H_out·W_out·C_out FLOPs."""
    return neuron_layer_cost(kh * kw, c_in, h_out * w_out, c_out)


def depthwise_cost(kh: int, kw: int, h_out: int, w_out: int, c_out: int) -> Cost:
    """DepthwiseConv2D: each output value reads k_h·k_w inputs of one channel, so
    (2·kh·kw − 1)·H_out·W_out·C_out FLOPs (C_out = C_in · depth_multiplier)."""
    return neuron_layer_cost(kh * kw, 1, h_out * w_out, c_out)


def dense_cost(n_in: int, n_out: int) -> Cost:
    """Dense: (2·n_in − 1)·n_out FLOPs."""
    return neuron_layer_cost(1, n_in, 1, n_out)


def total(costs: Iterable[Cost]) -> Cost:
    """Sum of costs."""
    out = Cost()
    for c in costs:
        out = out + c
    return out


def keras_layer_cost(layer) -> Cost | None:
    """Cost of a built tf_keras Conv2D, DepthwiseConv2D or Dense layer read from its shapes;
    None for other layers (Add, pooling, activations, padding, concatenation: not counted).

    Works on any model (single-task, merged, a combination sub-model) because it only looks at
    each layer's kernel and output shape.
    """
    kind = type(layer).__name__
    if kind == "Conv2D":
        kh, kw, c_in, c_out = (int(v) for v in layer.kernel.shape)
        shape = layer.output_shape
        return conv_cost(kh, kw, c_in, int(shape[1]), int(shape[2]), c_out)
    if kind == "Dense":
        n_in, n_out = (int(v) for v in layer.kernel.shape)
        return dense_cost(n_in, n_out)
    if kind == "DepthwiseConv2D":
        kh, kw, c_in, mult = (int(v) for v in layer.depthwise_kernel.shape)
        shape = layer.output_shape
        return depthwise_cost(kh, kw, int(shape[1]), int(shape[2]), c_in * mult)
    if kind in ("SeparableConv2D", "Conv1D", "Conv3D", "Conv2DTranspose"):
        raise ValueError(f"layer '{layer.name}' ({kind}): cost counting supports Conv2D, "
                         "DepthwiseConv2D and Dense")
    return None


def keras_model_cost(model) -> tuple[Cost, dict[str, Cost]]:
    """Total and per-layer cost of a tf_keras model (only Conv2D, DepthwiseConv2D, Dense count)."""
    per_layer = {}
    for layer in model.layers:
        c = keras_layer_cost(layer)
        if c is not None:
            per_layer[layer.name] = c
    return total(per_layer.values()), per_layer
