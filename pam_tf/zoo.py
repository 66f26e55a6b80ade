"""Single-task architectures: plain chains (lenet5, vgg_small) and graph networks
(resnet_small: residual basic blocks; mobilenetv2_small: inverted residual blocks).

Every model is a tf_keras functional model named ``f"{arch}_{task.name}"`` with stable layer
names, which later stages (tracing, merging, pruning, export) rely on:

- neuron layers are numbered in order across the chain: ``conv1 .. convK`` then ``fc{K+1} ..``
  (LeNet-5: ``conv1, conv2, fc3, fc4``; vgg_small: ``conv1 .. conv6, fc7, fc8``);
- ``pool1 ..`` are the max-pooling layers in order, ``flatten`` the flatten layer, ``input`` the
  input layer;
- ``head`` is the task's output layer (``task.n_outputs`` units, ``task.head_activation``).

In the chains activations are fused into the layers (``activation="relu"``); there is no batch
norm or dropout, so a layer's output is its post-ReLU activation. The graph networks use
BatchNormalization (folded when traced), ReLU / ReLU6 layers, residual ``Add`` layers and global
average pooling; they are traced by :mod:`pam_tf.graph.trace`, not by the chain tracer. Weights are initialised from
``seed`` alone, so ``build_model(..., seed=s)`` is reproducible regardless of global state.

Cost on a 28x28 input (method.md section 9 convention): lenet5 ~0.6 MFLOPs, ~44 k params;
vgg_small ~14 MFLOPs, ~0.15 M params (about 25x LeNet-5; roughly 1 min per 60 k-image epoch
on 2 cores).
"""
from __future__ import annotations

from typing import Callable, Sequence

from pam_tf.compat import keras
from pam_tf.tasks import Task

__all__ = ["ARCHITECTURES", "build_model", "lenet5", "vgg_small", "resnet_small",
           "mobilenetv2_small"]


class _Seeds:
    """Hands out one initializer seed per layer, derived from the model seed."""

    def __init__(self, seed: int) -> None:
        self._seed = int(seed) * 1000
        self._n = 0

    def kernel(self):
        self._n += 1
        return keras.initializers.GlorotUniform(seed=self._seed + self._n)


def _check_input_shape(input_shape: Sequence[int], min_side: int, arch: str) -> tuple[int, ...]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or any(s <= 0 for s in shape):
        raise ValueError(f"{arch}: input_shape must be (height, width, channels), got "
                         f"{tuple(input_shape)}")
    if shape[0] < min_side or shape[1] < min_side:
        raise ValueError(f"{arch}: input of {shape[0]}x{shape[1]} is too small; "
                         f"{arch} needs at least {min_side}x{min_side}")
    return shape


def _head(x, task: Task, seeds: _Seeds):
    if not isinstance(task, Task):
        raise TypeError(f"task must be a pam_tf.tasks.Task, got {type(task).__name__}")
    return keras.layers.Dense(task.n_outputs, activation=task.head_activation, name="head",
                              kernel_initializer=seeds.kernel())(x)


