"""Task suites: which tasks are defined on which images, as data.

Suites (``list_suites()``); Fashion-MNIST classes are 0 T-shirt/top, 1 trouser, 2 pullover,
3 dress, 4 coat, 5 sandal, 6 shirt, 7 sneaker, 8 bag, 9 ankle boot.

``fashion2`` (the paper's LeNet-5 experiment)
    task ``a``: 5 binary labels "class == c" for c = 0..4; task ``b``: the same for c = 5..9.
``fashion5``
    tasks ``t0`` .. ``t4``: task ``ti`` has 2 binary labels, "class == 2i" and "class == 2i+1".
``fashion-related-k`` (k = 0..5; the paper's task-relatedness sweep, on Fashion-MNIST)
    task ``a``: binary labels for classes 0, 1, 2, 3, 4. Task ``b``: task A with its **last k**
    classes swapped for classes 5 .. 4+k, i.e. binary labels for classes
    ``0 .. 4-k`` followed by ``5 .. 4+k`` (k=0: B = A, identical tasks; k=2: B = 0, 1, 2, 5, 6;
    k=5: B = 5..9, which is fashion2).
``composite`` / ``composite3`` (28x56 images: an MNIST digit left of a Fashion-MNIST garment)
    ``digit``: multiclass 10 (the digit); ``parity``: **binary**, one label ``odd``
    (1 if the digit is odd); ``garment``: multiclass 10 (the Fashion-MNIST class);
    ``category``: multiclass 4, ``tops`` = T-shirt/top, pullover, **dress**, coat, shirt
    (garments hung from the shoulders), ``bottoms`` = trouser, ``footwear`` = sandal, sneaker,
    ankle boot, ``bags`` = bag (classes are unbalanced, 5:1:3:1 by garment class).
    ``composite3`` has digit, parity and garment only. Pairs are drawn with ``seed``: 20 000
    train pairs from the train splits only, 4 000 test pairs from the test splits only (no image
    is shared between train and test). Each garment is used at most once per split; digits are
    reused (MNIST has 8 k train / 2 k test digits) in balanced rounds, each digit 2-3 times.
    digit/parity are related, garment/category are related, the two pairs are independent.
``synthetic`` / ``synthetic4`` (no data needed; :mod:`pam_tf.data.synthetic`)
    ``synthetic``: 16x16 images, tasks ``t0`` (binary 2) and ``t1`` (multiclass 3);
    ``synthetic4``: the same plus ``copy`` (= t0) and ``noise`` (labels independent of images).

Base data splits are fixed (:mod:`pam_tf.data.sources`: pooled, canonical order, stratified
split with ``SPLIT_SEED``), so every Fashion-MNIST suite has the same 60 k / 10 k images.
Builders take :class:`~pam_tf.data.sources.BaseData`, so they can be tested on tiny fake data.
"""
from __future__ import annotations

import hashlib
import re
from typing import Sequence

import numpy as np

from pam_tf.data import sources
from pam_tf.data.dataset import TaskDataset
from pam_tf.data.sources import BaseData
from pam_tf.data.synthetic import make_synthetic
from pam_tf.tasks import BINARY, MULTICLASS, Task

__all__ = [
    "load_suite", "list_suites", "build_fashion2", "build_fashion5", "build_fashion_related",
    "build_composite", "related_classes", "COMPOSITE_TASKS", "CATEGORY_OF_GARMENT",
    "CATEGORY_NAMES", "COMPOSITE_TRAIN_PAIRS", "COMPOSITE_TEST_PAIRS",
]

CATEGORY_NAMES = ("tops", "bottoms", "footwear", "bags")
# Fashion-MNIST class -> category index (see module docstring; dress counts as a top).
CATEGORY_OF_GARMENT = np.array([0, 1, 0, 0, 0, 2, 0, 2, 3, 2], dtype=np.int64)
COMPOSITE_TASKS = ("digit", "parity", "garment", "category")
COMPOSITE3_TASKS = ("digit", "parity", "garment")
COMPOSITE_TRAIN_PAIRS = 20_000
COMPOSITE_TEST_PAIRS = 4_000
_RELATED = re.compile(r"^fashion-related-([0-5])$")


def _digest(*parts: object) -> str:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()


