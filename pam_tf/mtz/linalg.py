"""The numerical core of Multi-Task Zipping (MTZ, method.md §8), on plain arrays.

For one layer, a neuron's incoming weights plus its bias form a vector w over the layer input
with a 1 appended, x̃. Changing w by δ raises the layer's squared output error by ½ δᵀ H δ with
H = E[x̃ x̃ᵀ] (for a conv: over samples *and* output positions, x̃ being one receptive-field
patch). Zipping neuron i of net A with neuron j of net B into one weight vector w costs

    ΔE_ij = min_w ½ (w − a_i)ᵀ H_A (w − a_i) + ½ (w − b_j)ᵀ H_B (w − b_j)
          = ½ (a_i − b_j)ᵀ (H_A⁻¹ + H_B⁻¹)⁻¹ (a_i − b_j),   at  w = (H_A + H_B)⁻¹ (H_A a_i + H_B b_j).

Everything here is vectorised over neurons (one matrix of all pair costs, one solve for all
merged vectors) and done in float64: Hessians of ReLU inputs are often singular (a channel that
is never active gives a zero row), so :func:`damp` regularises them, and says how much.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["layer_hessian", "patches", "Damping", "damp", "pair_costs", "greedy_match",
           "merged_weights"]


def patches(x: np.ndarray, kernel_size: tuple[int, int], strides: tuple[int, int],
            padding: str) -> np.ndarray:
    """Receptive-field patches of a conv input (N, H, W, C) → (N·H_out·W_out, kh·kw·C), in the
    order of a (kh, kw, C, out) kernel reshaped to (kh·kw·C, out), so patch @ kernel is the
    conv's pre-activation at each position (TF's own patch extraction, same padding rules)."""
    from pam_tf.compat import tf

    kh, kw = kernel_size
    out = tf.image.extract_patches(tf.constant(x, tf.float32), sizes=[1, kh, kw, 1],
                                   strides=[1, strides[0], strides[1], 1], rates=[1, 1, 1, 1],
                                   padding=padding.upper())
    out = out.numpy()
    return out.reshape(-1, out.shape[-1])


def layer_hessian(x: np.ndarray, kind: str, *, kernel_size: tuple[int, int] = (1, 1),
                  strides: tuple[int, int] = (1, 1), padding: str = "valid",
                  chunk: int = 64) -> np.ndarray:
    """H = E[x̃ x̃ᵀ] (float64) of a layer's input with the bias term appended (last row/col).

    `x` is the layer's input as the layer sees it: (N, H, W, C) for a conv (averaged over
    samples and output positions, via patches), (N, D) for a dense layer. Accumulated in chunks
    of `chunk` samples so a large conv input never materialises all its patches at once.
    """
    x = np.asarray(x)
    if kind == "conv" and x.ndim != 4:
        raise ValueError(f"conv layer input must be (N, H, W, C), got shape {x.shape}")
    if kind == "dense" and x.ndim != 2:
        raise ValueError(f"dense layer input must be (N, D), got shape {x.shape}")
    if len(x) == 0:
        raise ValueError("no samples to estimate a Hessian from")
    total, rows = None, 0
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk]
        flat = patches(part, kernel_size, strides, padding) if kind == "conv" else part
        flat = np.concatenate([flat.astype(np.float64), np.ones((len(flat), 1))], axis=1)
        gram = flat.T @ flat
        total = gram if total is None else total + gram
        rows += len(flat)
    return total / rows


@dataclass(frozen=True)
class Damping:
    """How a near-singular Hessian was regularised: H + amount·I (amount > 0 when damped)."""

    amount: float
    smallest: float
    largest: float
    weak: int      # eigenvalues below the threshold
    size: int

    def describe(self) -> str:
        return (f"near-singular Hessian ({self.weak} of {self.size} eigenvalues below the "
                f"threshold; smallest {self.smallest:.3g}, largest {self.largest:.3g}): damped "
                f"by {self.amount:.3g}·I")


def damp(h: np.ndarray, relative: float) -> tuple[np.ndarray, Damping]:
    """H itself when its smallest eigenvalue is at least `relative` × its largest; else
    H + relative·λ_max·I (so its condition number stays below about 1/relative). An all-zero
    H (a layer input that is always zero) becomes the identity."""
    h = np.asarray(h, np.float64)
    h = (h + h.T) / 2
    eig = np.linalg.eigvalsh(h)
    largest, smallest = float(eig[-1]), float(eig[0])
    threshold = relative * largest
    weak = int(np.sum(eig < threshold)) if largest > 0 else len(eig)
    if largest <= 0:
        return np.eye(len(h)), Damping(1.0, smallest, largest, weak, len(h))
    if smallest >= threshold and smallest > 0:
        return h, Damping(0.0, smallest, largest, 0, len(h))
    amount = max(threshold, np.finfo(np.float64).eps * largest * len(h))
    return h + amount * np.eye(len(h)), Damping(amount, smallest, largest, weak, len(h))


def pair_costs(h_a: np.ndarray, h_b: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ΔE for every pair: (len(a), len(b)) matrix, rows of `a` (net A's neurons' weight vectors,
    bias last) against rows of `b`. Uses (H_A⁻¹ + H_B⁻¹)⁻¹ = H_A (H_A + H_B)⁻¹ H_B, which needs
    only one solve with the better conditioned H_A + H_B."""
    h_a = np.asarray(h_a, np.float64)
    h_b = np.asarray(h_b, np.float64)
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or h_a.shape != (a.shape[1],) * 2 \
            or h_b.shape != h_a.shape:
        raise ValueError(f"pair_costs: weight vectors {a.shape} and {b.shape} do not fit "
                         f"Hessians {h_a.shape} and {h_b.shape}")
    m = h_a @ np.linalg.solve(h_a + h_b, h_b)
    m = (m + m.T) / 2
    am = a @ m
    qa = np.sum(am * a, axis=1)
    qb = np.sum((b @ m) * b, axis=1)
    cross = am @ b.T
    return np.maximum(0.5 * (qa[:, None] + qb[None, :] - 2 * cross), 0.0)


def greedy_match(costs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k one-to-one pairs (rows, cols) picked by ascending cost: the cheapest pair of all, then
    the cheapest among rows and columns still free, and so on (MTZ's greedy matching). Ties
    break by position (row-major), so the result is deterministic."""
    costs = np.asarray(costs)
    n_rows, n_cols = costs.shape
    if not 0 <= k <= min(n_rows, n_cols):
        raise ValueError(f"cannot match {k} pairs between {n_rows} and {n_cols} neurons")
    order = np.argsort(costs, axis=None, kind="stable")
    row_free = np.ones(n_rows, bool)
    col_free = np.ones(n_cols, bool)
    rows, cols = [], []
    for flat in order:  # one pass over the sorted pairs; stops after k pairs
        if len(rows) == k:
            break
        r, c = divmod(int(flat), n_cols)
        if row_free[r] and col_free[c]:
            row_free[r] = col_free[c] = False
            rows.append(r)
            cols.append(c)
    return np.asarray(rows, np.int64), np.asarray(cols, np.int64)


def merged_weights(h_a: np.ndarray, h_b: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H_A + H_B)⁻¹ (H_A a_p + H_B b_p) for every matched pair p (rows of `a` and `b`)."""
    h_a = np.asarray(h_a, np.float64)
    h_b = np.asarray(h_b, np.float64)
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"merged_weights: {a.shape} and {b.shape} pairs")
    if len(a) == 0:
        return np.zeros((0, h_a.shape[0]))
    rhs = h_a @ a.T + h_b @ b.T
    return np.linalg.solve(h_a + h_b, rhs).T
