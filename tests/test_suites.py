"""Task suites: label definitions on tiny fake base data (no downloads), composite pairing,
the synthetic generator and the held-out information batch."""
import numpy as np
import pytest

from pam_tf.data import load_suite, list_suites
from pam_tf.data.sources import FASHION_CLASSES, BaseData
from pam_tf.data.suites import (
    build_composite, build_fashion2, build_fashion5, build_fashion_related, related_classes)
from pam_tf.data.synthetic import make_synthetic

TRAIN_MARK, TEST_MARK = 1, 2


def fake_base(name, n_train_per_class, n_test_per_class, class_names=FASHION_CLASSES):
    """Images whose pixel (0, 0) is the class, (0, 1) the split mark, (0, 2) a running id."""
    def split(per_class, mark):
        y = np.repeat(np.arange(len(class_names)), per_class)
        x = np.zeros((len(y), 28, 28), dtype=np.uint8)
        x[:, 0, 0] = y
        x[:, 0, 1] = mark
        x[:, 0, 2] = np.arange(len(y))
        return x, y.astype(np.int64)

    x_train, y_train = split(n_train_per_class, TRAIN_MARK)
    x_test, y_test = split(n_test_per_class, TEST_MARK)
    return BaseData(name, x_train, y_train, x_test, y_test, tuple(class_names), name * 4, "fake")


FASHION = fake_base("fashion", 3, 2)
MNIST = fake_base("mnist", 2, 1, tuple(str(d) for d in range(10)))


def test_fashion2_labels_are_class_indicators():
    ds = build_fashion2(FASHION)
    assert [(t.name, t.kind, t.n_outputs) for t in ds.tasks] == [("a", "binary", 5),
                                                                 ("b", "binary", 5)]
    y = FASHION.y_train
    assert np.array_equal(ds.y_train["a"], np.eye(10, dtype=np.float32)[y][:, :5])
    assert np.array_equal(ds.y_train["b"], np.eye(10, dtype=np.float32)[y][:, 5:])
    assert ds.tasks[1].label_names == FASHION_CLASSES[5:]


def test_fashion2_images_are_float_in_unit_range_with_a_channel():
    ds = build_fashion2(FASHION)
    assert ds.x_train.dtype == np.float32 and ds.input_shape == (28, 28, 1)
    assert ds.x_train.max() <= 1.0 and np.isclose(ds.x_train[5, 0, 0, 0], 1 / 255)


def test_fashion5_task_i_covers_classes_2i_and_2i_plus_1():
    ds = build_fashion5(FASHION)
    assert [t.name for t in ds.tasks] == ["t0", "t1", "t2", "t3", "t4"]
    eye = np.eye(10, dtype=np.float32)[FASHION.y_test]
    for i in range(5):
        assert np.array_equal(ds.y_test[f"t{i}"], eye[:, 2 * i:2 * i + 2])


@pytest.mark.parametrize("k,b", [(0, (0, 1, 2, 3, 4)), (2, (0, 1, 2, 5, 6)),
                                 (5, (5, 6, 7, 8, 9))])
def test_related_k_swaps_the_last_k_classes_of_a(k, b):
    assert related_classes(k) == ((0, 1, 2, 3, 4), b)
    ds = build_fashion_related(FASHION, k)
    assert ds.suite == f"fashion-related-{k}"
    assert np.array_equal(ds.y_train["b"],
                          np.eye(10, dtype=np.float32)[FASHION.y_train][:, list(b)])


def test_related_k_out_of_range_is_refused():
    with pytest.raises(ValueError, match=r"k must be an int in \[0, 5\], got 6"):
        related_classes(6)


def test_composite_places_digit_left_and_garment_right():
    ds = build_composite(MNIST, FASHION, n_train=20, n_test=10)
    assert ds.input_shape == (28, 56, 1)
    digit_class = np.rint(ds.x_train[:, 0, 0, 0] * 255).astype(int)
    garment_class = np.rint(ds.x_train[:, 0, 28, 0] * 255).astype(int)
    assert np.array_equal(digit_class, ds.y_train["digit"])
    assert np.array_equal(garment_class, ds.y_train["garment"])