def _images(x: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) -> float32 (N, H, W, 1) in [0, 1]."""
    return (x.astype(np.float32) / np.float32(255.0))[..., None]


def _indicator_task(name: str, classes: Sequence[int], base: BaseData) -> Task:
    return Task(name, BINARY, len(classes), tuple(base.class_names[c] for c in classes))


def _indicators(y: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    return (np.asarray(y)[:, None] == np.asarray(classes)[None, :]).astype(np.float32)


def _class_indicator_suite(suite: str, base: BaseData,
                           task_classes: dict[str, Sequence[int]]) -> TaskDataset:
    tasks = tuple(_indicator_task(name, cls, base) for name, cls in task_classes.items())
    spec = ";".join(f"{n}={list(c)}" for n, c in task_classes.items())
    return TaskDataset(
        suite=suite, tasks=tasks,
        x_train=_images(base.x_train), x_test=_images(base.x_test),
        y_train={n: _indicators(base.y_train, c) for n, c in task_classes.items()},
        y_test={n: _indicators(base.y_test, c) for n, c in task_classes.items()},
        checksum=_digest(suite, base.checksum, spec))


def build_fashion2(fashion: BaseData) -> TaskDataset:
    """The paper's suite: task a = classes 0-4, task b = classes 5-9 (binary labels)."""
    return _class_indicator_suite("fashion2", fashion, {"a": range(0, 5), "b": range(5, 10)})


def build_fashion5(fashion: BaseData) -> TaskDataset:
    """Five tasks t0..t4; task ti = binary labels for classes 2i and 2i+1."""
    return _class_indicator_suite("fashion5", fashion,
                                  {f"t{i}": (2 * i, 2 * i + 1) for i in range(5)})


def related_classes(k: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Classes of tasks a and b of ``fashion-related-k``: A = 0..4; B = A with its last k
    classes swapped for 5..4+k."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= 5:
        raise ValueError(f"k must be an int in [0, 5], got {k!r}")
    a = tuple(range(5))
    return a, tuple(range(5 - k)) + tuple(range(5, 5 + k))


def build_fashion_related(fashion: BaseData, k: int) -> TaskDataset:
    """Suite ``fashion-related-k``: tasks a and b share 5-k of their 5 classes."""
    a, b = related_classes(k)
    return _class_indicator_suite(f"fashion-related-{k}", fashion, {"a": a, "b": b})


def _composite_tasks(names: Sequence[str], fashion: BaseData) -> tuple[Task, ...]:
    known = {
        "digit": Task("digit", MULTICLASS, 10, tuple(str(d) for d in range(10))),
        "parity": Task("parity", BINARY, 1, ("odd",)),
        "garment": Task("garment", MULTICLASS, 10, tuple(fashion.class_names)),
        "category": Task("category", MULTICLASS, 4, CATEGORY_NAMES),
    }
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"composite tasks must be a non-empty subset of {COMPOSITE_TASKS}, "
                         f"got {list(names)}")
    return tuple(known[n] for n in names)


