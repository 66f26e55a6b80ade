"""Parity: every exported file must compute what the Keras model computes, within a tolerance.

Why: a converter bug, a wrong output mapping (tasks swapped) or too coarse a quantisation would
otherwise ship silently. Each file (and each signature of the multi-signature file) is run with
the LiteRT interpreter and with Keras on the same inputs: a fixed, seeded batch of random images
(reproducible without data) plus real held-out images when given (realistic activations, where
quantisation errors show). The largest absolute difference over all outputs is recorded in the
manifest; above the precision's tolerance the export fails and names the file.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from pam_tf.export.errors import ParityError

MAX_REAL = 64  # held-out images added to the random ones


def parity_inputs(input_shape: Sequence[int], n: int, seed: int,
                  x_real: np.ndarray | None = None, n_real: int = MAX_REAL) -> np.ndarray:
    """`n` seeded uniform [0, 1) images, then up to `n_real` real ones."""
    x = np.random.default_rng(seed).random((int(n), *input_shape), dtype=np.float32)
    if x_real is not None and n_real > 0 and len(x_real):
        x = np.concatenate([x, np.asarray(x_real[:n_real], np.float32)])
    if not len(x):
        raise ValueError("parity needs at least one input: parity_inputs=0 and no test images")
    return x


def max_abs_diff(got: dict[str, np.ndarray], want: dict[str, np.ndarray],
                 tasks: Sequence[str]) -> float:
    """max |got − want| over every output of every task (inf if shapes differ or not finite)."""
    worst = 0.0
    for t in tasks:
        a, b = np.asarray(got[t], np.float64), np.asarray(want[t], np.float64)
        if a.shape != b.shape:
            return float("inf")
        d = np.abs(a - b)
        if not np.all(np.isfinite(d)):
            return float("inf")
        if d.size:
            worst = max(worst, float(d.max()))
    return worst


def check(where: str, diff: float, tolerance: float, quantize: str) -> None:
    """Raise ParityError naming the file when `diff` exceeds the tolerance."""
    if not diff <= tolerance:  # also catches NaN
        raise ParityError(f"{where}: max |TFLite - Keras| = {diff:.3g} exceeds the {quantize} "
                          f"tolerance {tolerance:g}")
