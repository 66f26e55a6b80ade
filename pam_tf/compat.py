"""The one place that sets up Keras 2 for pam-tf.

TensorFlow 2.16+ bundles Keras 3 as ``tf.keras``; tensorflow-model-optimization and every model
file pam-tf reads need Keras 2 (``tf_keras``). ``TF_USE_LEGACY_KERAS=1`` must be set before
TensorFlow is first imported, so every module of pam-tf gets TensorFlow and Keras from here:

    from pam_tf.compat import tf, keras

Nothing in pam-tf imports ``keras`` (Keras 3) directly.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ["TF_USE_LEGACY_KERAS"] != "1":
    raise RuntimeError(
        "pam-tf needs Keras 2: TF_USE_LEGACY_KERAS is set to "
        f"{os.environ['TF_USE_LEGACY_KERAS']!r}; unset it or set it to 1.")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras", "set_seed"]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF ops deterministic, for reproducible runs."""
    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except (AttributeError, RuntimeError):  # pragma: no cover - older TF or already set
        pass
