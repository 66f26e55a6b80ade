"""A tiny deterministic multitask data set for tests: no downloads, well under a second.

Images are ``size x size`` (default 16, the smallest LeNet-5 accepts), one channel, with a
background of uniform noise in [0, 0.3]. The image is cut into a grid of square cells, one per
signal task (2x2 cells of 8x8 for up to 4 tasks); each signal task draws its labels into its
own cell only, so which pixels inform which task is known:

- signal task ``t{i}`` with even ``i``: **binary**, 2 labels ``hbar`` / ``vbar``, drawn
  independently (p = 0.5): a bright horizontal / vertical bar through the cell's middle;
- signal task ``t{i}`` with odd ``i``: **multiclass**, 3 classes ``blank`` / ``hbar`` /
  ``vbar`` (uniform): nothing, a horizontal bar, or a vertical bar in the cell.

Optional extra tasks:

- ``copy``: the same task as ``t0`` with identical labels (two tasks copying each other);
- ``noise``: binary, one label ``coin`` drawn independently of the image (a task no network
  can learn: it carries no information about the data).
"""
from __future__ import annotations

import hashlib
import math

import numpy as np

from pam_tf.data.dataset import TaskDataset
from pam_tf.tasks import BINARY, MULTICLASS, Task

__all__ = ["make_synthetic", "synthetic_tasks", "SYNTHETIC_VERSION"]

SYNTHETIC_VERSION = 1
_BACKGROUND = 0.3


def synthetic_tasks(n_tasks: int = 2, *, copy_task: bool = False,
                    noise_task: bool = False) -> tuple[Task, ...]:
    """The tasks :func:`make_synthetic` labels, in order."""
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 1:
        raise ValueError(f"n_tasks must be an int >= 1, got {n_tasks!r}")
    tasks = []
    for i in range(n_tasks):
        if i % 2 == 0:
            tasks.append(Task(f"t{i}", BINARY, 2, ("hbar", "vbar")))
        else:
            tasks.append(Task(f"t{i}", MULTICLASS, 3, ("blank", "hbar", "vbar")))
    if copy_task:
        tasks.append(Task("copy", tasks[0].kind, tasks[0].n_outputs, tasks[0].label_names))
    if noise_task:
        tasks.append(Task("noise", BINARY, 1, ("coin",)))
    return tuple(tasks)


def _draw(rng: np.random.Generator, n: int, size: int, grid: int, cell: int,
          tasks: tuple[Task, ...], n_signal: int):
    x = rng.uniform(0.0, _BACKGROUND, size=(n, size, size)).astype(np.float32)
    ys: dict[str, np.ndarray] = {}
    for i in range(n_signal):
        r0, c0 = (i // grid) * cell, (i % grid) * cell
        mid_r, mid_c = r0 + cell // 2, c0 + cell // 2
        cols = slice(c0 + 1, c0 + cell - 1)
        rows = slice(r0 + 1, r0 + cell - 1)
        if tasks[i].kind == BINARY:
            y = (rng.random((n, 2)) < 0.5).astype(np.float32)
            h, v = y[:, 0] == 1, y[:, 1] == 1
        else:
            y = rng.integers(0, 3, size=n).astype(np.int64)
            h, v = y == 1, y == 2
        x[h, mid_r, cols] = 1.0
        x[v, rows, mid_c] = 1.0
        ys[tasks[i].name] = y
    for t in tasks[n_signal:]:
        if t.name == "copy":
            ys["copy"] = ys[tasks[0].name].copy()
        else:  # noise
            ys["noise"] = (rng.random((n, 1)) < 0.5).astype(np.float32)
    return x[..., None], ys


def make_synthetic(n_tasks: int = 2, *, n_train: int = 512, n_test: int = 256, size: int = 16,
                   copy_task: bool = False, noise_task: bool = False, seed: int = 0,
                   suite: str = "synthetic") -> TaskDataset:
    """Generate the synthetic suite (see module docstring); deterministic in all arguments."""
    tasks = synthetic_tasks(n_tasks, copy_task=copy_task, noise_task=noise_task)
    for name, v in (("n_train", n_train), ("n_test", n_test), ("size", size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    grid = math.ceil(math.sqrt(n_tasks))
    cell = size // grid
    if cell < 4:
        raise ValueError(f"{n_tasks} tasks need cells of at least 4x4: size {size} is too "
                         f"small (use size >= {4 * grid})")
    rng = np.random.default_rng([seed, SYNTHETIC_VERSION])
    x_train, y_train = _draw(rng, n_train, size, grid, cell, tasks, n_tasks)
    x_test, y_test = _draw(rng, n_test, size, grid, cell, tasks, n_tasks)
    key = (f"synthetic-v{SYNTHETIC_VERSION}:{suite}:n_tasks={n_tasks}:copy={copy_task}:"
           f"noise={noise_task}:size={size}:train={n_train}:test={n_test}:seed={seed}")
    return TaskDataset(suite=suite, tasks=tasks, x_train=x_train, x_test=x_test,
                       y_train=y_train, y_test=y_test,
                       checksum=hashlib.sha256(key.encode()).hexdigest())
