"""Atomic file output and checksums: a crash or Ctrl-C never leaves a half-written result."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from typing import Iterator

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


class WriteError(OSError):
    """Writing a result failed (disk full, permission denied, ...). The message names the file
    and says that the earlier version, if any, is unchanged: the write never reached it."""


def _write_error(path: str, e: OSError) -> WriteError:
    why = e.strerror or str(e)
    return WriteError(e.errno, f"could not write {path}: {why} (an earlier {os.path.basename(path)}"
                               " is unchanged)", path)


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path next to `path`; on success it replaces `path` in one rename.

    Any OSError on the way (creating the temporary file, writing it, the rename) becomes a
    :class:`WriteError` naming `path`; the temporary file is removed and `path` keeps its old
    bytes, so a full disk or a read-only folder never leaves a half-written result."""
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=os.path.splitext(base)[1], dir=folder)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results should read like any file
    except OSError as e:
        raise _write_error(path, e) from e
    try:
        yield tmp
        os.replace(tmp, path)
    except WriteError:
        raise
    except OSError as e:
        raise _write_error(path, e) from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: str | os.PathLike, text: str, *, newline: str | None = None) -> None:
    """Write text atomically (UTF-8; `newline` as for :func:`open`, ``""`` writes ``\n`` as is)."""
    with atomic_path(os.fspath(path)) as tmp:
        with open(tmp, "w", encoding="utf-8", newline=newline) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def write_bytes(path: str, data: bytes) -> None:
    """Write bytes atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_json(path: str, obj) -> None:
    """Write JSON (sorted keys, indented) atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str, error: type[Exception] = ValueError, what: str = "file"):
    """Parse a JSON file; a missing or malformed file raises `error` naming the path."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except json.JSONDecodeError as e:
        raise error(f"{path}: not valid JSON ({e})") from None


def save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Save arrays to a compressed .npz atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())


def load_npz(path: str) -> dict[str, np.ndarray]:
    """Load every array of an .npz into memory, with the file named in any error."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npz weights file ({e})") from e


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
