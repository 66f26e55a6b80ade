"""Tests of the greedy PAM regrouping of one layer (pam_tf.regroup, method.md §5). Fast: N ≤ 64."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from pam_tf.information import task_information
from pam_tf.regroup import (
    LayerGrouping,
    greedy_uninformative_set,
    greedy_uninformative_set_reference,
    layer_task_information,
    neuron_sq_diffs,
    regroup_layer,
)

S2 = 0.1


# ---------------------------------------------------------------------------- data helpers

def _factorial(n_factors: int, reps: int) -> np.ndarray:
    """(2^k·reps, k) 0/1 design in which every factor is exactly independent of the others in
    the sample: clusters made by some factors then carry no information about the rest."""
    rows = np.array(list(itertools.product([0, 1], repeat=n_factors)), dtype=np.int64)
    return np.repeat(rows, reps, axis=0)


def _planted(y: np.ndarray, k: int, rng: np.random.Generator, scale: float = 1.5,
             noise: float = 0.05) -> np.ndarray:
    """k neurons that each encode the binary factor y (a separation ≫ σ) plus a little noise."""
    return scale * y[:, None] + noise * np.abs(rng.normal(size=(len(y), k)))


def _background(n: int, k: int, rng: np.random.Generator, std: float = 0.02) -> np.ndarray:
    """k weak neurons: variation far below σ, so (almost) no information about anything."""
    return np.abs(std * rng.normal(size=(n, k)))


def _random_layer(seed: int, n: int = 40, m: int = 24) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    pre = rng.normal(size=(n, 6)) @ rng.normal(size=(6, m)) * 0.3 + 0.2 * rng.normal(size=(n, m))
    acts = np.maximum(pre, 0.0) * rng.uniform(0.3, 1.5, m)
    acts[:, rng.choice(m, 3, replace=False)] = 0.0      # never-firing neurons
    labels = [(pre[:, 0] > 0).astype(int), rng.integers(0, 2, n), rng.integers(0, 3, n)]
    return acts, labels


# ---------------------------------------------------------------------------- fast == reference

@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("frac", [0.0, 0.03, 0.2, 0.6, 1.5])
def test_fast_equals_reference(seed, frac):
    acts, labels = _random_layer(seed)
    alpha = frac * task_information(acts, labels, S2)
    fast = greedy_uninformative_set(neuron_sq_diffs(acts), labels, alpha, S2)
    ref = greedy_uninformative_set_reference(acts, labels, alpha, S2)
    assert fast == ref


def test_fast_equals_reference_with_exact_ties_and_saturation():
    # duplicated neurons (exact ties, lowest index must win) and well separated points (all
    # candidates tie at the label entropy once U saturates)
    rng = np.random.default_rng(7)
    n = 32
    base = np.maximum(rng.normal(size=(n, 8)), 0.0) * 2.0
    acts = np.concatenate([base, base[:, ::-1], np.zeros((n, 2))], axis=1)
    labels = [(base[:, 0] > 0.5).astype(int), rng.integers(0, 2, n)]
    for alpha in (0.0, 0.05, 0.5, 1.0, 10.0):
        fast = greedy_uninformative_set(neuron_sq_diffs(acts), labels, alpha, S2)
        assert fast == greedy_uninformative_set_reference(acts, labels, alpha, S2)


def test_fast_and_reference_agree_on_step_prefix():
    acts, labels = _random_layer(5)
    alpha = 0.8 * task_information(acts, labels)
    full = greedy_uninformative_set_reference(acts, labels, alpha)
    for k in (0, 1, 4):
        fast = greedy_uninformative_set(neuron_sq_diffs(acts), labels, alpha, max_steps=k)
        ref = greedy_uninformative_set_reference(acts, labels, alpha, max_steps=k)
        assert fast == ref == full[:len(fast)]


def test_greedy_set_respects_alpha_and_is_maximal_for_the_next_step():
    acts, labels = _random_layer(11, n=48, m=30)
    alpha = 0.3 * task_information(acts, labels)
    U = greedy_uninformative_set(neuron_sq_diffs(acts), labels, alpha)
    assert len(set(U)) == len(U)
    assert task_information(acts[:, sorted(U)], labels) <= alpha
    rest = [c for c in range(acts.shape[1]) if c not in U]
    assert rest, "this layer should not be entirely uninformative"
    assert min(task_information(acts[:, sorted(U + [c])], labels) for c in rest) > alpha


def test_float32_sq_accepted():
    acts, labels = _random_layer(3)
    alpha = 0.2 * task_information(acts, labels)
    U32 = greedy_uninformative_set(neuron_sq_diffs(acts, np.float32), labels, alpha)
    assert set(U32) <= set(range(acts.shape[1]))
    assert task_information(acts[:, sorted(U32)], labels) <= alpha + 1e-5


# ---------------------------------------------------------------------------- regroup_layer

def test_copies_of_one_network_for_copies_of_one_task_are_all_shared():
    n_copies = 3
    acts1, labels = _random_layer(4, n=48, m=20)
    acts = np.concatenate([acts1] * n_copies, axis=1)
    for mode in ("paper", "subsets"):
        g = regroup_layer(acts, [labels] * n_copies, 0.05, mode=mode, relative=True)
        groups = g.groups()
        assert set(groups) == {frozenset(range(n_copies))}
        assert len(groups[frozenset(range(n_copies))]) + len(g.dropped()) == acts.shape[1]
        assert len(groups[frozenset(range(n_copies))]) >= acts.shape[1] // 2


def test_task_with_independent_labels_gets_no_exclusive_neurons():
    rng = np.random.default_rng(1)
    f = _factorial(4, 4)                       # 64 samples; factors 0,1 → task 0; 2,3 → task 1
    acts = np.concatenate([_planted(f[:, 0], 2, rng), _planted(f[:, 1], 2, rng),
                           _background(len(f), 6, rng)], axis=1)
    tasks = [[f[:, 0], f[:, 1]], [f[:, 2], f[:, 3]]]   # task 1: labels independent of the data
    info = layer_task_information(acts, tasks)
    assert info[1] < 0.02 < 1.0 < info[0]
    g = regroup_layer(acts, tasks, [0.05 * info[0], 0.05], mode="subsets")
    assert sorted(g.uninformative[1]) == list(range(acts.shape[1]))   # U_1 covers all
    assert frozenset({1}) not in g.groups()
    assert all(1 not in own for own in g.owners)
    assert g.groups()[frozenset({0})] == [0, 1, 2, 3]


def test_unrelated_tasks_split_into_exclusive_groups():
    rng = np.random.default_rng(2)
    f = _factorial(4, 4)
    acts = np.concatenate([_planted(f[:, 0], 2, rng), _planted(f[:, 1], 2, rng),  # task 0: 0-3
                           _background(len(f), 8, rng),                           # 4-11
                           _planted(f[:, 2], 2, rng), _planted(f[:, 3], 2, rng)], # task 1: 12-15
                          axis=1)
    tasks = [[f[:, 0], f[:, 1]], [f[:, 2], f[:, 3]]]
    g = regroup_layer(acts, tasks, 0.05, mode="paper", relative=True)
    groups = g.groups()
    assert groups.get(frozenset({0})) == [0, 1, 2, 3]
    assert groups.get(frozenset({1})) == [12, 13, 14, 15]
    assert len(groups.get(frozenset({0, 1}), [])) <= 2          # sharing is small
    assert set(range(4, 12)) - set(g.dropped()) <= set(groups.get(frozenset({0, 1}), []))
    for t in (0, 1):
        assert g.alpha_used[t] == pytest.approx(0.05 * g.layer_information[t])
        assert g.layer_information[t] == pytest.approx(task_information(acts, tasks[t]))


def _three_task_layer():
    rng = np.random.default_rng(3)
    f = _factorial(5, 2)                       # factors a, b, c, d, e; 64 samples
    a, b, c, d, e = f.T
    acts = np.concatenate([_planted(a, 3, rng),      # 0-2: a, used by t0 and t1
                           _planted(b, 2, rng),      # 3-4: b, t0 only
                           _planted(c, 2, rng),      # 5-6: c, t1 only
                           _planted(d, 2, rng),      # 7-8: d, t2
                           _planted(e, 2, rng),      # 9-10: e, t2
                           _background(len(f), 4, rng)], axis=1)   # 11-14
    tasks = [[a, b], [a, c], [d, e]]
    return acts, tasks


def test_subsets_mode_finds_group_of_related_tasks():
    acts, tasks = _three_task_layer()
    g = regroup_layer(acts, tasks, 0.05, mode="subsets", relative=True)
    groups = g.groups()
    assert groups[frozenset({0, 1})] == [0, 1, 2]
    assert groups[frozenset({0})] == [3, 4]
    assert groups[frozenset({1})] == [5, 6]
    assert groups[frozenset({2})] == [7, 8, 9, 10]
    assert frozenset({0, 1, 2}) not in groups
    assert list(groups) == [frozenset({0, 1}), frozenset({0}), frozenset({1}), frozenset({2})]


def test_paper_mode_folds_multi_owner_groups_into_the_all_task_group():
    acts, tasks = _three_task_layer()
    sub = regroup_layer(acts, tasks, 0.05, mode="subsets", relative=True)
    pap = regroup_layer(acts, tasks, 0.05, mode="paper", relative=True)
    everyone = frozenset({0, 1, 2})
    assert pap.groups()[everyone] == [0, 1, 2]
    assert all(len(k) in (1, 3) for k in pap.groups())
    for o_s, o_p in zip(sub.owners, pap.owners):
        assert o_p == (everyone if len(o_s) >= 2 else o_s)
    assert pap.uninformative == sub.uninformative
    assert pap.dropped() == sub.dropped()


def test_constant_neurons_are_dropped_for_any_alpha():
    acts, labels = _random_layer(6)
    acts = acts.copy()
    acts[:, 5] = 0.0
    acts[:, 9] = 0.7                            # constant but not zero
    const = [k for k in range(acts.shape[1]) if np.all(acts[:, k] == acts[0, k])]
    assert {5, 9} <= set(const)
    for alpha, rel in ((0.0, False), (0.0, True), (0.01, True), (0.5, False)):
        g = regroup_layer(acts, [labels, labels[:1]], alpha, relative=rel)
        assert set(const) <= set(g.dropped())
        if alpha == 0.0:
            assert g.dropped() == const
    # a layer that never fires: everything dropped, no information, no crash
    dead = np.zeros((20, 5))
    g = regroup_layer(dead, [[np.arange(20) % 2]], 0.05, relative=True)
    assert g.dropped() == list(range(5)) and g.groups() == {}
    assert g.layer_information == [pytest.approx(0.0, abs=1e-12)]


def test_regroup_layer_is_deterministic():
    acts, tasks = _three_task_layer()
    g1 = regroup_layer(acts, tasks, [0.05, 0.1, 0.02], mode="subsets", relative=True)
    g2 = regroup_layer(acts.copy(), [list(t) for t in tasks], [0.05, 0.1, 0.02],
                       mode="subsets", relative=True)
    assert g1 == g2
    assert list(g1.groups().items()) == list(g2.groups().items())


def test_regroup_layer_uses_the_greedy_sets():
    acts, labels = _random_layer(8)
    tasks = [labels[:2], labels[2:]]
    g = regroup_layer(acts, tasks, [0.2, 0.3], relative=True, mode="subsets")
    sq = neuron_sq_diffs(acts)
    for t in range(2):
        assert g.uninformative[t] == greedy_uninformative_set(sq, tasks[t], g.alpha_used[t])
    for k, own in enumerate(g.owners):
        assert own == frozenset(t for t in range(2) if k not in g.uninformative[t])


def test_layer_grouping_helpers():
    g = LayerGrouping(
        owners=[frozenset({1}), frozenset(), frozenset({0, 1}), frozenset({0}), frozenset({1}),
                frozenset({0, 1})],
        alpha_used=[0.1, 0.1], layer_information=[1.0, 1.0], uninformative=[[1, 4], [1, 3]])
    assert list(g.groups().items()) == [(frozenset({0, 1}), [2, 5]), (frozenset({0}), [3]),
                                        (frozenset({1}), [0, 4])]
    assert g.dropped() == [1]
    assert g.n_tasks == 2


# ---------------------------------------------------------------------------- errors

def test_shape_and_argument_errors():
    acts, labels = _random_layer(9, n=20, m=6)
    with pytest.raises(ValueError, match=r"\(N, m\)"):
        regroup_layer(acts[:, 0], [labels], 0.1)
    with pytest.raises(ValueError, match="reduce_conv"):
        regroup_layer(acts.reshape(20, 1, 1, 6), [labels], 0.1)
    with pytest.raises(ValueError, match="entries"):
        regroup_layer(acts, [[labels[0][:-1]]], 0.1)
    with pytest.raises(ValueError, match="alphas"):
        regroup_layer(acts, [labels, labels], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="alpha"):
        regroup_layer(acts, [labels], -0.1)
    with pytest.raises(ValueError, match="mode"):
        regroup_layer(acts, [labels], 0.1, mode="mtz")
    with pytest.raises(ValueError, match="non-empty"):
        regroup_layer(acts, [], 0.1)
    with pytest.raises(TypeError, match="list"):
        regroup_layer(acts, [labels[0]], 0.1)
    sq = neuron_sq_diffs(acts)
    with pytest.raises(ValueError, match=r"\(m, N, N\)"):
        greedy_uninformative_set(sq[0], labels, 0.1)
    with pytest.raises(ValueError, match=r"\(m, N, N\)"):
        greedy_uninformative_set(sq[:, :, :-1], labels, 0.1)
    with pytest.raises(ValueError, match="entries"):
        greedy_uninformative_set(sq[:, :-1, :-1], labels, 0.1)
    with pytest.raises(ValueError, match="non-negative"):
        greedy_uninformative_set(-sq, labels, 0.1)
    with pytest.raises(ValueError, match="sigma2"):
        greedy_uninformative_set(sq, labels, 0.1, sigma2=0.0)
