"""The pruning loop: schedule, budget, fixed target, checkpoints and resume, unstructured stage."""
import json
import os

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

from pam_tf.build import inherit_weights
from pam_tf.data.synthetic import make_synthetic
from pam_tf.prune import PruneResult, TaylorImportance, prune, sparsify, zero_fraction
from pam_tf.prune.finetune import evaluate, finetune
from pam_tf.prune.loop import choose_removal
from tests.test_prune_surgery import make_plan, tiny_pair

FAST = dict(finetune_steps=3, initial_finetune_steps=0, batch_size=32)


@pytest.fixture(scope="module")
def setup():
    ds = make_synthetic(2, n_train=192, n_test=96, size=12, seed=0)
    traced, chain = tiny_pair()
    plan = make_plan("pam", chain)
    weights = finetune(plan, inherit_weights(plan, traced), ds.tasks, (ds.x_train, ds.y_train),
                       steps=40, batch_size=32, lr=3e-3, seed=0)
    val = (ds.x_test, ds.y_test)
    ref = evaluate(plan, weights, ds.tasks, val)
    return plan, weights, ds.tasks, (ds.x_train, ds.y_train), val, ref


def schedule3():
    return tfmot.sparsity.keras.PolynomialDecay(0.15, 0.45, begin_step=1, end_step=3, power=1,
                                                frequency=1)


def run(setup, **kwargs):
    plan, weights, tasks, train, val, ref = setup
    args = dict(criterion=TaylorImportance(n_batches=2, batch_size=32),
                reference_accuracy={t: 0.0 for t in ref}, budget_points=1.0,
                schedule=schedule3(), **FAST)
    args.update(kwargs)
    return prune(plan, weights, tasks, train, val, **args)


@pytest.fixture(scope="module")
def uninterrupted(setup):
    lines = []
    return run(setup, progress=lines.append), lines


class Interrupt(Exception):
    pass


def test_resume_after_interruption_gives_the_same_result(setup, uninterrupted, tmp_path):
    full, _ = uninterrupted

    def stop_at_2(line):
        if line.startswith("step   2"):
            raise Interrupt(line)
    with pytest.raises(Interrupt):
        run(setup, checkpoint_dir=str(tmp_path), progress=stop_at_2)
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["step"] == 2 and state["status"] == "running"
    assert (tmp_path / "step_002" / "weights.npz").exists()
    lines = []
    resumed = run(setup, checkpoint_dir=str(tmp_path), progress=lines.append)
    assert lines[0].startswith("resuming") and not any(x.startswith("step   1") for x in lines)
    assert resumed.plan == full.plan and resumed.reason == full.reason
    assert set(resumed.weights) == set(full.weights)
    for k in full.weights:
        np.testing.assert_array_equal(resumed.weights[k], full.weights[k], err_msg=k)
    assert [e["step"] for e in resumed.history] == [e["step"] for e in full.history]


def test_finished_run_is_returned_from_its_checkpoint(setup, tmp_path):
    first = run(setup, checkpoint_dir=str(tmp_path), progress=None,
                schedule=tfmot.sparsity.keras.ConstantSparsity(0.2, begin_step=1), max_steps=2)
    lines = []
    again = run(setup, checkpoint_dir=str(tmp_path), progress=lines.append,
                schedule=tfmot.sparsity.keras.ConstantSparsity(0.2, begin_step=1), max_steps=2)
    assert "already finished" in lines[0] and len(lines) == 1
    assert again.plan == first.plan and again.reason == first.reason
    with pytest.raises(ValueError, match="different arguments"):
        run(setup, checkpoint_dir=str(tmp_path), progress=None, budget_points=2.0)


def test_heads_are_never_removed(setup, uninterrupted):
    plan, weights = setup[0], setup[1]
    result, _ = uninterrupted
    assert result.plan.heads == plan.heads
    for h in plan.heads:
        assert result.weights[f"{h.task}/kernel"].shape[1] == h.units
        np.testing.assert_array_equal(result.weights[f"{h.task}/bias"].shape, (h.units,))
    assert sum(result.plan.widths()) < sum(plan.widths())
    assert all(g.width >= 1 for groups in result.plan.layers for g in groups)


