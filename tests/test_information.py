"""Tests of pam_tf.information against closed forms (method.md §4)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pam_tf.information import (
    conditional_entropy,
    conditional_entropy_from_sq_dists,
    entropy_from_sq_dists,
    kde_entropy,
    label_entropy,
    mutual_information,
    mutual_information_from_sq_dists,
    pairwise_sq_dists,
    reduce_conv,
    task_information,
    task_information_from_sq_dists,
)

S2 = 0.1
LOG2 = math.log(2.0)


def _noise_entropy(d: int, sigma2: float = S2) -> float:
    return 0.5 * d * (1.0 + math.log(2.0 * math.pi * sigma2))


# ---------------------------------------------------------------------------- entropy

def test_identical_points_give_gaussian_noise_entropy():
    for d in (1, 3, 7):
        z = np.tile(np.arange(d, dtype=float), (20, 1))
        assert kde_entropy(z, S2) == pytest.approx(_noise_entropy(d), abs=1e-12)
    assert kde_entropy(np.zeros((5, 2)), 0.5) == pytest.approx(_noise_entropy(2, 0.5), abs=1e-12)


def test_far_apart_points_add_log_n():
    # N points separated at scale ≫ σ: the mixture's entropy bound is noise entropy + log N
    z = np.arange(16, dtype=float)[:, None] * 100.0
    assert kde_entropy(z, S2) == pytest.approx(_noise_entropy(1) + math.log(16), abs=1e-9)


def test_entropy_matches_formula_directly():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 3)) * 0.3
    n, d = z.shape
    D = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    direct = d / 2 + d / 2 * math.log(2 * math.pi * S2) - np.mean(
        np.log(np.mean(np.exp(-D / (2 * S2)), axis=1)))
    assert kde_entropy(z, S2) == pytest.approx(direct, abs=1e-10)


def test_entropy_is_stable_for_huge_distances():
    z = np.array([[0.0], [1e4], [2e4]])
    h = kde_entropy(z, 1e-3)
    assert np.isfinite(h)
    assert h == pytest.approx(_noise_entropy(1, 1e-3) + math.log(3), abs=1e-9)


def test_sample_order_invariance():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(40, 4)) * 0.4
    y = rng.integers(0, 3, 40)
    labels = [y, (z[:, 0] > 0).astype(int)]
    p = rng.permutation(40)
    assert kde_entropy(z[p]) == pytest.approx(kde_entropy(z), abs=1e-12)
    assert conditional_entropy(z[p], y[p]) == pytest.approx(conditional_entropy(z, y), abs=1e-12)
    assert mutual_information(z[p], y[p]) == pytest.approx(mutual_information(z, y), abs=1e-12)
    assert task_information(z[p], [l[p] for l in labels]) == pytest.approx(
        task_information(z, labels), abs=1e-12)


def test_neuron_order_invariance():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(25, 5))
    y = rng.integers(0, 2, 25)
    assert mutual_information(z[:, ::-1], y) == pytest.approx(mutual_information(z, y), abs=1e-12)


# ---------------------------------------------------------------------------- information

def test_independent_labels_give_almost_no_information():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(256, 2)) * 0.2   # points dense at scale σ
    y = rng.integers(0, 2, 256)
    mi = mutual_information(z, y, S2)
    assert 0.0 <= mi < 0.02 * LOG2


def test_constant_data_has_zero_information():
    y = np.array([0, 1, 1, 0, 1, 1, 1, 0])
    assert mutual_information(np.full((8, 3), 2.5), y) == pytest.approx(0.0, abs=1e-12)


def test_scaled_copy_of_label_saturates_at_label_entropy():
    rng = np.random.default_rng(4)
    for p in (0.5, 0.1, 0.3):
        y = (rng.random(200) < p).astype(int)
        z = 10.0 * y[:, None] + 0.01 * rng.normal(size=(200, 1))
        assert mutual_information(z, y, S2) == pytest.approx(label_entropy(y), abs=1e-9)


def test_multiclass_separated_gives_log_c():
    y = np.repeat(np.arange(3), 20)
    z = np.stack([np.cos(2 * np.pi * y / 3), np.sin(2 * np.pi * y / 3)], 1) * 20.0
    z += 0.01 * np.random.default_rng(5).normal(size=z.shape)
    assert mutual_information(z, y) == pytest.approx(math.log(3), abs=1e-9)
    assert label_entropy(y) == pytest.approx(math.log(3))


def test_gaussian_classes_monotone_in_separation():
    rng = np.random.default_rng(6)
    n = 200
    y = np.repeat([0, 1], n // 2)
    noise = rng.normal(size=(n, 1)) * 0.1
    seps = [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2]
    mis = [mutual_information(noise + s * y[:, None], y, S2) for s in seps]
    assert mis[0] < 0.005                               # separation ≪ σ: ~0
    assert mis[-1] == pytest.approx(LOG2, abs=1e-6)      # separation ≫ σ: H(Y) = log 2
    assert all(b >= a - 1e-12 for a, b in zip(mis, mis[1:])), mis
    assert all(0.0 <= m <= LOG2 + 1e-12 for m in mis)


def test_information_bounded_by_label_entropy_and_nonnegative():
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(5, 40))
        z = rng.normal(size=(n, int(rng.integers(1, 4)))) * rng.choice([0.05, 0.3, 2.0])
        y = rng.integers(0, 3, n)
        mi = mutual_information(z, y)
        assert -1e-12 <= mi <= label_entropy(y) + 1e-12


def test_mi_is_entropy_minus_conditional():
    rng = np.random.default_rng(8)
    z = rng.normal(size=(50, 2)) * 0.3
    y = rng.integers(0, 4, 50)
    assert mutual_information(z, y) == pytest.approx(kde_entropy(z) - conditional_entropy(z, y),
                                                     abs=1e-12)


def test_conditional_entropy_is_weighted_class_entropies():
    rng = np.random.default_rng(9)
    z = rng.normal(size=(30, 2))
    y = np.array([0] * 10 + [1] * 20)
    expect = (10 / 30) * kde_entropy(z[:10]) + (20 / 30) * kde_entropy(z[10:])
    assert conditional_entropy(z, y) == pytest.approx(expect, abs=1e-12)


def test_label_dtypes_do_not_matter():
    rng = np.random.default_rng(10)
    z = rng.normal(size=(30, 2)) * 0.3
    y = rng.integers(0, 2, 30)
    ref = mutual_information(z, y)
    for alt in (y.astype(bool), 2 * y - 1, y.astype(float), np.where(y == 1, "a", "b")):
        assert mutual_information(z, alt) == pytest.approx(ref, abs=1e-14)


def test_task_information_sums_over_labels():
    rng = np.random.default_rng(11)
    z = rng.normal(size=(60, 3)) * 0.3
    labels = [(z[:, 0] > 0).astype(int), rng.integers(0, 2, 60), (z[:, 1] > 0.2).astype(int)]
    total = task_information(z, labels)
    assert total == pytest.approx(sum(mutual_information(z, y) for y in labels), abs=1e-12)
    # a multiclass task passes its single class vector
    cls = rng.integers(0, 5, 60)
    assert task_information(z, [cls]) == pytest.approx(mutual_information(z, cls), abs=1e-14)


def test_one_dimensional_z_is_one_neuron():
    rng = np.random.default_rng(12)
    z = rng.normal(size=40)
    y = rng.integers(0, 2, 40)
    assert mutual_information(z, y) == mutual_information(z[:, None], y)
    assert kde_entropy(z) == kde_entropy(z[:, None])


# ---------------------------------------------------------------------------- distances

def test_pairwise_sq_dists_is_exact_sum_of_per_dimension_squares():
    rng = np.random.default_rng(13)
    z = rng.normal(size=(17, 9))
    D = pairwise_sq_dists(z)
    expect = sum((z[:, k, None] - z[None, :, k]) ** 2 for k in range(9))
    np.testing.assert_allclose(D, expect, rtol=1e-13, atol=1e-13)
    assert np.all(np.diag(D) == 0) and np.array_equal(D, D.T) and D.min() >= 0
    assert pairwise_sq_dists(np.zeros((4, 0))).shape == (4, 4)


def test_from_sq_dists_match_sample_versions():
    rng = np.random.default_rng(14)
    z = rng.normal(size=(35, 4)) * 0.5
    y = rng.integers(0, 3, 35)
    labels = [y, (z[:, 2] > 0).astype(int)]
    D = pairwise_sq_dists(z)
    assert entropy_from_sq_dists(D, 4, S2) == kde_entropy(z, S2)
    assert conditional_entropy_from_sq_dists(D, y, 4, S2) == conditional_entropy(z, y, S2)
    assert mutual_information_from_sq_dists(D, y, S2) == mutual_information(z, y, S2)
    assert task_information_from_sq_dists(D, labels, S2) == task_information(z, labels, S2)


def test_distances_of_a_set_are_the_sum_of_its_neurons():
    rng = np.random.default_rng(15)
    z = rng.normal(size=(20, 6))
    y = rng.integers(0, 2, 20)
    D = sum(pairwise_sq_dists(z[:, [k]]) for k in (0, 2, 5))
    assert mutual_information_from_sq_dists(D, y) == pytest.approx(
        mutual_information(z[:, [0, 2, 5]], y), abs=1e-12)


def test_empty_set_of_neurons_has_no_information():
    y = np.array([0, 1, 0, 1, 1])
    assert mutual_information(np.zeros((5, 0)), y) == pytest.approx(0.0, abs=1e-15)
    assert kde_entropy(np.zeros((5, 0))) == pytest.approx(0.0, abs=1e-15)


# ---------------------------------------------------------------------------- conv reduction

def test_reduce_conv_max_and_mean():
    rng = np.random.default_rng(16)
    a = rng.normal(size=(4, 5, 6, 3))
    np.testing.assert_array_equal(reduce_conv(a), a.max(axis=(1, 2)))
    np.testing.assert_array_equal(reduce_conv(a, "max"), a.reshape(4, -1, 3).max(axis=1))
    np.testing.assert_allclose(reduce_conv(a, "mean"), a.reshape(4, -1, 3).mean(axis=1))
    assert reduce_conv(a).shape == (4, 3)
    dense = rng.normal(size=(4, 7))
    np.testing.assert_array_equal(reduce_conv(dense), dense)
    np.testing.assert_array_equal(reduce_conv(dense, "mean"), dense)


def test_reduce_conv_errors():
    with pytest.raises(ValueError, match="how"):
        reduce_conv(np.zeros((2, 3, 3, 4)), "median")
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        reduce_conv(np.zeros((2, 3, 4)))


# ---------------------------------------------------------------------------- errors

def test_input_errors():
    z = np.zeros((6, 2))
    with pytest.raises(ValueError, match="entries"):
        mutual_information(z, np.zeros(5))
    with pytest.raises(ValueError, match="vector"):
        mutual_information(z, np.zeros((6, 1)))
    with pytest.raises(ValueError, match="shape"):
        kde_entropy(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        kde_entropy(np.array([[0.0], [np.nan]]))
    with pytest.raises(ValueError, match="sigma2"):
        kde_entropy(z, 0.0)
    with pytest.raises(ValueError, match="square"):
        entropy_from_sq_dists(np.zeros((3, 4)), 1)
    with pytest.raises(TypeError, match="list"):
        task_information(z, np.zeros(6))
    with pytest.raises(ValueError, match="at least one"):
        task_information(z, [])
