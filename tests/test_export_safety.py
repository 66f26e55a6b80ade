"""Nothing half-done: refused inputs write nothing, interrupted exports publish nothing."""
import json

import pytest

from pam_tf.export import ManifestError, export_all, load_manifest
from pam_tf.export import convert as export_convert
from pam_tf.plan import PlanError
from tests.export_fixtures import held_out, pam2, tasks_of, tree


@pytest.fixture
def earlier(tmp_path):
    """An export folder holding an earlier export's manifest and file."""
    (tmp_path / "manifest.json").write_text('{"version": 1, "earlier": true}\n')
    (tmp_path / "pam__a.tflite").write_bytes(b"earlier file")
    return tmp_path


def test_mismatched_weights_are_refused_before_anything_is_written(earlier):
    plan, weights = pam2()
    weights["fc3__a/kernel"] = weights["fc3__a/kernel"][:, :0]
    before = tree(earlier)
    with pytest.raises(PlanError, match=r"'fc3__a/kernel' has shape"):
        export_all(plan, weights, str(earlier), progress=None)
    assert tree(earlier) == before
    with pytest.raises(PlanError, match="missing"):
        export_all(plan, {}, str(earlier / "new"), progress=None)
    assert not (earlier / "new").exists()


def test_test_images_of_the_wrong_shape_are_refused_before_writing(tmp_path):
    plan, weights = pam2()
    x, y = held_out(plan)
    with pytest.raises(ValueError, match=r"x_test has shape \(96, 12, 12\)"):
        export_all(plan, weights, str(tmp_path / "out"), tasks=tasks_of(plan), x_test=x[..., 0],
                   y_test=y, progress=None)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("error", [RuntimeError("converter crashed"), KeyboardInterrupt()])
def test_interrupted_export_leaves_no_manifest_no_partial_files_and_the_old_one(
        earlier, monkeypatch, error):
    plan, weights = pam2()
    before = tree(earlier)
    calls = []
    real = export_convert.convert_keras_model

    def flaky(model, quantize="float32"):
        calls.append(model.name)
        if len(calls) == 2:
            raise error
        return real(model, quantize)

    monkeypatch.setattr(export_convert, "convert_keras_model", flaky)
    with pytest.raises(type(error)):
        export_all(plan, weights, str(earlier), progress=None)
    assert len(calls) == 2
    assert tree(earlier) == before  # no new file, no scratch folder, earlier manifest intact


def test_load_manifest_refuses_a_file_replaced_after_export(tmp_path):
    plan, weights = pam2()
    export_all(plan, weights, str(tmp_path), combinations=[["a"]], progress=None,
               layout="split")
    load_manifest(str(tmp_path))
    data = (tmp_path / "pam__a.tflite").read_bytes()
    (tmp_path / "pam__a.tflite").write_bytes(data[:-4] + b"\0\0\0\1")
    with pytest.raises(ManifestError, match="'pam__a.tflite' does not match its sha256"):
        load_manifest(str(tmp_path))
    m = json.loads((tmp_path / "manifest.json").read_text())
    m["version"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="manifest version 99 is not supported"):
        load_manifest(str(tmp_path), verify_files=False)


def test_failed_export_into_a_new_folder_leaves_no_folder(tmp_path, monkeypatch):
    plan, weights = pam2()

    def broken(model, quantize="float32"):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(export_convert, "convert_keras_model", broken)
    with pytest.raises(RuntimeError, match="converter crashed"):
        export_all(plan, weights, str(tmp_path / "new" / "out"), progress=None)
    assert not (tmp_path / "new").exists()


def test_scratch_left_by_a_killed_export_is_removed_by_the_next(tmp_path):
    from tests.export_fixtures import pam2

    plan, weights = pam2()[:2]
    out = tmp_path / "out"
    stale = out / ".export-tmp-killed"
    stale.mkdir(parents=True)
    (stale / "half.tflite").write_bytes(b"partial")
    export_all(plan, weights, str(out), combinations=[("a",)], multi_signature=False,
               progress=None)
    assert not stale.exists()
    assert load_manifest(str(out / "manifest.json"))["combinations"][0]["tasks"] == ["a"]
