"""Greedy PAM regrouping of one layer (method.md §5): which task owns which neuron.

For each task t we grow, greedily, the largest set U_t of the layer's pooled neurons that together
carry at most α_t nats about the task (summed over its labels, :mod:`pam_tf.information`): each
step adds the candidate that raises I(U_t; Y_t) least and the growth stops before the first
addition that would exceed α_t. A neuron is owned by every task whose U_t it is *not* in; neurons
owned by nobody are dropped, the rest are grouped by owner set.

Why the fast scorer is built the way it is
------------------------------------------
The estimator depends on a set of neurons only through K_ij = exp(−‖z_i − z_j‖²/(2σ²)), and
‖z_i − z_j‖² over a set is the sum of its neurons' own squared differences, so
K(U ∪ {c}) = K(U) ∘ F_c with F_c = exp(−sq_c/(2σ²)) computed **once** per neuron. The information
needs only per-sample kernel sums, over all samples (S_i) and over the sample's own class for each
label (S_i^l), because the dimension terms cancel:

    I(U; Y_t) = Σ_l [ H(Y_l) + mean_i log S_i^l − mean_i log S_i ].

For row i these sums are F_c[i, :] @ W_i with W_i[j, :] = K_U[i, j] · [1, same-class masks], so
scoring *every* candidate of a step is one batched matrix product over the N rows, with no
exponential at all (the paper's cost was dominated by exp over class blocks). That product runs in
float32. To keep the result exact, float32 is only a screen: every candidate whose float32 score is
within a rigorous rounding bound of the best is re-scored in float64 from the running float64
distance sum, and the choice is made on those float64 values (ties within ``TIE_TOL`` nats go to
the lowest neuron index). The reference implementation recomputes everything from the raw
activations and must agree exactly; the tests check it.

Lazy re-scoring (CELF-style) is deliberately not used. It would be exact only if a candidate's
marginal increase never shrank as U grows, and it does shrink when the candidate's information is
redundant with U (a second copy of a label-encoding neuron adds almost nothing), so a stale value is
no lower bound and could change the greedy choice. The batched screen is cheap enough without it.

Constant neurons (e.g. never-firing ReLUs) leave every distance unchanged, so they carry exactly
zero information about anything; both implementations put them into U_t up front, which makes
them dropped for every α ≥ 0 and does not change which other neurons the greedy picks.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pam_tf.information import (
    as_samples,
    check_label_list,
    check_sigma2,
    encode_labels,
    label_entropy,
    task_information,
)

__all__ = [
    "LayerGrouping",
    "neuron_sq_diffs",
    "greedy_uninformative_set",
    "greedy_uninformative_set_reference",
    "layer_task_information",
    "regroup_layer",
    "TIE_TOL",
]

#: Candidates whose scores differ by at most this many nats are tied (lowest index wins). Far
#: above float64 rounding of a score (~1e-14), far below any α that makes sense.
TIE_TOL = 1e-9

_U32 = float(np.finfo(np.float32).eps) / 2.0  # unit roundoff of float32


# --------------------------------------------------------------------------------------------
# Result type
# --------------------------------------------------------------------------------------------

@dataclass
class LayerGrouping:
    """Result of regrouping one layer's pooled neurons among the tasks.

    owners[k] is the set of tasks that own neuron k (empty: dropped); alpha_used[t] the α_t in
    nats the greedy ran with; layer_information[t] the information of all the layer's neurons
    about task t, I(all; Y_t); uninformative[t] the greedy set U_t in the order it was grown.
    """

    owners: list[frozenset[int]]
    alpha_used: list[float]
    layer_information: list[float]
    uninformative: list[list[int]] = field(default_factory=list)

    @property
    def n_tasks(self) -> int:
        return len(self.alpha_used)

    def groups(self) -> dict[frozenset[int], list[int]]:
        """Kept neurons by owner set, canonical order: owner sets by (−size, sorted tasks), ids
        ascending. Dropped neurons (no owner) are not included; see :meth:`dropped`."""
        by: dict[frozenset[int], list[int]] = {}
        for k, own in enumerate(self.owners):
            if own:
                by.setdefault(own, []).append(k)
        order = sorted(by, key=lambda s: (-len(s), tuple(sorted(s))))
        return {s: by[s] for s in order}

    def dropped(self) -> list[int]:
        """Neurons owned by no task (ascending)."""
        return [k for k, own in enumerate(self.owners) if not own]


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

def neuron_sq_diffs(acts: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """Per-neuron squared differences sq[k, i, j] = (a_ik − a_jk)², shape (m, N, N).

    Summing sq over any set of neurons gives that set's squared-distance matrix.
    """
    a = as_samples(acts)
    at = np.ascontiguousarray(a.T)                     # (m, N)
    m, n = at.shape
    out = np.empty((m, n, n), dtype=dtype)
    step = max(1, (1 << 20) // max(1, n * n))          # ~8 MB float64 temporaries
    for s in range(0, m, step):
        d = at[s:s + step, :, None] - at[s:s + step, None, :]
        np.multiply(d, d, out=d)
        out[s:s + step] = d
    return out


def _check_sq_stack(sq: np.ndarray) -> np.ndarray:
    a = np.asarray(sq)
    if a.ndim != 3 or a.shape[1] != a.shape[2]:
        raise ValueError(f"sq must be (m, N, N) per-neuron squared differences, got {a.shape}")
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    if a.shape[1] < 1:
        raise ValueError("sq needs at least one sample")
    if not np.all(np.isfinite(a)) or (a.size and a.min() < 0):
        raise ValueError("sq must be finite and non-negative")
    ar = np.arange(a.shape[1])
    if a.size and np.any(a[:, ar, ar] != 0):
        raise ValueError("sq[k] must have a zero diagonal (squared differences of a sample "
                         "with itself)")
    return a


class _TaskLabels:
    """A task's labels prepared for the scorer: same-class masks and the label entropies."""

    def __init__(self, labels: Sequence[np.ndarray], n: int):
        labels = check_label_list(labels)
        codes = [encode_labels(y, n)[0] for y in labels]
        self.n_labels = len(codes)
        # same[l, i, j] = 1 iff samples i and j share label l's class
        self.same = np.stack([(c[:, None] == c[None, :]) for c in codes]).astype(np.float64)
        self.h_labels = float(sum(label_entropy(c) for c in codes))
        # W template: for row i, columns [1 (all samples), same_0[i, :], ..., same_{L-1}[i, :]]
        ones = np.ones((1, n, n))
        self.cols64 = np.ascontiguousarray(
            np.concatenate([ones, self.same]).transpose(1, 2, 0))  # (N, N, L+1)
        self.cols32 = self.cols64.astype(np.float32)


