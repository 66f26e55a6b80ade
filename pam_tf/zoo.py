"""Single-task architectures: plain chains of Conv2D / MaxPooling2D / Flatten / Dense.

Every model is a tf_keras functional model named ``f"{arch}_{task.name}"`` with stable layer
names, which later stages (tracing, merging, pruning, export) rely on:

- neuron layers are numbered in order across the chain: ``conv1 .. convK`` then ``fc{K+1} ..``
  (LeNet-5: ``conv1, conv2, fc3, fc4``; vgg_small: ``conv1 .. conv6, fc7, fc8``);
- ``pool1 ..`` are the max-pooling layers in order, ``flatten`` the flatten layer, ``input`` the
  input layer;
- ``head`` is the task's output layer (``task.n_outputs`` units, ``task.head_activation``).

Activations are fused into the layers (``activation="relu"``); there is no batch norm or
dropout, so a layer's output is its post-ReLU activation. Weights are initialised from
``seed`` alone, so ``build_model(..., seed=s)`` is reproducible regardless of global state.

Cost on a 28x28 input (method.md section 9 convention): lenet5 ~0.6 MFLOPs, ~44 k params;
vgg_small ~14 MFLOPs, ~0.15 M params (about 25x LeNet-5; roughly 1 min per 60 k-image epoch
on 2 cores).
"""
from __future__ import annotations

from typing import Callable, Sequence

from pam_tf.compat import keras
from pam_tf.tasks import Task

__all__ = ["ARCHITECTURES", "build_model", "lenet5", "vgg_small"]


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


ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    "lenet5": lenet5,
    "vgg_small": vgg_small,
}


def build_model(arch: str, input_shape: Sequence[int], task: Task, seed: int = 0) -> keras.Model:
    """Build the single-task model ``arch`` (a key of :data:`ARCHITECTURES`) for ``task``."""
    try:
        builder = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; choose one of "
                         f"{sorted(ARCHITECTURES)}") from None
    return builder(input_shape, task, seed=seed)