def test_pruned_model_has_no_gate_layers(uninterrupted):
    from pam_tf.build import build_model
    from pam_tf.prune import MaskGate, VIBGate
    result, _ = uninterrupted
    model = build_model(result.plan, result.weights)
    assert not [layer for layer in model.layers if isinstance(layer, (MaskGate, VIBGate))]
    assert {type(layer).__name__ for layer in model.layers} <= {
        "InputLayer", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Concatenate"}


def test_schedule_drives_the_fraction_removed_per_step(setup, uninterrupted):
    """PolynomialDecay 15 % → 45 % over steps 1..3: neurons gone by step s = round(sp(s)·n0)."""
    plan = setup[0]
    result, lines = uninterrupted
    n0 = sum(plan.widths())
    sched = schedule3()
    assert [e["step"] for e in result.history] == [0, 1, 2, 3]
    for e in result.history[1:]:
        sp = float(sched(e["step"])[1])
        assert e["neurons"] == n0 - round(sp * n0), e
    assert result.reason == "schedule_end"
    assert len([x for x in lines if x.startswith("step")]) == 4
    assert "FLOPs" in lines[1] and "ref" in lines[1]


def test_schedule_frequency_skips_steps(setup):
    sched = tfmot.sparsity.keras.PolynomialDecay(0.1, 0.3, begin_step=1, end_step=5, power=1,
                                                 frequency=2)
    result = run(setup, schedule=sched, criterion="magnitude", progress=None, finetune_steps=1)
    assert [e["step"] for e in result.history] == [0, 1, 3, 5]


def test_unmeetable_budget_returns_the_unpruned_network_with_a_message(setup):
    plan, weights = setup[0], setup[1]
    lines = []
    result = run(setup, reference_accuracy={t: 1.0 for t in plan.tasks}, budget_points=0.0,
                 progress=lines.append)
    assert isinstance(result, PruneResult)
    assert result.reason == "unpruned_outside_budget" and result.step == 0
    assert result.plan == plan
    for k in weights:
        np.testing.assert_array_equal(result.weights[k], weights[k])
    assert "unpruned" in result.message and "unpruned" in lines[-1]


def test_budget_stops_at_the_last_state_inside_it(setup):
    plan, _, _, _, _, ref = setup
    sched = tfmot.sparsity.keras.PolynomialDecay(0.3, 0.95, begin_step=1, end_step=3, power=1,
                                                 frequency=1)
    result = run(setup, reference_accuracy=ref, budget_points=0.5, schedule=sched,
                 criterion="magnitude", progress=None)
    assert result.reason in ("budget", "schedule_end")
    if result.reason == "budget":
        assert result.history[-1]["within_budget"] is False
        assert result.step < result.history[-1]["step"]
    kept = next(e for e in result.history if e["step"] == result.step)
    assert kept["within_budget"] and sum(result.plan.widths()) == kept["neurons"]


def test_fixed_target_reaches_the_flops_target(setup):
    plan = setup[0]
    result = run(setup, target_flops_fraction=0.5, reference_accuracy=None, criterion="magnitude",
                 progress=None, finetune_steps=1,
                 schedule=tfmot.sparsity.keras.PolynomialDecay(0.2, 0.8, begin_step=1,
                                                               end_step=4, frequency=1))
    start = plan.cost(plan.tasks).flops
    assert result.reason == "target_reached"
    assert result.plan.cost(plan.tasks).flops <= 0.5 * start
    assert result.flops_fraction <= 0.5
    assert set(result.accuracy) == set(plan.tasks)


def test_flops_aware_per_layer_ranking_with_rounding_keeps_multiples(setup):
    plan = setup[0]
    result = run(setup, criterion="magnitude", flops_aware=True, ranking="per_layer",
                 round_to=2, progress=None, finetune_steps=1,
                 schedule=tfmot.sparsity.keras.ConstantSparsity(0.4, begin_step=1), max_steps=1)
    assert sum(result.plan.widths()) < sum(plan.widths())
    for old_groups, new_groups in zip(plan.layers, result.plan.layers):
        old = {g.owners: g.width for g in old_groups}
        for g in new_groups:
            assert g.width % 2 == 0 or g.width == old[g.owners]


def test_flops_aware_step_removes_at_most_the_scheduled_fraction_of_flops(setup):
    """FLOPs-aware ranking puts expensive conv channels first; the step is capped so the
    all-task FLOPs stay >= (1 − sparsity) of the start."""
    result = run(setup, criterion="magnitude", flops_aware=True, progress=None,
                 finetune_steps=1, max_steps=1,
                 schedule=tfmot.sparsity.keras.ConstantSparsity(0.3, begin_step=1))
    step1 = result.history[1]
    assert step1["removed"] >= 1 and step1["flops_fraction"] >= 0.7


def test_choose_removal_global_and_per_layer_respect_min_width(setup):
    plan = setup[0]
    scores = {f"{layer.name}__{g.key}": np.arange(g.width, dtype=float) + 100 * l
              for l, (layer, groups) in enumerate(zip(plan.chain.hidden, plan.layers))
              for g in groups}
    glob = choose_removal(plan, scores, 10, ranking="global", min_group_width=1)
    assert len(glob) == 10 and all(name.startswith("conv") for name, _ in glob)
    per = choose_removal(plan, scores, 10, ranking="per_layer", min_group_width=1)
    layers = [name.split("__")[0] for name, _ in per]
    assert len(per) == 10 and len(set(layers)) == 4   # every layer gives its share
    everything = choose_removal(plan, scores, 10 ** 6, min_group_width=2)
    for l, (layer, groups) in enumerate(zip(plan.chain.hidden, plan.layers)):
        for g in groups:
            gone = sum(1 for name, _ in everything if name == f"{layer.name}__{g.key}")
            assert g.width - gone == min(2, g.width)


def test_unstructured_stage_zeroes_the_requested_fraction_and_strips_wrappers(setup):
    plan, weights, tasks, train, _, _ = setup
    out = sparsify(plan, weights, tasks, train, sparsity=0.5, steps=2, batch_size=32)
    assert set(out) == set(weights)
    assert zero_fraction(plan, out) == pytest.approx(0.5, abs=0.02)
    for h in plan.heads:  # heads are not sparsified
        assert np.count_nonzero(out[f"{h.task}/kernel"] == 0) == 0


def test_checkpoint_files_are_written_per_step(setup, tmp_path):
    run(setup, checkpoint_dir=str(tmp_path), progress=None, criterion="magnitude",
        schedule=tfmot.sparsity.keras.ConstantSparsity(0.2, begin_step=1), max_steps=1)
    assert sorted(os.listdir(tmp_path)) == ["final", "state.json", "step_000", "step_001"]
    assert sorted(os.listdir(tmp_path / "step_001")) == ["plan.json", "weights.npz"]
