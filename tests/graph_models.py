"""Tiny hand-built residual / depthwise tf_keras blocks shared by the graph tests."""
from __future__ import annotations

import numpy as np

from pam_tf.compat import keras


def randomise_batch_norm(model, seed: int) -> None:
    """Give every BatchNormalization non-trivial statistics, so folding is really tested."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            w = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, w), rng.normal(size=w) * 0.1,
                               rng.normal(size=w) * 0.1, rng.uniform(0.5, 1.5, w)])


def residual_block(seed: int = 0, units: int = 2, input_shape=(8, 8, 3), width: int = 4):
    """conv-BN-ReLU, then a basic block (conv-BN-ReLU-conv-BN + identity add, ReLU), a stride-2
    conv and a flatten head: two coupling classes (the stem and c3), the add joining c1, c2."""
    keras.utils.set_random_seed(seed)
    i = keras.Input(input_shape)
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="c1")(i)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="r1")(x)
    y = keras.layers.Conv2D(width + 1, 3, padding="same", name="b1")(x)
    y = keras.layers.BatchNormalization(name="bnb1")(y)
    y = keras.layers.Activation("relu", name="rb1")(y)
    y = keras.layers.Conv2D(width, 3, padding="same", name="c2")(y)
    y = keras.layers.BatchNormalization(name="bn2")(y)
    z = keras.layers.Add(name="add")([x, y])
    z = keras.layers.ReLU(name="r3")(z)
    z = keras.layers.Conv2D(5, 3, strides=2, activation="relu", name="c3")(z)
    z = keras.layers.Flatten(name="flat")(z)
    o = keras.layers.Dense(units, name="head")(z)
    model = keras.Model(i, o, name=f"res_{seed}")
    randomise_batch_norm(model, seed)
    return model


def inverted_residual(seed: int = 0, units: int = 2, input_shape=(8, 8, 3), width: int = 4):
    """stem conv-BN-ReLU6, then an inverted residual (1x1 expand to 3·width, ReLU6, pad +
    depthwise 3x3 + BN + ReLU6, linear 1x1 project + BN, add), GAP, head."""
    keras.utils.set_random_seed(seed)
    i = keras.Input(input_shape)
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem")(i)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_relu")(x)
    y = keras.layers.Conv2D(3 * width, 1, use_bias=False, name="expand")(x)
    y = keras.layers.BatchNormalization(name="expand_bn")(y)
    y = keras.layers.ReLU(6.0, name="expand_relu")(y)
    y = keras.layers.ZeroPadding2D(1, name="pad")(y)
    y = keras.layers.DepthwiseConv2D(3, use_bias=False, name="dw")(y)
    y = keras.layers.BatchNormalization(name="dw_bn")(y)
    y = keras.layers.ReLU(6.0, name="dw_relu")(y)
    y = keras.layers.Conv2D(width, 1, use_bias=False, name="project")(y)
    y = keras.layers.BatchNormalization(name="project_bn")(y)
    z = keras.layers.Add(name="add")([x, y])
    z = keras.layers.GlobalAveragePooling2D(name="gap")(z)
    o = keras.layers.Dense(units, name="head")(z)
    model = keras.Model(i, o, name=f"inv_{seed}")
    randomise_batch_norm(model, seed)
    return model


def app_model(kind: str, seed: int = 0, units: int = 3):
    """tf_keras.applications MobileNetV2 (alpha 0.35) or ResNet50, weights=None, 32x32x3 input,
    average pooling and a Dense task head on its output tensor (a user's standard definition)."""
    keras.utils.set_random_seed(seed)
    if kind == "mobilenetv2":
        base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35,
                                              weights=None, include_top=False, pooling="avg")
    else:
        base = keras.applications.ResNet50(input_shape=(32, 32, 3), weights=None,
                                           include_top=False, pooling="avg")
    model = keras.Model(base.input, keras.layers.Dense(units, name="head")(base.output),
                        name=f"{kind}_{seed}")
    randomise_batch_norm(model, seed)
    return model


def images(n: int = 4, shape=(8, 8, 3), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)