def _balanced_reuse(rng: np.random.Generator, n: int, pool: int) -> np.ndarray:
    """``n`` indices into ``range(pool)``: whole random permutations, one after another."""
    rounds = -(-n // pool)
    return np.concatenate([rng.permutation(pool) for _ in range(rounds)])[:n]


def _pairs(rng, n: int, digits_x, digits_y, garments_x, garments_y, split: str):
    if n > len(garments_x):
        raise ValueError(f"composite: {n} {split} pairs need {n} distinct garments, the "
                         f"{split} split has {len(garments_x)}")
    g = rng.permutation(len(garments_x))[:n]
    d = _balanced_reuse(rng, n, len(digits_x))
    x = np.concatenate([digits_x[d], garments_x[g]], axis=2)  # (n, 28, 56): digit | garment
    return _images(x), digits_y[d].astype(np.int64), garments_y[g].astype(np.int64)


def _composite_labels(tasks, digit, garment) -> dict[str, np.ndarray]:
    values = {"digit": digit, "parity": (digit % 2).astype(np.float32)[:, None],
              "garment": garment, "category": CATEGORY_OF_GARMENT[garment]}
    return {t.name: values[t.name] for t in tasks}


def build_composite(mnist: BaseData, fashion: BaseData, *, tasks: Sequence[str] = COMPOSITE_TASKS,
                    n_train: int = COMPOSITE_TRAIN_PAIRS, n_test: int = COMPOSITE_TEST_PAIRS,
                    seed: int = 0, suite: str = "composite") -> TaskDataset:
    """Digit-beside-garment images; train pairs from train splits, test pairs from test splits."""
    task_objs = _composite_tasks(tuple(tasks), fashion)
    # One random stream per split: the first k pairs of a split do not depend on n_train or
    # n_test, so limits cut prefixes of the full suite.
    x_train, d_train, g_train = _pairs(np.random.default_rng([seed, 0]), n_train,
                                       mnist.x_train, mnist.y_train,
                                       fashion.x_train, fashion.y_train, "train")
    x_test, d_test, g_test = _pairs(np.random.default_rng([seed, 1]), n_test,
                                    mnist.x_test, mnist.y_test,
                                    fashion.x_test, fashion.y_test, "test")
    return TaskDataset(
        suite=suite, tasks=task_objs, x_train=x_train, x_test=x_test,
        y_train=_composite_labels(task_objs, d_train, g_train),
        y_test=_composite_labels(task_objs, d_test, g_test),
        checksum=_digest(suite, mnist.checksum, fashion.checksum, list(tasks), n_train, n_test,
                         f"seed={seed}"))


def list_suites() -> list[str]:
    """Names :func:`load_suite` accepts."""
    return (["fashion2", "fashion5"] + [f"fashion-related-{k}" for k in range(6)]
            + ["composite", "composite3", "synthetic", "synthetic4"])


def load_suite(name: str, *, limit_train: int | None = None, limit_test: int | None = None,
               seed: int = 0) -> TaskDataset:
    """Load suite ``name`` (see :func:`list_suites` and the module docstring).

    ``limit_train`` / ``limit_test`` keep the first samples of each split (a seeded shuffled
    order, so a prefix is a fair sample); the checksum then records the limits. ``seed``
    draws composite pairs and the synthetic images; the Fashion-MNIST suites ignore it (their
    split is fixed). Base data come from :mod:`pam_tf.data.sources` (cache, then downloads)."""
    if name not in list_suites():
        raise ValueError(f"unknown suite {name!r}; choose one of {list_suites()}")
    if name in ("synthetic", "synthetic4"):
        extra = name == "synthetic4"
        ds = make_synthetic(2, copy_task=extra, noise_task=extra, seed=seed, suite=name)
    elif name in ("composite", "composite3"):
        # Only as many pairs as asked for are drawn; the first n pairs do not depend on n.
        n_train = COMPOSITE_TRAIN_PAIRS if limit_train is None else min(limit_train,
                                                                         COMPOSITE_TRAIN_PAIRS)
        n_test = COMPOSITE_TEST_PAIRS if limit_test is None else min(limit_test,
                                                                     COMPOSITE_TEST_PAIRS)
        _check_limits(limit_train, limit_test)
        ds = build_composite(
            sources.load_mnist(), sources.load_fashion_mnist(),
            tasks=COMPOSITE_TASKS if name == "composite" else COMPOSITE3_TASKS,
            n_train=n_train, n_test=n_test, seed=seed, suite=name)
        return _with_limits(ds, limit_train, limit_test, already_cut=True)
    else:
        fashion = sources.load_fashion_mnist()
        m = _RELATED.match(name)
        if m:
            ds = build_fashion_related(fashion, int(m.group(1)))
        elif name == "fashion2":
            ds = build_fashion2(fashion)
        else:
            ds = build_fashion5(fashion)
    return _with_limits(ds, limit_train, limit_test)


def _check_limits(limit_train, limit_test) -> None:
    for split, n in (("train", limit_train), ("test", limit_test)):
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer))
                              or n < 1):
            raise ValueError(f"limit_{split} must be a positive int or None, got {n!r}")


def _with_limits(ds: TaskDataset, limit_train, limit_test, already_cut: bool = False):
    _check_limits(limit_train, limit_test)
    if limit_train is None and limit_test is None:
        return ds
    if not already_cut:
        ds = ds.limit(limit_train, limit_test)
    ds.checksum = _digest(ds.checksum, f"limit_train={limit_train}", f"limit_test={limit_test}")
    return ds
