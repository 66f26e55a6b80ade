"""The one structure every stage reads data from: :class:`TaskDataset`.

Images are float32 ``(N, H, W, 1)`` in [0, 1]; labels are kept per task, in the form the task's
kind prescribes (:mod:`pam_tf.tasks`): binary ``(N, k)`` float32 0/1, multiclass ``(N,)`` int64.
All tasks label the same images (a multitask data set), so a merged network can be trained
and evaluated on every task at once.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from pam_tf.tasks import Task

__all__ = ["TaskDataset"]


@dataclass
class TaskDataset:
    """Images labelled for every task of a suite, split into train and test.

    ``checksum`` (sha256) identifies the source data and how the suite was derived from it;
    model sidecars record it so a model can be matched to its data."""

    suite: str
    tasks: tuple[Task, ...]
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: dict[str, np.ndarray]
    y_test: dict[str, np.ndarray]
    checksum: str

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        if not self.tasks:
            raise ValueError(f"suite {self.suite!r}: no tasks")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"suite {self.suite!r}: task names must be distinct, got {names}")
        for split, x, ys in (("train", self.x_train, self.y_train),
                             ("test", self.x_test, self.y_test)):
            if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 4:
                raise ValueError(f"suite {self.suite!r}: x_{split} must be a float32 array "
                                 f"(N, H, W, C), got {getattr(x, 'dtype', type(x))} "
                                 f"{getattr(x, 'shape', '')}")
            if set(ys) != set(names):
                raise ValueError(f"suite {self.suite!r}: y_{split} has labels for "
                                 f"{sorted(ys)}, tasks are {names}")
            for t in self.tasks:
                y = t.check_labels(ys[t.name])
                if len(y) != len(x):
                    raise ValueError(f"suite {self.suite!r}: y_{split}[{t.name!r}] has {len(y)} "
                                     f"labels for {len(x)} images")
                ys[t.name] = y
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(f"suite {self.suite!r}: train images {self.x_train.shape[1:]} and "
                             f"test images {self.x_test.shape[1:]} differ in shape")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, ``(H, W, C)``."""
        return tuple(int(s) for s in self.x_train.shape[1:])

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def task(self, name: str) -> Task:
        """The task called ``name`` (ValueError naming the suite's tasks if there is none)."""
        for t in self.tasks:
            if t.name == name:
                return t
        raise ValueError(f"suite {self.suite!r} has no task {name!r}; its tasks are "
                         f"{list(self.task_names)}")

    def limit(self, n_train: int | None = None, n_test: int | None = None) -> "TaskDataset":
        """The first ``n_train`` / ``n_test`` samples of each split (None keeps all).

        Splits are stored in a seeded shuffled order, so a prefix is a fair sample."""
        def cut(x, ys, n, split):
            if n is None:
                return x, ys
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"limit_{split} must be a positive int or None, got {n!r}")
            return x[:n], {k: v[:n] for k, v in ys.items()}

        x_train, y_train = cut(self.x_train, self.y_train, n_train, "train")
        x_test, y_test = cut(self.x_test, self.y_test, n_test, "test")
        return replace(self, x_train=x_train, x_test=x_test, y_train=y_train, y_test=y_test)

    def info_batch(self, n: int = 128, seed: int = 0, pool: int | None = None
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``n`` held-out test samples labelled for all tasks (for information estimates).

        Drawn from the first ``pool`` test samples (default: all of them), so that a caller
        can keep the batch inside the part of the held-out split that steers decisions.
        Deterministic in ``seed``. Every value of every label vector of every task
        (:meth:`Task.information_labels`) that occurs in the pool appears at least once
        (as long as ``n`` allows); the rest is a seeded random draw without replacement."""
        n_test = len(self.x_test) if pool is None else min(int(pool), len(self.x_test))
        if not 1 <= n <= n_test:
            raise ValueError(f"info_batch: n must be in [1, {n_test}] (the test split's size"
                             + ("" if pool is None else f" within the first {n_test}")
                             + f"), got {n}")
        perm = np.random.default_rng(seed).permutation(n_test)
        chosen: list[int] = []
        taken = np.zeros(n_test, dtype=bool)
        for t in self.tasks:
            for labels in t.information_labels(self.y_test[t.name][:n_test]):
                ordered = labels[perm]
                for value in np.unique(labels):
                    if len(chosen) == n:
                        break
                    if np.any(labels[chosen] == value):
                        continue
                    i = int(perm[np.argmax(ordered == value)])
                    chosen.append(i)
                    taken[i] = True
        rest = [int(i) for i in perm if not taken[i]][: n - len(chosen)]
        idx = np.array(sorted(chosen + rest), dtype=np.int64)
        return self.x_test[idx], {k: v[idx] for k, v in self.y_test.items()}