def lenet5(input_shape: Sequence[int], task: Task, seed: int = 0) -> keras.Model:
    """LeNet-5: conv1 (5x5, 6) -> pool1 -> conv2 (5x5, 16) -> pool2 -> flatten -> fc3 (120)
    -> fc4 (84) -> head. Valid padding, ReLU, 2x2 max pooling. Needs inputs of at least 16x16."""
    shape = _check_input_shape(input_shape, 16, "lenet5")
    seeds = _Seeds(seed)
    inputs = keras.Input(shape=shape, name="input")
    x = keras.layers.Conv2D(6, 5, activation="relu", padding="valid", name="conv1",
                            kernel_initializer=seeds.kernel())(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(16, 5, activation="relu", padding="valid", name="conv2",
                            kernel_initializer=seeds.kernel())(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(120, activation="relu", name="fc3",
                           kernel_initializer=seeds.kernel())(x)
    x = keras.layers.Dense(84, activation="relu", name="fc4",
                           kernel_initializer=seeds.kernel())(x)
    return keras.Model(inputs, _head(x, task, seeds), name=f"lenet5_{task.name}")


VGG_SMALL_CONV_WIDTHS = (16, 16, 32, 32, 64, 64)
VGG_SMALL_FC_WIDTHS = (128, 64)


def vgg_small(input_shape: Sequence[int], task: Task, seed: int = 0) -> keras.Model:
    """A small VGG-style net: conv1..conv6 (3x3, 'same', ReLU, widths 16-16-32-32-64-64) with
    2x2 max pooling after each pair (pool1..pool3) -> flatten -> fc7 (128) -> fc8 (64) -> head.
    Needs inputs of at least 8x8."""
    shape = _check_input_shape(input_shape, 8, "vgg_small")
    seeds = _Seeds(seed)
    inputs = keras.Input(shape=shape, name="input")
    x = inputs
    for i, width in enumerate(VGG_SMALL_CONV_WIDTHS, start=1):
        x = keras.layers.Conv2D(width, 3, activation="relu", padding="same", name=f"conv{i}",
                                kernel_initializer=seeds.kernel())(x)
        if i % 2 == 0:
            x = keras.layers.MaxPooling2D(2, name=f"pool{i // 2}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for i, width in enumerate(VGG_SMALL_FC_WIDTHS, start=len(VGG_SMALL_CONV_WIDTHS) + 1):
        x = keras.layers.Dense(width, activation="relu", name=f"fc{i}",
                               kernel_initializer=seeds.kernel())(x)
    return keras.Model(inputs, _head(x, task, seeds), name=f"vgg_small_{task.name}")


RESNET_SMALL_WIDTHS = (16, 32, 64)


# Moving statistics that follow the weights within a few dozen steps: these nets train for a
# few epochs on 2 cores, and with Keras' default momentum (0.99) the statistics still lag the
# fast-changing early weights when training stops (measured: mobilenetv2_small on composite/digit
# after 3 epochs, 98 % train but 33 % test accuracy in inference mode).
BN_MOMENTUM = 0.9


def _batch_norm(name: str):
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=name)


def _conv_bn(x, width: int, kernel: int, strides: int, name: str, seeds: _Seeds):
    """Conv2D (no bias: BN has one) followed by BatchNormalization."""
    x = keras.layers.Conv2D(width, kernel, strides=strides, padding="same", use_bias=False,
                            name=name, kernel_initializer=seeds.kernel())(x)
    return _batch_norm(f"{name}_bn")(x)


def _basic_block(x, width: int, strides: int, name: str, seeds: _Seeds):
    """ResNet basic block: 3x3 conv-BN-ReLU, 3x3 conv-BN, plus the shortcut (identity, or a
    1x1 conv-BN when the shape changes), then ReLU."""
    y = keras.layers.ReLU(name=f"{name}_relu1")(_conv_bn(x, width, 3, strides, f"{name}_conv1",
                                                         seeds))
    y = _conv_bn(y, width, 3, 1, f"{name}_conv2", seeds)
    if strides != 1 or int(x.shape[-1]) != width:
        x = _conv_bn(x, width, 1, strides, f"{name}_short", seeds)
    return keras.layers.ReLU(name=f"{name}_relu")(keras.layers.Add(name=f"{name}_add")([x, y]))


def resnet_small(input_shape: Sequence[int], task: Task, seed: int = 0) -> keras.Model:
    """A narrow ResNet (ResNet-8 layout, basic blocks): conv1 (3x3, 16) + BN + ReLU, then one
    basic block per stage with widths 16-32-64 (stages 2 and 3 stride 2, 1x1 projection
    shortcuts), global average pooling, head. Layers ``s{stage}_conv1``, ``s{stage}_add``...
    About 18 MFLOPs at 28x28. Needs inputs of at least 8x8."""
    shape = _check_input_shape(input_shape, 8, "resnet_small")
    seeds = _Seeds(seed)
    inputs = keras.Input(shape=shape, name="input")
    x = keras.layers.ReLU(name="relu1")(_conv_bn(inputs, RESNET_SMALL_WIDTHS[0], 3, 1, "conv1",
                                                 seeds))
    for stage, width in enumerate(RESNET_SMALL_WIDTHS, start=1):
        x = _basic_block(x, width, 1 if stage == 1 else 2, f"s{stage}", seeds)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, _head(x, task, seeds), name=f"resnet_small_{task.name}")


# (expansion, output channels, repeats, first stride) per stage, MobileNetV2's table narrowed
MOBILENETV2_SMALL_STAGES = ((1, 8, 1, 1), (4, 16, 2, 2), (4, 24, 2, 2), (4, 32, 1, 1))
MOBILENETV2_SMALL_STEM, MOBILENETV2_SMALL_LAST = 16, 64


def _stride2_padding(size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Padding before a 3x3 stride-2 'valid' depthwise conv, as MobileNetV2 pads (TF 'same')."""
    return tuple((s % 2, 1) for s in size)  # type: ignore[return-value]


def _inverted_residual(x, expansion: int, width: int, strides: int, name: str, seeds: _Seeds):
    """MobileNetV2 block: 1x1 expand-BN-ReLU6 (skipped at expansion 1), depthwise 3x3-BN-ReLU6
    (stride 2 after ZeroPadding2D), linear 1x1 projection-BN, residual add when shapes match."""
    c_in = int(x.shape[-1])
    y = x
    if expansion != 1:
        y = keras.layers.ReLU(6.0, name=f"{name}_expand_relu")(
            _conv_bn(y, c_in * expansion, 1, 1, f"{name}_expand", seeds))
    if strides == 2:
        y = keras.layers.ZeroPadding2D(_stride2_padding(tuple(int(v) for v in y.shape[1:3])),
                                       name=f"{name}_pad")(y)
    y = keras.layers.DepthwiseConv2D(3, strides=strides, padding="same" if strides == 1
                                     else "valid", use_bias=False, name=f"{name}_dw",
                                     depthwise_initializer=seeds.kernel())(y)
    y = _batch_norm(f"{name}_dw_bn")(y)
    y = keras.layers.ReLU(6.0, name=f"{name}_dw_relu")(y)
    y = _conv_bn(y, width, 1, 1, f"{name}_project", seeds)
    if strides == 1 and c_in == width:
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    return y


def mobilenetv2_small(input_shape: Sequence[int], task: Task, seed: int = 0) -> keras.Model:
    """A narrow MobileNetV2: conv1 (3x3, 16) + BN + ReLU6, inverted residual blocks
    ``b1 .. b6`` (expansion, width, repeats, stride: 1-8-1-1, 4-16-2-2, 4-24-2-2, 4-32-1-1),
    conv_last (1x1, 64) + BN + ReLU6, global average pooling, head. Needs at least 8x8."""
    shape = _check_input_shape(input_shape, 8, "mobilenetv2_small")
    seeds = _Seeds(seed)
    inputs = keras.Input(shape=shape, name="input")
    x = keras.layers.ReLU(6.0, name="relu1")(_conv_bn(inputs, MOBILENETV2_SMALL_STEM, 3, 1,
                                                      "conv1", seeds))
    block = 0
    for expansion, width, repeats, stride in MOBILENETV2_SMALL_STAGES:
        for r in range(repeats):
            block += 1
            x = _inverted_residual(x, expansion, width, stride if r == 0 else 1, f"b{block}",
                                   seeds)
    x = keras.layers.ReLU(6.0, name="conv_last_relu")(_conv_bn(x, MOBILENETV2_SMALL_LAST, 1, 1,
                                                               "conv_last", seeds))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, _head(x, task, seeds), name=f"mobilenetv2_small_{task.name}")


ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    "lenet5": lenet5,
    "vgg_small": vgg_small,
    "resnet_small": resnet_small,
    "mobilenetv2_small": mobilenetv2_small,
}
GRAPH_ARCHITECTURES = ("resnet_small", "mobilenetv2_small")  # traced by pam_tf.graph


def build_model(arch: str, input_shape: Sequence[int], task: Task, seed: int = 0) -> keras.Model:
    """Build the single-task model ``arch`` (a key of :data:`ARCHITECTURES`) for ``task``."""
    try:
        builder = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; choose one of "
                         f"{sorted(ARCHITECTURES)}") from None
    return builder(input_shape, task, seed=seed)
