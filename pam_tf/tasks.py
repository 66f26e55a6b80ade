"""What one inference task is: its name, its label kind, its head and loss, how it is scored.

Two kinds of task are supported:

- ``"binary"``: ``n_outputs`` independent 0/1 labels per sample (e.g. the paper's fashion2
  task A = "is it class 0?", ..., "is it class 4?"). Sigmoid head, binary cross-entropy.
  Labels are ``(N, n_outputs)`` float32 arrays of 0/1. Accuracy is the mean per-label accuracy
  at threshold 0.5. For information estimates the labels are separate variables whose
  information is summed (method.md section 4).
- ``"multiclass"``: one label with ``n_outputs >= 2`` classes. Softmax head, sparse categorical
  cross-entropy. Labels are ``(N,)`` int64 class indices. Accuracy is argmax accuracy; the
  information is taken about the class variable itself.

This module imports TensorFlow only inside :meth:`Task.keras_loss`, so data code stays light.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

__all__ = ["Task", "KINDS", "BINARY", "MULTICLASS", "TASK_NAME"]

BINARY = "binary"
MULTICLASS = "multiclass"
KINDS = (BINARY, MULTICLASS)

#: What a task name may be: it becomes part of layer, weight and file names.
TASK_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True)
class Task:
    """One task: ``name`` (short, lowercase, used in layer and file names), ``kind``
    (``"binary"`` or ``"multiclass"``), ``n_outputs`` (labels or classes) and
    ``label_names`` (one per output).

    Example::

        Task("a", "binary", 5, ("tshirt", "trouser", "pullover", "dress", "coat"))
        Task("digit", "multiclass", 10, tuple(str(d) for d in range(10)))
    """

    name: str
    kind: str
    n_outputs: int
    label_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not TASK_NAME.match(self.name):
            raise ValueError(
                f"task name {self.name!r} is invalid: use 1-32 characters from [a-z0-9_], "
                "starting with a letter (it becomes part of layer and file names)")
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        if isinstance(self.n_outputs, bool) or not isinstance(self.n_outputs, (int, np.integer)):
            raise ValueError(f"task {self.name!r}: n_outputs must be an int, "
                             f"got {self.n_outputs!r}")
        object.__setattr__(self, "n_outputs", int(self.n_outputs))
        minimum = 2 if self.kind == MULTICLASS else 1
        if self.n_outputs < minimum:
            raise ValueError(f"task {self.name!r}: a {self.kind} task needs n_outputs >= "
                             f"{minimum}, got {self.n_outputs}")
        if isinstance(self.label_names, str):
            raise ValueError(f"task {self.name!r}: label_names must be a sequence of strings, "
                             f"not the string {self.label_names!r}")
        names = tuple(self.label_names)
        if len(names) != self.n_outputs:
            raise ValueError(f"task {self.name!r}: {len(names)} label names given for "
                             f"n_outputs={self.n_outputs}")
        if not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"task {self.name!r}: every label name must be a non-empty string")
        if len(set(names)) != len(names):
            raise ValueError(f"task {self.name!r}: label names must be distinct, got {names}")
        object.__setattr__(self, "label_names", names)

    @property
    def head_activation(self) -> str:
        """Activation of the task's output layer: ``"sigmoid"`` (binary) or ``"softmax"``."""
        return "sigmoid" if self.kind == BINARY else "softmax"

    @property
    def label_shape(self) -> tuple[int, ...]:
        """Shape of one sample's label: ``(n_outputs,)`` for binary, ``()`` for multiclass."""
        return (self.n_outputs,) if self.kind == BINARY else ()

    @property
    def label_dtype(self) -> type:
        """NumPy dtype of the label arrays: float32 (binary 0/1) or int64 (class index)."""
        return np.float32 if self.kind == BINARY else np.int64

    def keras_loss(self, reduction: str | None = None):
        """A fresh tf_keras loss object for this task's head (``reduction``: Keras' own, e.g.
        ``"none"`` for per-sample losses under a tf.distribute strategy; default: the mean)."""
        from pam_tf.compat import keras  # imported here: keeps data code free of TensorFlow
        kw = {"reduction": reduction} if reduction else {}
        if self.kind == BINARY:
            return keras.losses.BinaryCrossentropy(name=f"{self.name}_loss", **kw)
        return keras.losses.SparseCategoricalCrossentropy(name=f"{self.name}_loss", **kw)

    def keras_metric(self):
        """A fresh tf_keras accuracy metric matching :meth:`accuracy` (for progress display)."""
        from pam_tf.compat import keras
        if self.kind == BINARY:
            return keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.5)
        return keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    def check_labels(self, y: np.ndarray) -> np.ndarray:
        """Return ``y`` as this task's label array, or raise ValueError saying what is wrong."""
        y = np.asarray(y)
        if self.kind == BINARY:
            if y.ndim == 1 and self.n_outputs == 1:
                y = y[:, None]
            if y.ndim != 2 or y.shape[1] != self.n_outputs:
                raise ValueError(f"task {self.name!r} (binary, {self.n_outputs} labels): labels "
                                 f"must have shape (N, {self.n_outputs}), got {y.shape}")
            if y.size and not np.all((y == 0) | (y == 1)):
                raise ValueError(f"task {self.name!r}: binary labels must be 0 or 1")
            return y.astype(np.float32, copy=False)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(f"task {self.name!r} (multiclass): labels must have shape (N,), "
                             f"got {y.shape}")
        if y.size and (not np.all(np.equal(np.mod(y, 1), 0))
                       or y.min() < 0 or y.max() >= self.n_outputs):
            raise ValueError(f"task {self.name!r}: class labels must be integers in "
                             f"[0, {self.n_outputs - 1}]")
        return y.astype(np.int64, copy=False)

    def _check_predictions(self, y_pred: np.ndarray, n: int) -> np.ndarray:
        y_pred = np.asarray(y_pred)
        if y_pred.ndim == 1 and self.n_outputs == 1:
            y_pred = y_pred[:, None]
        if y_pred.shape != (n, self.n_outputs):
            raise ValueError(f"task {self.name!r}: predictions must have shape "
                             f"({n}, {self.n_outputs}), got {y_pred.shape}")
        return y_pred

    def accuracy(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        """Accuracy of head outputs ``y_pred`` (probabilities, ``(N, n_outputs)``) on ``y_true``.

        Binary: mean per-label accuracy at threshold 0.5. Multiclass: argmax accuracy.
        """
        y_true = self.check_labels(y_true)
        y_pred = self._check_predictions(y_pred, len(y_true))
        if len(y_true) == 0:
            raise ValueError(f"task {self.name!r}: accuracy of an empty batch is undefined")
        if self.kind == BINARY:
            return float(np.mean((y_pred >= 0.5) == (y_true >= 0.5)))
        return float(np.mean(np.argmax(y_pred, axis=1) == y_true))

    def per_label_accuracy(self, y_true: np.ndarray, y_pred: np.ndarray) -> list[float]:
        """Binary: accuracy of each label column; multiclass: ``[accuracy]``."""
        if self.kind == MULTICLASS:
            return [self.accuracy(y_true, y_pred)]
        y_true = self.check_labels(y_true)
        y_pred = self._check_predictions(y_pred, len(y_true))
        return [float(v) for v in np.mean((y_pred >= 0.5) == (y_true >= 0.5), axis=0)]

    def information_labels(self, y: np.ndarray) -> list[np.ndarray]:
        """The discrete label vectors whose information is summed (method.md section 4).

        Binary: one int64 ``(N,)`` 0/1 vector per label column. Multiclass: ``[y]``.
        """
        y = self.check_labels(y)
        if self.kind == BINARY:
            return [np.ascontiguousarray(y[:, j]).astype(np.int64) for j in range(y.shape[1])]
        return [y.astype(np.int64)]
