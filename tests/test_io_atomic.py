"""pam_tf.io's atomic writes when the write itself fails (disk full, permission denied): the
earlier file keeps its bytes, no temporary file is left, and the error names the file."""
import errno
import json
import os

import numpy as np
import pytest

from pam_tf import io


def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _leftovers(folder):
    return sorted(n for n in os.listdir(folder) if n.startswith("."))


def test_disk_full_while_writing_json_keeps_the_earlier_file(tmp_path, monkeypatch):
    path = str(tmp_path / "plan.json")
    io.write_json(path, {"version": 1})
    before = open(path, "rb").read()
    monkeypatch.setattr(io.os, "fsync", _disk_full)  # the data did not reach the disk
    with pytest.raises(io.WriteError) as e:
        io.write_json(path, {"version": 2, "big": list(range(1000))})
    assert e.value.errno == errno.ENOSPC and e.value.filename == path
    assert str(e.value.strerror) == (f"could not write {path}: No space left on device "
                                     "(an earlier plan.json is unchanged)")
    assert open(path, "rb").read() == before and json.load(open(path)) == {"version": 1}
    assert _leftovers(tmp_path) == []


def test_permission_denied_creating_the_temporary_file_names_the_file(tmp_path, monkeypatch):
    """As root a read-only folder does not stop writes, so the refusal is injected where the
    kernel would give it: creating the temporary file next to the target."""
    path = str(tmp_path / "manifest.json")
    io.write_text(path, "old\n")

    def denied(*_args, **_kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(io.tempfile, "mkstemp", denied)
    with pytest.raises(io.WriteError, match=rf"could not write {path}: Permission denied"):
        io.write_text(path, "new\n")
    assert open(path).read() == "old\n"


def test_disk_full_midway_through_weights_keeps_the_earlier_npz(tmp_path, monkeypatch):
    path = str(tmp_path / "weights.npz")
    io.save_npz(path, {"w": np.arange(4.0)})
    real = np.savez_compressed

    def half_then_full(f, **arrays):
        real(f, **arrays)  # bytes went to the temporary file, then the disk filled up
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.np, "savez_compressed", half_then_full)
    with pytest.raises(io.WriteError, match=rf"could not write {path}: No space left on device"):
        io.save_npz(path, {"w": np.arange(1000.0)})
    np.testing.assert_array_equal(io.load_npz(path)["w"], np.arange(4.0))
    assert _leftovers(tmp_path) == []


def test_failed_rename_keeps_the_earlier_file(tmp_path, monkeypatch):
    path = str(tmp_path / "stages.json")
    io.write_json(path, {"a": 1})
    monkeypatch.setattr(io.os, "replace", lambda *_a: _disk_full())
    with pytest.raises(io.WriteError, match="stages.json"):
        io.write_json(path, {"a": 2})
    assert json.load(open(path)) == {"a": 1} and _leftovers(tmp_path) == []


def test_write_error_is_still_an_oserror():
    """Callers that catch OSError keep working."""
    assert issubclass(io.WriteError, OSError)
