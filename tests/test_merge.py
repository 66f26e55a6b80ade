"""Merge stage: PAM plans from real (tiny, trained) networks, and the trivial producers."""
import pytest

from pam_tf.build import build_model, inherit_weights, output_dict
from pam_tf.chain import trace_model
from pam_tf.cost import keras_model_cost
from pam_tf.data.synthetic import make_synthetic
from pam_tf.config import InfoConfig, MergeConfig
from pam_tf.merge import check_heads_match_tasks, pam_plan
from pam_tf.methods import MergeInputs, get_method
from pam_tf.train import train_single_task


@pytest.fixture(scope="module")
def trained():
    ds = make_synthetic(2, n_train=768, n_test=256, copy_task=True)
    models = [train_single_task(ds, t.name, "lenet5", epochs=3, verbose=0)[0]
              for t in ds.tasks[:2]]
    return ds, models, [trace_model(m) for m in models]


def info_batch(ds, n=128):
    return ds.x_test[:n], {k: v[:n] for k, v in ds.y_test.items()}


def test_pam_plan_on_trained_networks_builds_and_costs_match(trained):
    ds, models, traced = trained
    x, y = info_batch(ds)
    plan = pam_plan(models, traced, ds.tasks[:2], x, y, MergeConfig(), progress=lambda s: None)
    assert plan.method == "pam"
    assert [l["layer"] for l in plan.meta["layers"]] == ["conv1", "conv2", "fc3", "fc4"]
    keys = {g.key for groups in plan.layers for g in groups}
    assert "t0.t1" in keys  # something is shared
    weights = inherit_weights(plan, traced)
    for combo in plan.combinations():
        sub = build_model(plan, weights, combo)
        assert keras_model_cost(sub)[0] == plan.cost(combo)
    full = build_model(plan, weights)
    assert set(output_dict(full, full(ds.x_test[:4]))) == {"t0", "t1"}


def test_one_network_merged_with_itself_for_one_task_is_almost_all_shared(trained):
    ds, models, traced = trained
    x, y = info_batch(ds)
    t0, copy = ds.tasks[0], ds.tasks[2]  # 'copy' has exactly t0's labels
    plan = pam_plan([models[0], models[0]], [traced[0], traced[0]], [t0, copy], x, y,
                    MergeConfig(), progress=lambda s: None)
    for groups in plan.layers:
        shared = sum(g.width for g in groups if len(g.owners) == 2)
        exclusive = sum(g.width for g in groups if len(g.owners) == 1)
        assert shared >= 4 * exclusive, [(g.key, g.width) for g in groups]


def test_pam_plan_is_deterministic(trained):
    ds, models, traced = trained
    x, y = info_batch(ds)
    a = pam_plan(models, traced, ds.tasks[:2], x, y, progress=lambda s: None)
    b = pam_plan(models, traced, ds.tasks[:2], x, y, progress=lambda s: None)
    assert a == b


def test_pam_plan_bytes_do_not_depend_on_the_clock(trained, monkeypatch):
    """Plan equality ignores meta, so compare the JSON and the manifest's fingerprint of it:
    a slower second run (each clock reading 1.5 s later) must give the same bytes."""
    import itertools
    import json

    import pam_tf.merge as merge_module
    from pam_tf.export.manifest import plan_fingerprint

    ds, models, traced = trained
    x, y = info_batch(ds)
    plans = []
    for step in (0.001, 1.5):
        ticks = itertools.count(0.0, step)
        monkeypatch.setattr(merge_module.time, "perf_counter", lambda: next(ticks))
        plans.append(pam_plan(models, traced, ds.tasks[:2], x, y, progress=lambda s: None))
    a, b = plans
    assert json.dumps(a.to_json(), sort_keys=True) == json.dumps(b.to_json(), sort_keys=True)
    assert plan_fingerprint(a) == plan_fingerprint(b)


def test_trivial_plans(trained):
    ds, models, traced = trained
    none = get_method("none").produce(MergeInputs(traced, ds.tasks[:2]))
    assert none.cost(["t0", "t1"]) == none.cost(["t0"]) + none.cost(["t1"])
    with pytest.raises(ValueError, match="unknown merge method 'mtx'"):
        get_method("mtx").produce(MergeInputs(traced, ds.tasks[:2]))


def test_head_that_does_not_fit_its_task_is_named(trained):
    ds, models, traced = trained
    with pytest.raises(ValueError, match="model 'x.keras' does not fit task 't1': its head has 2 "
                                         "sigmoid outputs, the task needs 3 softmax outputs"):
        check_heads_match_tasks([traced[0], traced[0]], ds.tasks[:2], ["a.keras", "x.keras"])
    with pytest.raises(ValueError, match="1 models for 2 tasks"):
        check_heads_match_tasks(traced[:1], ds.tasks[:2])


def test_layer_sigma2_follows_the_activation_scale():
    import numpy as np

    from pam_tf.merge import layer_sigma2

    acts = np.random.default_rng(0).random((32, 5))
    assert layer_sigma2(acts, 0.1, "absolute") == 0.1
    scaled = layer_sigma2(acts * 10, 0.1, "layer")
    assert np.isclose(scaled, 100 * layer_sigma2(acts, 0.1, "layer"))
    with pytest.raises(ValueError, match="sigma2_scale must be 'absolute' or 'layer'"):
        layer_sigma2(acts, 0.1, "global")


def test_pam_plan_with_layer_relative_sigma2_records_it(trained):
    ds, models, traced = trained
    x, y = info_batch(ds)
    plan = pam_plan(models, traced, ds.tasks[:2], x, y, info=InfoConfig(sigma2_scale="layer"),
                    progress=lambda s: None)
    assert all(l["sigma2"] > 0 for l in plan.meta["layers"])
    assert plan.meta["pam"]["sigma2_scale"] == "layer"
