"""Accuracy of exported files on held-out data, computed from the TFLite outputs themselves.

Why not copy Keras accuracy: the manifest describes the files that ship. Quantisation (or any
converter difference) can flip a prediction; the number a user reads must be the files' own.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from pam_tf.export import runtime


def file_accuracy(path: str, tasks: Sequence[str], task_objs: Mapping[str, object],
                  x_test: np.ndarray, y_test: Mapping[str, np.ndarray], *,
                  signature: str | None = None, batch_size: int = 256) -> dict[str, float]:
    """{task: accuracy} of one file's heads (each task's ``Task.accuracy``) over the test set."""
    interp = runtime.load_interpreter(path)
    out = runtime.run(interp, x_test, tasks, signature=signature, batch_size=batch_size,
                      where=path)
    return {t: float(task_objs[t].accuracy(y_test[t], out[t])) for t in tasks}
