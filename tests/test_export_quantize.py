"""float16 and dynamic-range int8 exports: weights really stored narrow, parity within tolerance."""
import os

import pytest

from pam_tf.export import ParityError, export_all, flatbuffer_cost
from tests.export_fixtures import pam2, tree

WIDE = (4, 8, 64, 32)  # fc kernels of ≥ 1024 elements, so int8 quantises something


@pytest.mark.parametrize("quantize, suffix, stored, tolerance",
                         [("float16", ".f16", "FLOAT16", 1e-2), ("int8", ".int8", "INT8", 5e-2)])
def test_quantised_export_stores_narrow_weights_and_passes_its_tolerance(
        tmp_path, quantize, suffix, stored, tolerance):
    plan, weights = pam2(WIDE, scale=0.05)  # Glorot-sized weights, like a trained net's
    manifest = export_all(plan, weights, str(tmp_path), combinations=[["a", "b"]],
                          quantize=quantize, multi_signature=False, progress=None,
                          layout="split")
    (entry,) = manifest["combinations"]
    assert entry["files"] == [f"pam__a+b{suffix}.tflite"]
    info = manifest["files"][entry["files"][0]]
    assert stored in info["weight_types"]
    assert manifest["quantize"] == quantize and manifest["tolerance"] == tolerance
    assert 0 < entry["max_abs_diff"] <= tolerance
    with open(os.path.join(tmp_path, entry["files"][0]), "rb") as f:
        assert flatbuffer_cost.count(f.read()).macs == plan.cost(["a", "b"]).macs


def test_parity_above_tolerance_fails_naming_the_file_and_writes_nothing(tmp_path):
    plan, weights = pam2(WIDE)
    with pytest.raises(ParityError, match=r"pam__a\.f16\.tflite: max \|TFLite - Keras\| = "
                                          r"\S+ exceeds the float16 tolerance 1e-12"):
        export_all(plan, weights, str(tmp_path), combinations=[["a"]], quantize="float16",
                   tolerance=1e-12, multi_signature=False, progress=None, layout="split")
    assert tree(tmp_path) == {}
