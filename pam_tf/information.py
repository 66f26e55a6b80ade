"""Information estimators for PAM (method.md §4): how much a set of neurons says about a label.

PAM decides which task owns a neuron by how many nats a set of neurons carries about each task.
The estimator is the pairwise-distance (KDE) upper bound on the entropy of a mixture of Gaussians
with noise variance ``sigma2`` centred on the N samples (Kolchinsky & Tracey), in nats::

    H(Z)   = d/2 + (d/2)·log(2πσ²) − (1/N)·Σ_i log((1/N)·Σ_j exp(−‖z_i − z_j‖² / (2σ²)))
    H(Z|Y) = Σ_c p(c)·H(Z restricted to Y = c)
    I(Z;Y) = H(Z) − H(Z|Y)

Everything depends on the data only through the squared-distance matrix D_ij = ‖z_i − z_j‖², so
each estimator has a ``*_from_sq_dists`` twin for callers that already hold D. D over a set of
neurons is the sum of each neuron's own squared differences; the greedy regrouper
(:mod:`pam_tf.regroup`) builds it incrementally and evaluates the closed form below on it.

Two facts used by callers and tests:

* The d-dependent constants cancel in I, which is therefore
  ``I = H(Y) + (1/N)·Σ_i log(S_i^{y_i} / S_i)`` with S_i = Σ_j K_ij, S_i^c = Σ_{j: y_j = c} K_ij,
  K_ij = exp(−D_ij/(2σ²)) and H(Y) the plug-in entropy of the label. Since S_i^{y_i} ≤ S_i,
  **I ≤ H(Y)**: the bound saturates at the label entropy once the classes are separated at scale
  σ (method.md §11), which is why pam-tf prefers α relative to the layer's whole information.
* I is 0 when Z does not vary (all K_ij = 1) and ≥ 0 up to rounding otherwise. I is a
  difference of two bounds, not a true mutual information, and we do not rely on a proof of
  non-negativity (a randomised search over small batches found no negative value beyond
  rounding), so the value is returned as computed, never clipped.

All computation is float64. Inputs are samples in rows: ``z`` is (N, d) (a 1-D z is one neuron);
labels are (N,) arrays of any discrete dtype.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "reduce_conv",
    "pairwise_sq_dists",
    "entropy_from_sq_dists",
    "conditional_entropy_from_sq_dists",
    "mutual_information_from_sq_dists",
    "task_information_from_sq_dists",
    "kde_entropy",
    "conditional_entropy",
    "mutual_information",
    "task_information",
    "label_entropy",
    "encode_labels",
]


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------

def reduce_conv(acts: np.ndarray, how: str = "max") -> np.ndarray:
    """Reduce conv activations (N, H, W, C) to one number per sample and neuron, (N, C).

    The paper treats a conv channel as one neuron and intends its spatial global max (does the
    feature fire anywhere?); the mean is offered as the smoother alternative. Dense activations
    (N, d) are returned unchanged (as an array), so callers can reduce every layer uniformly.
    """
    a = np.asarray(acts)
    if how not in ("max", "mean"):
        raise ValueError(f"reduce_conv: how must be 'max' or 'mean', got {how!r}")
    if a.ndim == 2:
        return a
    if a.ndim != 4:
        raise ValueError(
            "reduce_conv expects conv activations (N, H, W, C) or dense activations (N, d); "
            f"got an array of shape {a.shape}")
    return a.max(axis=(1, 2)) if how == "max" else a.mean(axis=(1, 2))


def as_samples(z: np.ndarray) -> np.ndarray:
    """(N,) or (N, d) → float64 (N, d); refuses other ranks and non-finite values."""
    a = np.asarray(z, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(
            f"expected samples in rows, shape (N,) or (N, d); got shape {a.shape} "
            "(reduce conv activations first with reduce_conv)")
    if a.shape[0] < 1:
        raise ValueError("need at least one sample")
    if not np.all(np.isfinite(a)):
        raise ValueError("activations contain NaN or inf")
    return a


def encode_labels(y: np.ndarray, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Map a discrete label vector to class codes 0..C-1; return (codes, class counts).

    Any dtype works (ints, ±1, bools, strings); ``n`` checks the length against the batch.
    """
    a = np.asarray(y)
    if a.ndim != 1:
        raise ValueError(f"a label must be a vector (N,), got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"label has {a.shape[0]} entries but there are {n} samples")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise ValueError("label contains NaN or inf (missing labels are not supported)")
    _, codes, counts = np.unique(a, return_inverse=True, return_counts=True)
    return codes.reshape(-1).astype(np.intp), counts


def check_sigma2(sigma2: float) -> float:
    """The kernel width as a float; refuses non-positive and non-finite values."""
    s = float(sigma2)
    if not (s > 0.0 and np.isfinite(s)):
        raise ValueError(f"sigma2 must be a positive finite number, got {sigma2!r}")
    return s


def _check_sq(D: np.ndarray) -> np.ndarray:
    a = np.asarray(D, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 1:
        raise ValueError(f"expected a square (N, N) squared-distance matrix, got shape {a.shape}")
    return a


# --------------------------------------------------------------------------------------------
# Distances and the log-kernel sums
# --------------------------------------------------------------------------------------------

def pairwise_sq_dists(z: np.ndarray) -> np.ndarray:
    """‖z_i − z_j‖² for all sample pairs, (N, N) float64, exactly symmetric with a zero diagonal.

    Computed as a sum of per-dimension squared differences (not ‖a‖² + ‖b‖² − 2a·b), so it never
    goes negative and equals the sum of per-neuron matrices the regrouper accumulates.
    """
    a = as_samples(z)
    n, d = a.shape
    out = np.zeros((n, n), dtype=np.float64)
    # chunk the dimensions so the (N, N, chunk) temporary stays around 16 MB
    chunk = max(1, min(d, (1 << 21) // max(1, n * n)))
    for s in range(0, d, chunk):
        block = a[:, s:s + chunk]
        diff = block[:, None, :] - block[None, :, :]
        out += np.einsum("ijk,ijk->ij", diff, diff)
    return out


def _mean_log_kernel_sum(D: np.ndarray, sigma2: float) -> float:
    """(1/N)·Σ_i log((1/N)·Σ_j exp(−D_ij/(2σ²))), via a row-wise logsumexp (no underflow)."""
    n = D.shape[0]
    x = D * (-0.5 / sigma2)
    mx = x.max(axis=1, keepdims=True)
    lse = mx[:, 0] + np.log(np.exp(x - mx).sum(axis=1))
    return float(lse.mean() - np.log(n))


# --------------------------------------------------------------------------------------------
# Estimators from a squared-distance matrix
# --------------------------------------------------------------------------------------------

def entropy_from_sq_dists(D: np.ndarray, d: int, sigma2: float = 0.1) -> float:
    """KDE upper bound on H(Z) in nats from D_ij = ‖z_i − z_j‖² of d-dimensional samples."""
    D = _check_sq(D)
    sigma2 = check_sigma2(sigma2)
    if d < 0:
        raise ValueError(f"dimension d must be ≥ 0, got {d}")
    const = 0.5 * d * (1.0 + np.log(2.0 * np.pi * sigma2))
    return float(const - _mean_log_kernel_sum(D, sigma2))


def conditional_entropy_from_sq_dists(D: np.ndarray, y: np.ndarray, d: int,
                                      sigma2: float = 0.1) -> float:
    """H(Z|Y) = Σ_c p(c)·H(Z restricted to Y = c), each term from D's class block."""
    D = _check_sq(D)
    codes, counts = encode_labels(y, D.shape[0])
    n = D.shape[0]
    total = 0.0
    for c, nc in enumerate(counts):
        idx = np.flatnonzero(codes == c)
        total += (nc / n) * entropy_from_sq_dists(D[np.ix_(idx, idx)], d, sigma2)
    return float(total)


def mutual_information_from_sq_dists(D: np.ndarray, y: np.ndarray, sigma2: float = 0.1) -> float:
    """I(Z;Y) = H(Z) − H(Z|Y) from D. The dimension terms cancel, so d is not needed.

    At most the plug-in label entropy H(Y); ≥ 0 up to rounding in practice (see module doc).
    """
    # With d = 0 both constants are 0, so this is exactly the difference of the kernel terms.
    return float(entropy_from_sq_dists(D, 0, sigma2)
                 - conditional_entropy_from_sq_dists(D, y, 0, sigma2))


def task_information_from_sq_dists(D: np.ndarray, labels: Sequence[np.ndarray],
                                   sigma2: float = 0.1) -> float:
    """Σ_l I(Z; Y_l) over a task's label vectors (the paper sums per-label values), from D."""
    labels = check_label_list(labels)
    return float(sum(mutual_information_from_sq_dists(D, y, sigma2) for y in labels))


def check_label_list(labels: Sequence[np.ndarray]) -> list[np.ndarray]:
    """A task's label vectors as a non-empty list; refuses a bare array."""
    if isinstance(labels, np.ndarray):
        raise TypeError(
            "labels must be a list of label vectors (one per binary label, or the one class "
            "vector of a multiclass task), not a bare array")
    out = list(labels)
    if not out:
        raise ValueError("a task needs at least one label vector")
    return out


# --------------------------------------------------------------------------------------------
# Estimators from samples
# --------------------------------------------------------------------------------------------

def kde_entropy(z: np.ndarray, sigma2: float = 0.1) -> float:
    """Pairwise-distance KDE upper bound on the entropy of Z (N, d) with noise variance σ², nats.

    For N identical points this is the entropy of one Gaussian, d/2·(1 + log 2πσ²); spreading the
    points apart raises it by at most log N.
    """
    a = as_samples(z)
    return entropy_from_sq_dists(pairwise_sq_dists(a), a.shape[1], sigma2)


def conditional_entropy(z: np.ndarray, y: np.ndarray, sigma2: float = 0.1) -> float:
    """H(Z|Y) = Σ_c p(c)·H(Z|Y=c) for a discrete label y (N,), nats."""
    a = as_samples(z)
    return conditional_entropy_from_sq_dists(pairwise_sq_dists(a), y, a.shape[1], sigma2)


def mutual_information(z: np.ndarray, y: np.ndarray, sigma2: float = 0.1) -> float:
    """I(Z;Y) = H(Z) − H(Z|Y) in nats for a discrete label y (N,).

    Returned as computed: ≥ 0 up to rounding in practice and ≤ the plug-in entropy of y.
    """
    return mutual_information_from_sq_dists(pairwise_sq_dists(as_samples(z)), y, sigma2)


def task_information(z: np.ndarray, labels: Sequence[np.ndarray], sigma2: float = 0.1) -> float:
    """Information of Z about a task: Σ_l I(Z; Y_l) over its label vectors, nats.

    Binary-label tasks pass one vector per label (the paper sums them); a multiclass task passes
    its single class vector. The distance matrix is computed once and shared by all labels.
    """
    return task_information_from_sq_dists(pairwise_sq_dists(as_samples(z)), labels, sigma2)


def label_entropy(y: np.ndarray) -> float:
    """Plug-in entropy of a discrete label in nats: the ceiling of I(Z;Y) for this estimator."""
    _, counts = encode_labels(y)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())
