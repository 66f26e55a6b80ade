"""Export building blocks: names, combinations, output mapping, flatbuffer cost, fused layout."""
import os

import numpy as np
import pytest

from pam_tf.build import build_model, output_dict
from pam_tf.compat import keras
from pam_tf.export import ExportError, export_all, flatbuffer_cost
from pam_tf.export.convert import convert_keras_model, file_name, normalise_combinations
from pam_tf.export.errors import CostMismatchError
from pam_tf.export.fused import build_fused_model, fused_cost
from pam_tf.export.runtime import map_outputs
from pam_tf.plan import PlanError
from tests.export_fixtures import pam2, pam3


def test_file_names_explain_method_combination_precision_and_layout():
    assert file_name("pam", ("a",)) == "pam__a.tflite"
    assert file_name("pam", ("a", "b")) == "pam__a+b.tflite"
    assert file_name("none", ("b",), "float16") == "none__b.f16.tflite"
    assert file_name("shared", ("a", "b"), "int8") == "shared__a+b.int8.tflite"
    assert file_name("pam", ("a", "b"), layout="fused") == "pam__a+b.fused.tflite"
    with pytest.raises(ValueError, match="quantize='int4' is not one of"):
        file_name("pam", ("a",), "int4")


def test_user_combinations_are_put_in_plan_order_once_and_checked():
    plan, _ = pam3()
    assert normalise_combinations(plan, [["c", "a"], ("a", "c"), "b"]) == [("b",), ("a", "c")]
    assert len(normalise_combinations(plan, None)) == 7
    with pytest.raises(PlanError, match=r"unknown task\(s\) \['z'\]"):
        normalise_combinations(plan, [["a", "z"]])
    with pytest.raises(PlanError, match="combinations is empty"):
        normalise_combinations(plan, [])


def test_signature_outputs_are_matched_by_name_never_by_position():
    a, b = np.zeros((1, 3)), np.ones((1, 3))
    assert map_outputs({"b": b, "a": a}, ["a", "b"], "f")["a"] is a
    assert map_outputs({"output_1": b, "output_0": a}, ["a", "b"], "f")["b"] is b
    with pytest.raises(ExportError, match=r"f: signature outputs \['dense_1', 'x'\] cannot be "
                                          r"matched to the tasks \['a', 'b'\]"):
        map_outputs({"x": a, "dense_1": b}, ["a", "b"], "f")


def test_cost_mismatch_names_the_file_and_both_counts():
    counted = flatbuffer_cost.FlatCost(macs=10, flops=19)
    flatbuffer_cost.check(counted, 10, 19, "f.tflite")
    with pytest.raises(CostMismatchError, match=r"f\.tflite: the flatbuffer counts 10 MACs / 19 "
                                                r"FLOPs, the plan says 12 MACs / 23 FLOPs"):
        flatbuffer_cost.check(counted, 12, 23, "f.tflite")


def test_flatbuffer_counter_prices_depthwise_pointwise_and_dense_ops():
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 3))
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2)(i)  # 6×6×6 outputs, 9 MACs each
    x = keras.layers.Conv2D(4, 1)(x)                            # 6×6×4 outputs, 6 MACs each
    x = keras.layers.Flatten()(x)
    o = keras.layers.Dense(2, name="a")(x)                      # 2 outputs, 144 MACs each
    counted = flatbuffer_cost.count(convert_keras_model(keras.Model(i, o, name="dw")))
    assert [op.kind for op in counted.ops] == ["DEPTHWISE_CONV_2D", "CONV_2D",
                                               "FULLY_CONNECTED"]
    assert counted.macs == 9 * 216 + 6 * 144 + 144 * 2
    assert counted.flops == 17 * 216 + 11 * 144 + 287 * 2


def test_fused_layout_computes_the_same_function_with_at_least_the_plans_macs():
    plan, weights = pam3()
    x = np.random.default_rng(0).random((4, *plan.chain.input_shape), dtype=np.float32)
    extra = 0
    for combo in plan.combinations():
        split = build_model(plan, weights, combo, name="split")
        fused = build_fused_model(plan, weights, combo, name="fused")
        a, b = output_dict(split, split(x)), output_dict(fused, fused(x))
        for t in combo:
            np.testing.assert_allclose(b[t], a[t], atol=1e-5)
        assert fused_cost(plan, combo).macs >= plan.cost(combo).macs
        extra += fused_cost(plan, combo).macs - plan.cost(combo).macs
        assert len([l for l in fused.layers if "__fused" in l.name and
                    type(l).__name__ in ("Conv2D", "Dense")]) == len(plan.layers)
    assert extra > 0


def test_fused_export_counts_the_fused_macs_and_passes_parity(tmp_path):
    plan, weights = pam2()
    manifest = export_all(plan, weights, str(tmp_path), combinations=[["a", "b"]],
                          layout="fused", multi_signature=False, progress=None)
    (entry,) = manifest["combinations"]
    assert entry["files"] == ["pam__a+b.fused.tflite"]
    assert entry["macs"] == plan.cost(["a", "b"]).macs
    assert entry["flatbuffer_macs"] == fused_cost(plan, ["a", "b"]).macs > entry["macs"]
    assert entry["max_abs_diff"] <= 1e-5
    assert os.path.isfile(tmp_path / entry["files"][0])
