"""Tiny single-task tf_keras models shared by tests (seconds to build, no data needed)."""
from __future__ import annotations

import numpy as np

from pam_tf.compat import keras


def tiny_cnn(seed: int = 0, units: int = 3, activation: str = "sigmoid", *, bn: bool = False,
             input_shape=(12, 12, 1), widths=(4, 6, 10, 8), name: str | None = None):
    """conv-pool-conv-pool-flatten-fc-fc-head, optionally with a BatchNormalization to fold."""
    keras.utils.set_random_seed(seed)
    i = keras.Input(input_shape)
    x = keras.layers.Conv2D(widths[0], 3, activation="relu", name="conv1")(i)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    if bn:
        x = keras.layers.Conv2D(widths[1], 3, padding="same", name="conv2")(x)
        x = keras.layers.BatchNormalization(name="bn2")(x)
        x = keras.layers.ReLU(name="relu2")(x)
    else:
        x = keras.layers.Conv2D(widths[1], 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(widths[2], activation="relu", name="fc3")(x)
    x = keras.layers.Dropout(0.1, name="drop")(x)
    x = keras.layers.Dense(widths[3], activation="relu", name="fc4")(x)
    o = keras.layers.Dense(units, activation=activation, name="head")(x)
    model = keras.Model(i, o, name=name or f"tiny_{seed}")
    if bn:
        rng = np.random.default_rng(seed)
        w = widths[1]
        model.get_layer("bn2").set_weights([rng.uniform(0.5, 1.5, w), rng.normal(size=w),
                                            rng.normal(size=w), rng.uniform(0.5, 1.5, w)])
    return model


def images(n: int = 6, shape=(12, 12, 1), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def synthetic_model_files(folder, epochs: int = 3, arch: str = "lenet5") -> tuple[str, ...]:
    """One tiny `arch` net per task of the synthetic suite, trained for `epochs` and saved with its
    sidecar into `folder` (a few seconds): the models of the main-job tests."""
    import os

    from pam_tf.data import load_suite
    from pam_tf.train import save_single_task_model, train_single_task

    ds = load_suite("synthetic")
    paths = []
    for task in ds.tasks:
        model, metrics = train_single_task(ds, task.name, arch, epochs=epochs, verbose=0)
        path = os.path.join(str(folder), f"{arch}_{task.name}.keras")
        save_single_task_model(model, path, dataset=ds, task_name=task.name, arch=arch,
                               metrics=metrics, seed=0, epochs=epochs, batch_size=128, lr=1e-3)
        paths.append(path)
    return tuple(paths)
