"""Export of merged plans: one file per combination, loadable, exact cost, parity, accuracy."""
import os

import numpy as np
import pytest

from pam_tf.build import build_model
from pam_tf.export import export_all, flatbuffer_cost, load_manifest, runtime
from pam_tf.export import convert as export_convert
from pam_tf.export.convert import keras_outputs
from tests.export_fixtures import held_out, pam2, pam3, tasks_of


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    plan, weights = pam2()
    x, y = held_out(plan)
    out = str(tmp_path_factory.mktemp("pam2"))
    manifest = export_all(plan, weights, out, tasks=tasks_of(plan), x_test=x, y_test=y,
                          progress=None, layout="split")
    return plan, weights, out, manifest


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    plan, weights = pam3()
    out = str(tmp_path_factory.mktemp("pam3"))
    manifest = export_all(plan, weights, out, multi_signature=False, progress=None,
                          layout="split")
    return plan, weights, out, manifest


@pytest.fixture(params=["two", "three"])
def exported(request):
    return request.getfixturevalue(request.param)


def test_every_combination_gets_one_self_explaining_file(exported):
    plan, _, out, manifest = exported
    assert [tuple(c["tasks"]) for c in manifest["combinations"]] == plan.combinations()
    for c in manifest["combinations"]:
        assert c["files"] == [f"pam__{'+'.join(c['tasks'])}.tflite"]
    assert sorted(f for f in os.listdir(out) if f.endswith(".tflite") and "multi" not in f) == \
        sorted(manifest["files"])


def test_every_file_loads_in_litert_and_outputs_its_tasks_by_name(exported):
    _, _, out, manifest = exported
    for name, info in manifest["files"].items():
        interp = runtime.load_interpreter(os.path.join(out, name))
        assert sorted(interp.get_signature_list()["serving_default"]["outputs"]) == \
            sorted(info["tasks"])


def test_litert_matches_keras_within_float32_tolerance_on_fresh_inputs(exported):
    plan, weights, out, manifest = exported
    x = np.random.default_rng(123).random((8, *plan.chain.input_shape), dtype=np.float32)
    for c in manifest["combinations"]:
        assert c["max_abs_diff"] <= manifest["tolerance"] == 1e-5
        got = runtime.run(runtime.load_interpreter(os.path.join(out, c["files"][0])), x,
                          c["tasks"])
        want = keras_outputs(build_model(plan, weights, c["tasks"], name="ref"), x)
        for t in c["tasks"]:
            np.testing.assert_allclose(got[t], want[t], atol=1e-5)


def test_flatbuffer_macs_and_flops_equal_the_plan_for_every_combination(exported):
    plan, _, out, manifest = exported
    for c in manifest["combinations"]:
        with open(os.path.join(out, c["files"][0]), "rb") as f:
            counted = flatbuffer_cost.count(f.read())
        cost = plan.cost(c["tasks"])
        assert (counted.macs, counted.flops) == (cost.macs, cost.flops), c["tasks"]
        assert (c["macs"], c["flops"], c["params"]) == (cost.macs, cost.flops, cost.params)
        assert (c["flatbuffer_macs"], c["flatbuffer_flops"]) == (cost.macs, cost.flops)


def test_three_tasks_give_seven_combinations_with_pair_groups(three):
    plan, _, _, manifest = three
    assert len(manifest["combinations"]) == 7
    assert any(g.key == "a.b" for g in plan.layers[1])  # a proper-subset group is exported


def test_written_manifest_loads_validated_and_equals_the_returned_one(two):
    _, _, out, manifest = two
    assert load_manifest(out) == load_manifest(os.path.join(out, "manifest.json")) == manifest
    assert not [f for f in os.listdir(out) if f.startswith(".")]  # no scratch left behind


def test_multi_signature_file_stores_shared_weights_once(two):
    plan, _, out, manifest = two
    ms = manifest["multi_signature"]
    assert ms["file"] == "pam__multi-signature.tflite"
    assert ms["sum_of_separate_bytes"] == sum(i["bytes"] for i in manifest["files"].values())
    assert ms["bytes"] == os.path.getsize(os.path.join(out, ms["file"]))
    assert ms["bytes"] < 0.75 * ms["sum_of_separate_bytes"]
    assert ms["stored_weight_elements"] <= ms["model_weight_elements"]


def test_each_signature_of_the_multi_signature_file_matches_keras(two):
    plan, weights, out, manifest = two
    interp = runtime.load_interpreter(os.path.join(out, manifest["multi_signature"]["file"]))
    assert sorted(interp.get_signature_list()) == ["a", "a+b", "b"]
    x = np.random.default_rng(5).random((8, *plan.chain.input_shape), dtype=np.float32)
    with open(os.path.join(out, manifest["multi_signature"]["file"]), "rb") as f:
        data = f.read()
    for combo in plan.combinations():
        key = "+".join(combo)
        got = runtime.run(interp, x, combo, signature=key)
        want = keras_outputs(build_model(plan, weights, combo, name="ref"), x)
        for t in combo:
            np.testing.assert_allclose(got[t], want[t], atol=1e-5)
        assert flatbuffer_cost.count(data, key).macs == plan.cost(combo).macs


def test_manifest_accuracy_is_measured_on_the_tflite_files(two):
    plan, _, out, manifest = two
    x, y = held_out(plan)
    for c in manifest["combinations"]:
        got = runtime.run(runtime.load_interpreter(os.path.join(out, c["files"][0])), x,
                          c["tasks"])
        for t in c["tasks"]:
            assert c["accuracy"][t] == float(np.mean((got[t] >= 0.5) == (y[t] >= 0.5)))


def test_accuracy_comes_from_the_file_not_from_keras(tmp_path, monkeypatch):
    """The converted model is perturbed (heads forced to 1); Keras on the plan's weights is not.

    Labels are Keras' own predictions, so Keras would score 1.0; the manifest must report what
    the files compute instead.
    """
    plan, weights = pam2()
    x, _ = held_out(plan)
    keras_pred = keras_outputs(build_model(plan, weights, name="ref"), x)
    y = {t: (keras_pred[t] >= 0.5).astype(np.float32) for t in plan.tasks}
    original = export_convert.combination_model

    def perturbed(plan_, weights_, combo, layout="split"):
        model = original(plan_, weights_, combo, layout)
        for t in combo:
            k, b = model.get_layer(t).get_weights()
            model.get_layer(t).set_weights([k, b + 50.0])
        return model

    monkeypatch.setattr(export_convert, "combination_model", perturbed)
    manifest = export_all(plan, weights, str(tmp_path), tasks=tasks_of(plan), x_test=x,
                          y_test=y, combinations=[["a", "b"]], multi_signature=False,
                          progress=None, layout="split")
    acc = manifest["combinations"][0]["accuracy"]
    for t in plan.tasks:
        assert acc[t] == pytest.approx(float(np.mean(y[t] == 1.0)))
        assert acc[t] < 1.0