def test_composite_labels_parity_and_category():
    ds = build_composite(MNIST, FASHION, n_train=30, n_test=10)
    assert np.array_equal(ds.y_train["parity"][:, 0], ds.y_train["digit"] % 2)
    expected = {0: 0, 2: 0, 3: 0, 4: 0, 6: 0, 1: 1, 5: 2, 7: 2, 9: 2, 8: 3}
    assert [expected[g] for g in ds.y_train["garment"]] == ds.y_train["category"].tolist()
    kinds = {t.name: (t.kind, t.n_outputs) for t in ds.tasks}
    assert kinds == {"digit": ("multiclass", 10), "parity": ("binary", 1),
                     "garment": ("multiclass", 10), "category": ("multiclass", 4)}


def test_composite_train_and_test_share_no_image():
    ds = build_composite(MNIST, FASHION, n_train=30, n_test=20)
    marks = lambda x: set(np.rint(x[:, 0, [1, 29], 0] * 255).astype(int).ravel())  # noqa: E731
    assert marks(ds.x_train) == {TRAIN_MARK} and marks(ds.x_test) == {TEST_MARK}


def test_composite_uses_each_garment_once_and_refuses_too_many_pairs():
    ds = build_composite(MNIST, FASHION, n_train=30, n_test=20)
    ids = np.rint(ds.x_train[:, 0, 30, 0] * 255).astype(int)
    assert len(set(ids.tolist())) == 30
    with pytest.raises(ValueError, match="31 train pairs need 31 distinct garments"):
        build_composite(MNIST, FASHION, n_train=31, n_test=20)


def test_composite3_has_three_tasks_and_pairing_is_seeded():
    a = build_composite(MNIST, FASHION, tasks=("digit", "parity", "garment"), n_train=10,
                        n_test=5, seed=1)
    b = build_composite(MNIST, FASHION, tasks=("digit", "parity", "garment"), n_train=10,
                        n_test=5, seed=1)
    assert a.task_names == ("digit", "parity", "garment")
    assert np.array_equal(a.x_train, b.x_train) and a.checksum == b.checksum


def test_synthetic_suite_loads_without_data_and_is_deterministic():
    a, b = load_suite("synthetic"), load_suite("synthetic")
    assert a.task_names == ("t0", "t1") and a.input_shape == (16, 16, 1)
    assert np.array_equal(a.x_train, b.x_train) and a.checksum == b.checksum


def test_synthetic_copy_task_copies_t0_and_noise_is_unrelated_to_images():
    ds = make_synthetic(2, copy_task=True, noise_task=True, n_train=2000)
    assert np.array_equal(ds.y_train["copy"], ds.y_train["t0"])
    noise = ds.y_train["noise"][:, 0]
    assert 0.45 < noise.mean() < 0.55
    assert abs(np.corrcoef(noise, ds.x_train.reshape(2000, -1).mean(1))[0, 1]) < 0.1


def test_synthetic_labels_are_planted_in_their_own_cell():
    ds = make_synthetic(2, n_train=64)
    hbar_t0 = ds.x_train[:, 4, 1:7, 0].min(axis=1) == 1.0   # t0: cell (0, 0), middle row 4
    vbar_t1 = ds.x_train[:, 1:7, 12, 0].min(axis=1) == 1.0  # t1: cell (0, 1), middle col 12
    assert np.array_equal(hbar_t0, ds.y_train["t0"][:, 0] == 1)
    assert np.array_equal(vbar_t1, ds.y_train["t1"] == 2)


def test_info_batch_is_deterministic_and_covers_every_class():
    ds = make_synthetic(2, noise_task=True, n_test=300)
    x, ys = ds.info_batch(8, seed=3)
    x2, _ = ds.info_batch(8, seed=3)
    assert x.shape == (8, 16, 16, 1) and np.array_equal(x, x2)
    assert set(ys["t1"].tolist()) == {0, 1, 2}
    assert set(ys["t0"][:, 0]) == {0.0, 1.0} and set(ys["noise"][:, 0]) == {0.0, 1.0}


def test_info_batch_larger_than_the_test_split_is_refused():
    with pytest.raises(ValueError, match=r"n must be in \[1, 10\]"):
        make_synthetic(n_test=10).info_batch(11)


def test_limits_cut_prefixes_and_change_the_checksum():
    full = load_suite("synthetic")
    cut = load_suite("synthetic", limit_train=100, limit_test=50)
    assert len(cut.x_train) == 100 and len(cut.x_test) == 50
    assert np.array_equal(cut.x_train, full.x_train[:100]) and cut.checksum != full.checksum


def test_unknown_suite_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown suite 'nope'; choose one of \['fashion2'"):
        load_suite("nope")
    assert "fashion-related-3" in list_suites() and "composite3" in list_suites()
