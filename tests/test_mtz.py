"""Multi-Task Zipping (B2): its numerics, its matching, the plans it makes, and the main job."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pam_tf.build import build_model, inherit_weights, output_dict
from pam_tf.chain import trace_model
from pam_tf.config import MtzConfig
from pam_tf.cost import keras_model_cost
from pam_tf.mtz import zip_networks
from pam_tf.mtz.linalg import (damp, greedy_match, layer_hessian, merged_weights, pair_costs,
                               patches)
from pam_tf.mtz.state import ZipState
from pam_tf.tasks import Task
from tests.export_fixtures import pam3
from tests.tiny_models import images, tiny_cnn
from tests.tiny_models import synthetic_model_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tasks_for(n):
    return [Task(name, "binary", 3, ("x", "y", "z")) for name in "abc"[:n]]


def train_data(n_images=64, n_tasks=2, seed=0):
    x = images(n_images, seed=seed)
    rng = np.random.default_rng(seed)
    return x, {t.name: (rng.random((n_images, 3)) > 0.5).astype(np.float32)
               for t in tasks_for(n_tasks)}


def no_retraining(**kw):
    return MtzConfig(**{"mtz_retrain_steps": 0, "mtz_samples": 64, **kw})


def outputs(net, x):
    model = build_model(net.plan, net.weights)
    return output_dict(model, model(x))


# ----- the two networks' function ------------------------------------------------------------
def test_two_identical_networks_zip_at_zero_cost_into_exactly_the_original_function():
    model = tiny_cnn(1)
    traced = [trace_model(model, "a"), trace_model(model, "b")]
    x, ys = train_data()
    lines = []
    net = zip_networks(traced, tasks_for(2), (x, ys), no_retraining(), seed=0,
                       progress=lines.append)
    assert [[g.key for g in groups] for groups in net.plan.layers] == [["a.b"]] * 4
    assert net.plan.widths() == [4, 6, 10, 8]  # one trunk as wide as one network, two heads
    for layer in net.plan.meta["mtz"]["layers"]:
        (zipped,) = layer["zips"]
        assert zipped["pairs"] == layer["widths"]
        assert zipped["cost_max"] < 1e-9, layer
    expected = model.predict(x, verbose=0)
    for task, y in outputs(net, x).items():
        np.testing.assert_allclose(y, expected, atol=1e-6, err_msg=task)
    assert any("b into a: 4 pairs" in line for line in lines)


def test_different_networks_zip_at_a_positive_cost_and_change_the_function():
    traced = [trace_model(tiny_cnn(1), "a"), trace_model(tiny_cnn(2), "b")]
    x, ys = train_data()
    net = zip_networks(traced, tasks_for(2), (x, ys), no_retraining(), seed=0,
                       progress=lambda _: None)
    assert all(layer["zips"][0]["cost_total"] > 1e-6 for layer in net.plan.meta["mtz"]["layers"])
    assert not np.allclose(outputs(net, x)["b"], tiny_cnn(2).predict(x, verbose=0), atol=1e-3)


# ----- numerics --------------------------------------------------------------------------------
def test_greedy_matching_is_one_to_one_and_takes_the_cheapest_free_pair_each_time():
    costs = np.random.default_rng(0).random((7, 5))
    rows, cols = greedy_match(costs, 4)
    assert len(rows) == len(set(rows.tolist())) == 4
    assert len(cols) == len(set(cols.tolist())) == 4
    free = np.ones_like(costs, bool)
    for r, c in zip(rows, cols):
        cheapest = np.unravel_index(np.argmin(np.where(free, costs, np.inf)), costs.shape)
        assert (r, c) == cheapest
        free[r, :] = free[:, c] = False
    with pytest.raises(ValueError, match="cannot match 6 pairs between 7 and 5 neurons"):
        greedy_match(costs, 6)


def test_greedy_matching_of_equal_costs_is_still_one_to_one():
    rows, cols = greedy_match(np.zeros((4, 4)), 4)
    assert sorted(rows.tolist()) == sorted(cols.tolist()) == [0, 1, 2, 3]


def test_merged_weights_agree_with_a_direct_least_squares_solution():
    rng = np.random.default_rng(1)
    d = 6
    xa = np.concatenate([rng.normal(size=(40, d)), np.ones((40, 1))], axis=1)
    xb = np.concatenate([rng.normal(1.0, 2.0, size=(25, d)), np.ones((25, 1))], axis=1)
    h_a, h_b = xa.T @ xa / len(xa), xb.T @ xb / len(xb)
    a, b = rng.normal(size=(3, d + 1)), rng.normal(size=(3, d + 1))
    merged = merged_weights(h_a, h_b, a, b)
    # min_w ½ mean (xa·(w − a))² + ½ mean (xb·(w − b))²: one stacked least-squares problem
    stacked = np.concatenate([xa / np.sqrt(len(xa)), xb / np.sqrt(len(xb))])
    for p in range(3):
        target = np.concatenate([xa @ a[p] / np.sqrt(len(xa)), xb @ b[p] / np.sqrt(len(xb))])
        direct, *_ = np.linalg.lstsq(stacked, target, rcond=None)
        np.testing.assert_allclose(merged[p], direct, rtol=1e-9, atol=1e-9)
    # and ΔE is that problem's minimum, ½ δᵀ (H_A⁻¹ + H_B⁻¹)⁻¹ δ
    costs = pair_costs(h_a, h_b, a, b)
    for p in range(3):
        w = merged[p]
        minimum = 0.5 * (w - a[p]) @ h_a @ (w - a[p]) + 0.5 * (w - b[p]) @ h_b @ (w - b[p])
        delta = a[p] - b[p]
        paper = 0.5 * delta @ np.linalg.inv(np.linalg.inv(h_a) + np.linalg.inv(h_b)) @ delta
        assert costs[p, p] == pytest.approx(minimum, rel=1e-9)
        assert costs[p, p] == pytest.approx(paper, rel=1e-9)


def test_conv_hessian_comes_from_patches_that_reproduce_the_conv():
    from pam_tf.compat import tf

    x = images(5, shape=(9, 9, 3), seed=2)
    kernel = np.random.default_rng(3).normal(size=(3, 3, 3, 4)).astype(np.float32)
    for padding, strides in (("valid", (1, 1)), ("same", (2, 2))):
        conv = tf.nn.conv2d(x, kernel, strides=[1, *strides, 1], padding=padding.upper())
        flat = patches(x, (3, 3), strides, padding) @ kernel.reshape(-1, 4)
        np.testing.assert_allclose(flat, conv.numpy().reshape(-1, 4), atol=1e-4)
        h = layer_hessian(x, "conv", kernel_size=(3, 3), strides=strides, padding=padding,
                          chunk=2)
        tilde = np.concatenate([patches(x, (3, 3), strides, padding), np.ones((len(flat), 1))],
                               axis=1).astype(np.float64)
        np.testing.assert_allclose(h, tilde.T @ tilde / len(tilde), rtol=1e-10)
        assert h[-1, -1] == 1.0  # the bias term


def test_a_singular_hessian_is_damped_and_says_so():
    x = np.concatenate([np.random.default_rng(0).normal(size=(50, 3)), np.zeros((50, 2))], 1)
    h = layer_hessian(x, "dense")
    damped, info = damp(h, 1e-6)
    assert info.amount > 0 and info.weak == 2
    assert "near-singular Hessian (2 of 6 eigenvalues" in info.describe()
    assert np.linalg.eigvalsh(damped)[0] > 0
    same, none = damp(np.eye(3), 1e-6)
    assert none.amount == 0 and np.array_equal(same, np.eye(3))


def test_a_zip_with_two_different_hessians_writes_the_merged_weights_of_each_pair():
    from pam_tf.chain import check_same_chain
    from pam_tf.mtz import zip_layer
    from pam_tf.plan import no_merge_plan

    traced = [trace_model(tiny_cnn(1), "a"), trace_model(tiny_cnn(2), "b")]
    plan = no_merge_plan(check_same_chain(traced), ["a", "b"], [3, 3], ["sigmoid"] * 2)
    state = ZipState.from_plan(plan, inherit_weights(plan, traced))
    h_a, h_b = (layer_hessian(images(8, seed=s), "conv", kernel_size=(3, 3)) for s in (1, 2))
    record = zip_layer(state, 0, [0], 1, 3, h_a, h_b, 1e-6, progress=lambda _: None)
    assert record["pairs"] == 3 and state.kernels[0].shape[2] == 4 + 1  # 3 of b's 4 merged

    def vector(model, neuron):
        kernel, bias = traced[model].weights[0]
        return np.append(kernel[..., neuron].ravel(), bias[neuron])
    index = {tuple(s): i for i, s in enumerate(state.ids[0])}
    for (ma, i), (mb, j) in record["matched"]:
        expected = merged_weights(h_a, h_b, vector(ma, i)[None], vector(mb, j)[None])[0]
        col = index[(ma, i)]
        got = np.append(state.kernels[0][:, :, col].ravel(), state.biases[0][col])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        assert (mb, j) not in index  # b's neuron lives on only as the merged one
        assert state.owners[0][col].tolist() == [True, True]


def test_zipping_two_512_neuron_dense_layers_takes_seconds():
    import time

    from pam_tf.chain import check_same_chain
    from pam_tf.mtz import zip_layer
    from pam_tf.plan import no_merge_plan

    widths = (4, 6, 400, 512)
    traced = [trace_model(tiny_cnn(s, widths=widths), name) for s, name in ((1, "a"), (2, "b"))]
    plan = no_merge_plan(check_same_chain(traced), ["a", "b"], [3, 3], ["sigmoid"] * 2)
    state = ZipState.from_plan(plan, inherit_weights(plan, traced))
    x = np.maximum(np.random.default_rng(0).normal(size=(1000, 800)), 0)  # fc4 reads 2 x 400
    h = layer_hessian(x, "dense")
    start = time.perf_counter()
    record = zip_layer(state, 3, [0], 1, 512, h, h, 1e-6, progress=lambda _: None)
    seconds = time.perf_counter() - start
    assert record["pairs"] == 512 and state.kernels[3].shape == (1, 800, 512)
    assert seconds < 20, f"zipping 2 x 512 neurons took {seconds:.1f} s"


# ----- plans -----------------------------------------------------------------------------------
def test_dense_form_gives_back_the_weights_of_a_plan_with_many_groups():
    plan, weights = pam3()
    back = ZipState.from_plan(plan, weights).weights_for(plan)
    assert set(back) == set(weights)
    for key in weights:
        np.testing.assert_array_equal(back[key], weights[key], err_msg=key)


def partly_merged(degrees):
    traced = [trace_model(tiny_cnn(1), "a"), trace_model(tiny_cnn(2), "b")]
    x, ys = train_data()
    return zip_networks(traced, tasks_for(2), (x, ys),
                        no_retraining(mtz_merge=tuple(str(d) for d in degrees)), seed=0,
                        progress=lambda _: None)


def groups(net):
    return [{g.key: g.width for g in layer} for layer in net.plan.layers]


@pytest.mark.parametrize("degrees", [(1, 0.5, 0, 0), (1, 0.5, 0.5, 1), (0, 1, 0.5, 0)])
def test_partly_merged_plan_costs_equal_the_costs_counted_on_its_built_model(degrees):
    net = partly_merged(degrees)
    for combo in net.plan.combinations():
        model = build_model(net.plan, net.weights, combo)
        assert keras_model_cost(model)[0] == net.plan.cost(combo), combo


def test_a_partly_merged_layer_stays_partly_shared_only_below_unzipped_layers():
    # conv2 half zipped and nothing zipped above: its exclusive halves stay exclusive
    assert groups(partly_merged((1, 0.5, 0, 0)))[:2] == [{"a.b": 4}, {"a.b": 3, "a": 3, "b": 3}]
    # zipped neurons of fc3 read both halves of conv2, so all of conv2 runs for either task
    shared = partly_merged((1, 0.5, 0.5, 1))
    assert groups(shared) == [{"a.b": 4}, {"a.b": 9}, {"a.b": 15}, {"a.b": 8}]
    costs = {c: shared.plan.cost(c).flops for c in shared.plan.combinations()}
    assert costs[("a",)] == costs[("b",)] < costs[("a", "b")]  # the heads only differ


def test_zipping_the_same_network_is_exact_with_partial_degrees_too():
    model = tiny_cnn(1)
    traced = [trace_model(model, "a"), trace_model(model, "b")]
    x, ys = train_data()
    net = zip_networks(traced, tasks_for(2), (x, ys), no_retraining(mtz_merge=("0.5",)),
                       seed=0, progress=lambda _: None)
    for y in outputs(net, x).values():
        np.testing.assert_allclose(y, model.predict(x, verbose=0), atol=1e-6)


def test_three_networks_are_zipped_in_one_at_a_time_into_one_trunk():
    traced = [trace_model(tiny_cnn(s), name) for s, name in zip((1, 2, 3), "abc")]
    x, ys = train_data(n_tasks=3)
    net = zip_networks(traced, tasks_for(3), (x, ys), no_retraining(), seed=0,
                       progress=lambda _: None)
    assert groups(net) == [{"a.b.c": 4}, {"a.b.c": 6}, {"a.b.c": 10}, {"a.b.c": 8}]
    first = net.plan.meta["mtz"]["layers"][0]["zips"]
    assert [(z["task"], z["into"]) for z in first] == [("b", "a"), ("c", "a+b")]
    assert net.plan.meta["mtz"]["order"] == ["a", "b", "c"]


def test_retraining_changes_the_zipped_weights_and_is_deterministic():
    traced = [trace_model(tiny_cnn(1), "a"), trace_model(tiny_cnn(2), "b")]
    x, ys = train_data()
    config = MtzConfig(mtz_retrain_steps=3, mtz_samples=32, mtz_batch_size=16)
    runs = [zip_networks(traced, tasks_for(2), (x, ys), config, seed=4, progress=lambda _: None)
            for _ in range(2)]
    still = zip_networks(traced, tasks_for(2), (x, ys), no_retraining(mtz_samples=32), seed=4,
                         progress=lambda _: None)
    assert runs[0].plan == runs[1].plan == still.plan
    for key in runs[0].weights:
        np.testing.assert_array_equal(runs[0].weights[key], runs[1].weights[key])
    assert any(not np.array_equal(runs[0].weights[k], still.weights[k]) for k in still.weights)


def test_bad_merge_degrees_name_the_layers_and_what_was_expected():
    traced = [trace_model(tiny_cnn(1), "a"), trace_model(tiny_cnn(2), "b")]
    with pytest.raises(ValueError, match=r"--mtz_merge has 2 values, the networks have 4 hidden "
                                         r"layers \(conv1, conv2, fc3, fc4\)"):
        zip_networks(traced, tasks_for(2), train_data(), no_retraining(mtz_merge=("1", "1")))
    with pytest.raises(ValueError, match="--mtz_merge: 1.5 is outside"):
        MtzConfig(mtz_merge=("1.5",))
    with pytest.raises(ValueError, match="'half' is not a number"):
        MtzConfig(mtz_merge="half")
    with pytest.raises(ValueError, match="MTZ zips at least two networks"):
        zip_networks(traced[:1], tasks_for(1), train_data(n_tasks=1), no_retraining())


# ----- the main job ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic_models(tmp_path_factory):
    return list(synthetic_model_files(tmp_path_factory.mktemp("models"), epochs=2))


def main_job(models, out, *extra):
    return subprocess.run(
        [sys.executable, "-m", "tools.merge_and_export", f"--models={','.join(models)}",
         "--suite=synthetic", "--method=mtz", "--nocompare", f"--out={out}", "--nobenchmark",
         "--train_samples=256", "--val_samples=128", "--finetune_steps=4",
         "--max_prune_steps=2", "--criterion=magnitude", "--budget=60",
         "--mtz_samples=64", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})


def test_main_job_runs_method_mtz_end_to_end(synthetic_models, tmp_path):
    out = tmp_path / "out"
    proc = main_job(synthetic_models, out, "--mtz_retrain_steps=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MTZ: zipping 2 networks" in proc.stdout
    merged = json.load(open(out / "plan_merged.json"))
    assert merged["method"] == "mtz"
    assert [[g["owners"] for g in layer["groups"]] for layer in merged["layers"]] == \
        [[["t0", "t1"]]] * 4
    assert len(merged["meta"]["mtz"]["layers"]) == 4
    manifest = json.load(open(out / "tflite" / "manifest.json"))
    assert [c["tasks"] for c in manifest["combinations"]] == [["t0"], ["t1"], ["t0", "t1"]]
    assert "B2 (MTZ)" in open(out / "report.md").read()
    # an MTZ setting is part of B2's merge stage key (not the run's identity): B2 runs again
    again = main_job(synthetic_models, out, "--mtz_retrain_steps=5")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[trace] already done in an earlier run: resuming after it" in again.stdout
    assert "[b2/regroup] its settings or inputs changed since the earlier run: running it " \
        "again" in again.stdout