def _score_from_sums(sums: np.ndarray, tl: _TaskLabels) -> np.ndarray:
    """I = Σ_l H(Y_l) + mean_i Σ_l log S_i^l − L·mean_i log S_i, from sums (N, ..., L+1)."""
    lg = np.log(sums).astype(np.float64, copy=False)  # combine in float64 whatever the input
    per = lg[..., 1:].sum(axis=-1) - tl.n_labels * lg[..., 0]
    return tl.h_labels + per.mean(axis=0)


def _info_from_D(D: np.ndarray, tl: _TaskLabels, scale: float) -> float:
    """Exact (float64) task information of a set from its squared-distance matrix D (N, N)."""
    K = np.exp(D * scale)
    sums = np.einsum("ij,ijk->ik", K, tl.cols64)
    return float(_score_from_sums(sums, tl))


# --------------------------------------------------------------------------------------------
# Fast greedy
# --------------------------------------------------------------------------------------------

class _LayerScorer:
    """Per-layer precomputation shared by all tasks: F_c = exp(−sq_c/(2σ²)) in float32.

    F is stored transposed, (N, m, N), so that for each sample row i the candidates' rows
    F[i, c, :] form one contiguous (m, N) matrix and a whole step is ``matmul(F[:, active], W)``.
    Built either from a stack of per-neuron squared differences or straight from the activations
    (then a neuron's float64 matrix is recomputed when needed, O(N²), instead of keeping an
    (m, N, N) float64 stack in memory).
    """

    def __init__(self, sigma2: float, *, sq: np.ndarray | None = None,
                 acts: np.ndarray | None = None):
        self.sigma2 = check_sigma2(sigma2)
        self.scale = -0.5 / self.sigma2
        if sq is not None:
            self._sq: np.ndarray | None = _check_sq_stack(sq)
            self._at = None
            self.m, self.n = self._sq.shape[0], self._sq.shape[1]
            self.constant = [k for k in range(self.m) if not self._sq[k].any()]
        else:
            self._sq = None
            self._at = np.ascontiguousarray(as_samples(acts).T)      # (m, N)
            self.m, self.n = self._at.shape
            self.constant = [k for k in range(self.m) if np.all(self._at[k] == self._at[k, 0])]
        self.FT = np.empty((self.n, self.m, self.n), dtype=np.float32)
        step = max(1, (1 << 20) // max(1, self.n * self.n))
        for s in range(0, self.m, step):
            # exp in float64, then one rounding to float32 (the error bound counts on that)
            f = np.exp(self._sq_block(s, min(self.m, s + step)) * self.scale)
            self.FT[:, s:s + step, :] = f.transpose(1, 0, 2)

    def _sq_block(self, start: int, stop: int) -> np.ndarray:
        if self._sq is not None:
            return self._sq[start:stop]
        a = self._at[start:stop]
        d = a[:, :, None] - a[:, None, :]
        return np.multiply(d, d, out=d)

    def sq_of(self, k: int) -> np.ndarray:
        """Neuron k's squared differences (N, N), at the precision decisions are made in."""
        return self._sq_block(k, k + 1)[0]

    def information(self, idx: Sequence[int], tl: _TaskLabels) -> float:
        D = np.zeros((self.n, self.n))
        for k in idx:
            D += self.sq_of(k)
        return _info_from_D(D, tl, self.scale)

    def exact_scores(self, D: np.ndarray, cands: np.ndarray, tl: _TaskLabels) -> np.ndarray:
        """Float64 I(U ∪ {c}; Y) for each candidate c, from U's distance sum D (N, N).

        Exponentials of the summed distances, as the reference computes them; batched, because
        near saturation (I(U) ≈ H(Y)) many candidates tie and all of them land here.
        """
        out = np.empty(len(cands))
        chunk = max(1, (1 << 19) // max(1, self.n * self.n))
        for s in range(0, len(cands), chunk):
            part = cands[s:s + chunk]
            Dk = np.stack([self.sq_of(int(c)) for c in part]) + D        # (k, N, N)
            K = np.exp(Dk * self.scale, out=Dk)
            sums = np.matmul(K.transpose(1, 0, 2), tl.cols64)             # (N, k, L+1)
            out[s:s + len(part)] = _score_from_sums(sums, tl)
        return out

    def greedy(self, tl: _TaskLabels, alpha: float, max_steps: int | None = None) -> list[int]:
        n, scale = self.n, self.scale
        chosen: list[int] = list(self.constant)
        const = set(chosen)
        active = [k for k in range(self.m) if k not in const]  # slot -> neuron id
        if not active:
            return chosen
        # working copy of F with the active candidates compacted into the first slots
        F = np.ascontiguousarray(self.FT[:, active, :])
        ids = np.array(active)
        n_act = len(active)
        D = np.zeros((n, n))
        # rigorous bound on |float32 score − exact score|: entries of F and K_U carry ≤ 1 rounding
        # each, the product and the float32 sum over N terms ≤ N+2 more, log ≤ 1; the score takes
        # L+1 logs with weights 1 and L (so 2L in total). Doubled for safety.
        err = 2.0 * (2 * tl.n_labels) * (n + 4) * _U32
        steps = 0
        while n_act > 0 and (max_steps is None or steps < max_steps):
            K32 = np.exp(D * scale).astype(np.float32)
            W = K32[:, :, None] * tl.cols32                       # (N, N, L+1)
            sums = np.matmul(F[:, :n_act, :], W)                   # (N, n_act, L+1)
            s32 = _score_from_sums(sums, tl)                       # (n_act,)
            best32 = float(s32.min())
            keep = np.flatnonzero(s32 <= best32 + 2.0 * err + TIE_TOL)
            exact = self.exact_scores(D, ids[keep], tl)
            lo = exact.min()
            tied = keep[exact <= lo + TIE_TOL]
            slot = int(tied[np.argmin(ids[tied])])
            score = float(exact[np.flatnonzero(keep == slot)[0]])
            if score > alpha:
                break
            c = int(ids[slot])
            chosen.append(c)
            D += self.sq_of(c)
            # compact: move the last active slot into the chosen one's place
            last = n_act - 1
            if slot != last:
                F[:, slot, :] = F[:, last, :]
                ids[slot] = ids[last]
            n_act -= 1
            steps += 1
        return chosen


def greedy_uninformative_set(sq: np.ndarray, labels: Sequence[np.ndarray], alpha: float,
                             sigma2: float = 0.1, *, max_steps: int | None = None) -> list[int]:
    """The largest set U of neurons carrying at most ``alpha`` nats about a task, grown greedily.

    sq: (m, N, N) per-neuron squared differences (:func:`neuron_sq_diffs`) of the layer's m
    pooled neurons; labels: the task's label vectors (information is summed over them).
    Constant neurons go into U first (they carry exactly nothing); then each step adds the
    candidate that raises I(U; Y) least (ties within ``TIE_TOL`` nats: lowest index) and the growth
    stops before the first addition whose I(U; Y) would exceed ``alpha``. Returns U in the order it
    was grown. Decisions are made in float64 on ``sq``'s values (pass float64 sq for results that
    match :func:`greedy_uninformative_set_reference` on the raw activations exactly).
    ``max_steps`` caps the number of greedy additions (after the constant neurons); for timing.
    """
    scorer = _LayerScorer(sigma2, sq=sq)
    return scorer.greedy(_TaskLabels(labels, scorer.n), float(alpha), max_steps)


def greedy_uninformative_set_reference(z: np.ndarray, labels: Sequence[np.ndarray],
                                       alpha: float, sigma2: float = 0.1, *,
                                       max_steps: int | None = None) -> list[int]:
    """Obviously-correct version of :func:`greedy_uninformative_set` from activations z (N, m).

    Every candidate of every step is scored by recomputing I(z[:, U ∪ {c}]; Y) from scratch with
    :func:`pam_tf.information.task_information`. Slow (O(m²·N²·|U|)); for tests and benchmarks.
    """
    a = as_samples(z)
    labels = check_label_list(labels)
    sigma2 = check_sigma2(sigma2)
    m = a.shape[1]
    chosen = [k for k in range(m) if np.all(a[:, k] == a[0, k])]
    rest = [k for k in range(m) if k not in set(chosen)]
    steps = 0
    while rest and (max_steps is None or steps < max_steps):
        scores = [task_information(a[:, sorted(chosen + [c])], labels, sigma2) for c in rest]
        lo = min(scores)
        c, s = next((c, s) for c, s in zip(rest, scores) if s <= lo + TIE_TOL)  # rest ascending
        if s > alpha:
            break
        chosen.append(c)
        rest.remove(c)
        steps += 1
    return chosen


# --------------------------------------------------------------------------------------------
# One layer, all tasks
# --------------------------------------------------------------------------------------------

def layer_task_information(acts: np.ndarray | None,
                           task_labels: Sequence[Sequence[np.ndarray]],
                           sigma2: float = 0.1, *, sq: np.ndarray | None = None) -> list[float]:
    """I(all neurons of the layer; Y_t) for each task t, nats (what relative α scales).

    Computed exactly as :func:`regroup_layer` computes it, so a value measured once can be
    handed to regrouping (``layer_information=``) without changing any decision. `sq`: as in
    :func:`regroup_layer`, instead of `acts`."""
    if sq is not None:
        scorer = _LayerScorer(sigma2, sq=_check_sq_stack(sq))
    else:
        scorer = _LayerScorer(sigma2, acts=as_samples(np.asarray(acts)))
    return [scorer.information(range(scorer.m), _TaskLabels(labels, scorer.n))
            for labels in task_labels]


def regroup_layer(acts: np.ndarray | None, task_labels: Sequence[Sequence[np.ndarray]],
                  alpha: float | Sequence[float], *, mode: str = "paper", sigma2: float = 0.1,
                  relative: bool = False,
                  layer_information: Sequence[float] | None = None,
                  sq: np.ndarray | None = None) -> LayerGrouping:
    """Assign each of a layer's pooled neurons to the tasks that need it (method.md §5).

    acts: (N, m) pooled neuron values of the layer over one labelled batch (the n networks'
    neurons concatenated; conv layers reduced with :func:`pam_tf.information.reduce_conv`).
    task_labels[t]: task t's label vectors. alpha: one α for all tasks or one per task, in nats;
    with ``relative=True`` it is a fraction of the layer's whole information about the task,
    α_t = alpha_t · I(all m neurons; Y_t) — the pam-tf default, because the KDE bound saturates at
    the label entropy, so one absolute α means different things in different layers (§11). Note
    that a relative α gives even a task the layer knows nothing about a (small) U_t, so such a
    task still gets exclusive neurons; use an absolute α to avoid that.

    mode ``"paper"`` folds every neuron with two or more owners into the one all-task group (the
    paper's two group kinds); ``"subsets"`` keeps owner sets as they are.

    layer_information: I(all neurons; Y_t) per task when the caller measured it already (the
    main job's information stage, with the same σ²); otherwise it is computed here.

    sq: instead of `acts`, the (m, N, N) per-neuron squared differences, for neurons that are
    more than one number per sample (a coupling class of a graph network: one value per tensor
    it covers, :mod:`pam_tf.graph.merge`); pass ``acts=None`` then.
    """
    if mode not in ("paper", "subsets"):
        raise ValueError(f"mode must be 'paper' or 'subsets', got {mode!r}")
    if sq is not None:
        sq = _check_sq_stack(sq)
        m, n = sq.shape[0], sq.shape[1]
    else:
        a = np.asarray(acts)
        if a.ndim != 2:
            raise ValueError(f"acts must be (N, m) pooled neuron values, got shape {a.shape}; "
                             "reduce conv activations with reduce_conv first")
        a = as_samples(a)
        n, m = a.shape
    if isinstance(task_labels, np.ndarray) or len(task_labels) == 0:
        raise ValueError("task_labels must be a non-empty list (one entry per task) of lists of "
                         "label vectors")
    n_tasks = len(task_labels)
    if np.ndim(alpha) == 0:
        alphas = [float(alpha)] * n_tasks
    else:
        alphas = [float(x) for x in alpha]  # type: ignore[union-attr]
        if len(alphas) != n_tasks:
            raise ValueError(f"got {len(alphas)} alphas for {n_tasks} tasks")
    if any(not (np.isfinite(x) and x >= 0) for x in alphas):
        raise ValueError(f"alpha must be finite and ≥ 0, got {alphas}")
    tls = [_TaskLabels(labels, n) for labels in task_labels]

    scorer = _LayerScorer(sigma2, sq=sq) if sq is not None else _LayerScorer(sigma2, acts=a)
    everything = range(m)
    if layer_information is None:
        info = [scorer.information(everything, tl) for tl in tls]
    else:
        info = [float(v) for v in layer_information]
        if len(info) != n_tasks:
            raise ValueError(f"got layer_information for {len(info)} tasks, expected {n_tasks}")
    # (max with 0: the layer information can come out a rounding error below zero)
    used = [max(0.0, al * inf) for al, inf in zip(alphas, info)] if relative else alphas
    U = [scorer.greedy(tl, al) for tl, al in zip(tls, used)]

    members = [set(u) for u in U]
    all_tasks = frozenset(range(n_tasks))
    owners: list[frozenset[int]] = []
    for k in range(m):
        own = frozenset(t for t in range(n_tasks) if k not in members[t])
        if mode == "paper" and len(own) >= 2:
            own = all_tasks
        owners.append(own)
    return LayerGrouping(owners=owners, alpha_used=[float(x) for x in used],
                         layer_information=[float(x) for x in info], uninformative=U)
