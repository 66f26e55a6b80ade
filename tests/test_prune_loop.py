"""The pruning loop: schedule, budget, fixed target, checkpoints and resume, unstructured stage."""
import dataclasses
import json
import math
import os

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

from pam_tf.config import PruneSettings
from pam_tf.prune import PruneResult, TaylorImportance, prune, sparsify, zero_fraction
from pam_tf.prune.finetune import evaluate
from pam_tf.prune.loop import choose_removal
from tests.test_prune_surgery import trained_pam

FAST = dict(finetune_steps=3, initial_finetune_steps=0, batch_size=32)
# the loop's defaults these tests were written for (PruneSettings' defaults are the CLI's)
LOOP_DEFAULTS = dict(flops_aware=False, empty_groups=False, final_finetune_steps=0,
                     past_schedule=False, recovery_rounds=0, per_task_budget=False,
                     finetune_scale="network")  # the step counts below are per network
SETTINGS = {f.name for f in dataclasses.fields(PruneSettings)}


@pytest.fixture(scope="module")
def setup():
    plan, weights, ds = trained_pam(n_train=192, n_test=96)
    val = (ds.x_test, ds.y_test)
    ref = evaluate(plan, weights, ds.tasks, val)
    return plan, weights, ds.tasks, (ds.x_train, ds.y_train), val, ref


def schedule3():
    return tfmot.sparsity.keras.PolynomialDecay(0.15, 0.45, begin_step=1, end_step=3, power=1,
                                                frequency=1)


def run(setup, **kwargs):
    """prune() with PruneSettings from the keyword arguments that name a setting; a Taylor
    criterion with few batches unless `criterion` names another."""
    plan, weights, tasks, train, val, ref = setup
    args = dict(reference_accuracy={t: 0.0 for t in ref}, budget=1.0,
                schedule=schedule3(), **LOOP_DEFAULTS, **FAST)
    args.update(kwargs)
    importance = args.pop("importance", None) or (
        None if "criterion" in kwargs else TaylorImportance(n_batches=2, batch_size=32))
    settings = PruneSettings(**{k: args.pop(k) for k in list(args) if k in SETTINGS})
    return prune(plan, weights, tasks, train, val, settings, importance=importance, **args)


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
                schedule=tfmot.sparsity.keras.ConstantSparsity(0.2, begin_step=1),
                max_prune_steps=2)
    lines = []
    again = run(setup, checkpoint_dir=str(tmp_path), progress=lines.append,
                schedule=tfmot.sparsity.keras.ConstantSparsity(0.2, begin_step=1),
                max_prune_steps=2)
    assert "already finished" in lines[0] and len(lines) == 1
    assert again.plan == first.plan and again.reason == first.reason
    with pytest.raises(ValueError, match="different arguments"):
        run(setup, checkpoint_dir=str(tmp_path), progress=None, budget=2.0)


def test_heads_are_never_removed(setup, uninterrupted):
    plan = setup[0]
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
    result = run(setup, reference_accuracy={t: 1.0 for t in plan.tasks}, budget=0.0,
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
    result = run(setup, reference_accuracy=ref, budget=0.5, schedule=sched,
                 criterion="magnitude", progress=None)
    assert result.reason in ("budget", "schedule_end")
    if result.reason == "budget":
        assert result.history[-1]["within_budget"] is False
        assert result.step < result.history[-1]["step"]
    kept = next(e for e in result.history if e["step"] == result.step and e["within_budget"])
    assert sum(result.plan.widths()) == kept["neurons"]


def test_fixed_target_reaches_the_flops_target(setup):
    plan = setup[0]
    result = run(setup, target_flops=0.5, reference_accuracy=None, criterion="magnitude",
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
                 schedule=tfmot.sparsity.keras.ConstantSparsity(0.4, begin_step=1),
                 max_prune_steps=1)
    assert sum(result.plan.widths()) < sum(plan.widths())
    for old_groups, new_groups in zip(plan.layers, result.plan.layers):
        old = {g.owners: g.width for g in old_groups}
        for g in new_groups:
            assert g.width % 2 == 0 or g.width == old[g.owners]


def test_flops_aware_step_removes_at_most_the_scheduled_fraction_of_flops(setup):
    """FLOPs-aware ranking puts expensive conv channels first; the step is capped so the
    all-task FLOPs stay >= (1 − sparsity) of the start."""
    result = run(setup, criterion="magnitude", flops_aware=True, progress=None,
                 finetune_steps=1, max_prune_steps=1,
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
        schedule=tfmot.sparsity.keras.ConstantSparsity(0.2, begin_step=1),
        max_prune_steps=1)
    assert sorted(os.listdir(tmp_path)) == ["final", "state.json", "step_000", "step_001"]
    assert sorted(os.listdir(tmp_path / "step_001")) == ["plan.json", "weights.npz"]


# ----- backtracking ---------------------------------------------------------------------------
# The loop's accuracy comes from `evaluate`; replacing it by a rule on the network's size makes
# every budget decision deterministic (fine-tuning and the criterion stay real, so resume checks
# still compare real weights). Tiny plan: 52 hidden neurons.
MIN_NEURONS = 30


def fake_evaluate(plan, weights, tasks, data, batch_size=512):
    """Accuracy 1 while the network keeps >= MIN_NEURONS neurons, else 0.5 (outside a budget of
    0.5 points below reference 1)."""
    acc = 1.0 if sum(plan.widths()) >= MIN_NEURONS else 0.5
    return {t: acc for t in plan.tasks}


class TableSchedule:
    """A PruningSchedule stand-in: prune at every step s >= 1 to sparsity table[s] (the last
    entry after the table's end)."""

    def __init__(self, *sparsities):
        self.table = sparsities

    def __call__(self, step):
        s = int(step)
        return s >= 1, self.table[min(s, len(self.table) - 1)]

    def get_config(self):
        return {"table": list(self.table)}


# 52 neurons: step 1 -> 13 gone (39 left, inside); step 2 wants 26 gone (26 left: outside), its
# retry removes 6 (33 left: inside); step 3 wants 29 gone: 10 (23), 5 (28) outside, 2 (31) inside;
# step 4 wants 29 gone: 8, 4, 2 all outside -> stop, return step 3 retry 2.
BACKTRACK = dict(schedule=TableSchedule(0.0, 0.25, 0.5, 0.55), max_prune_steps=4, budget=0.5)
EXPECTED = [(0, 0, 0, True), (1, 0, 13, True), (2, 0, 13, False), (2, 1, 6, True),
            (3, 0, 10, False), (3, 1, 5, False), (3, 2, 2, True),
            (4, 0, 8, False), (4, 1, 4, False), (4, 2, 2, False)]


def run_bt(setup, **kwargs):
    ref = {t: 1.0 for t in setup[0].tasks}
    return run(setup, reference_accuracy=ref, **{**BACKTRACK, **kwargs})


def attempts(result):
    return [(e["step"], e["retry"], e["removed"], e["within_budget"]) for e in result.history]


def same_result(a, b):
    assert a.plan == b.plan and a.reason == b.reason and a.step == b.step
    assert a.message == b.message
    assert set(a.weights) == set(b.weights)
    for k in a.weights:
        np.testing.assert_array_equal(a.weights[k], b.weights[k], err_msg=k)
    assert attempts(a) == attempts(b)
    assert [e["widths"] for e in a.history] == [e["widths"] for e in b.history]


@pytest.fixture(scope="module")
def backtracked(setup):
    lines = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("pam_tf.prune.loop.evaluate", fake_evaluate)
        result = run_bt(setup, backtracks=2, progress=lines.append)
    return result, lines


def test_backtracks_zero_stops_at_the_first_step_outside_the_budget(setup, monkeypatch):
    """The rule before backtracking existed: the first failing step ends pruning, and the
    returned state is bit for bit the one a run that never tried that step ends with."""
    monkeypatch.setattr("pam_tf.prune.loop.evaluate", fake_evaluate)
    lines = []
    result = run_bt(setup, backtracks=0, progress=lines.append)
    assert attempts(result) == EXPECTED[:3]
    assert result.reason == "budget" and result.step == 1
    assert result.message.startswith("step 2 left the 0.5-point budget (") and \
        result.message.endswith("; returning step 1")
    assert not any("retry" in x for x in lines)
    short = run_bt(setup, backtracks=0, progress=None, max_prune_steps=1)  # never tries step 2
    assert short.reason == "max_steps"
    assert short.plan == result.plan
    for k in short.weights:
        np.testing.assert_array_equal(short.weights[k], result.weights[k], err_msg=k)


def test_backtracking_retries_a_failing_step_with_half_the_neurons_and_goes_on(backtracked):
    result, lines = backtracked
    assert attempts(result) == EXPECTED
    assert result.reason == "budget" and result.step == 3
    assert sum(result.plan.widths()) == 31 == result.history[6]["neurons"]
    assert "3 attempt(s)" in result.message and "2 of at most 2 retries" in result.message
    assert "removing 8, 4, 2 neurons" in result.message and "(retry 2)" in result.message
    step_lines = [x for x in lines if x.startswith("step")]
    assert len(step_lines) == len(EXPECTED)  # one progress line per attempt
    assert step_lines[3].startswith("step   2 retry 1/2: removing 6 neuron(s) -> neurons 33/52")
    assert not step_lines[3].endswith("OUTSIDE budget")
    assert step_lines[5].startswith("step   3 retry 1/2: removing 5 neuron(s)")
    assert step_lines[5].endswith("| OUTSIDE budget")
    # a retry starts from the last state inside the budget, not from the failed attempt
    for e, before in ((result.history[3], result.history[1]), (result.history[6],
                                                              result.history[3])):
        assert e["neurons"] == before["neurons"] - e["removed"]
        assert e["removed_flops"] == before["flops"] - e["flops"] > 0


def test_a_successful_retry_keeps_its_amount_as_the_next_steps_minimum(setup, monkeypatch):
    """Step 1 retries 26 -> 13 neurons; the schedule then asks for less than already removed
    (20 %), yet step 2 removes at least the retry's 13 instead of stalling."""
    monkeypatch.setattr("pam_tf.prune.loop.evaluate", fake_evaluate)
    result = run_bt(setup, schedule=TableSchedule(0.0, 0.5, 0.2), max_prune_steps=2,
                    backtracks=1, criterion="magnitude", progress=None)
    assert attempts(result) == [(0, 0, 0, True), (1, 0, 26, False), (1, 1, 13, True),
                                (2, 0, 13, False), (2, 1, 6, True)]
    assert result.reason == "schedule_end" and sum(result.plan.widths()) == 33


def test_flops_aware_retry_removes_at_most_half_the_failed_attempts_flops(setup, monkeypatch):
    """FLOPs-aware steps here fail by removing one expensive conv channel; the retry then
    removes one cheaper neuron (at most half those FLOPs) instead of giving up."""
    start = setup[0].cost(setup[0].tasks).flops

    def by_flops(plan, weights, tasks, data, batch_size=512):
        acc = 1.0 if plan.cost(plan.tasks).flops >= 0.7 * start else 0.5
        return {t: acc for t in plan.tasks}
    monkeypatch.setattr("pam_tf.prune.loop.evaluate", by_flops)
    result = run_bt(setup, flops_aware=True, criterion="magnitude", progress=None,
                    finetune_steps=1)
    retries = [(prev, e) for prev, e in zip(result.history, result.history[1:]) if e["retry"]]
    assert len(retries) >= 3, attempts(result)
    for prev, e in retries:  # prev: the failed attempt before this retry
        assert 1 <= e["removed"] <= max(1, prev["removed"] // 2)
        assert 0 < e["removed_flops"] <= prev["removed_flops"] / 2
    assert any(prev["removed"] == e["removed"] == 1 and e["within_budget"]
               for prev, e in retries), attempts(result)
    assert result.flops_fraction >= 0.7 and result.step >= 3


def test_retry_fill_retries_a_failed_conv_channel_with_the_cheap_neurons_behind_it(setup,
                                                                                   monkeypatch):
    """As above, steps fail on one expensive conv channel. Plain retries then remove one neuron
    each; with retry_fill a retry takes as many cheaper neurons as fit in half the failed
    FLOPs (up to 10 % of those left), so the same steps prune further, and a rerun is
    identical."""
    start = setup[0].cost(setup[0].tasks).flops

    def by_flops(plan, weights, tasks, data, batch_size=512):
        acc = 1.0 if plan.cost(plan.tasks).flops >= 0.7 * start else 0.5
        return {t: acc for t in plan.tasks}
    monkeypatch.setattr("pam_tf.prune.loop.evaluate", by_flops)
    args = dict(flops_aware=True, criterion="magnitude", progress=None, finetune_steps=1,
                max_prune_steps=6)
    plain = run_bt(setup, **args)
    filled = run_bt(setup, retry_fill=True, **args)
    pairs = list(zip(filled.history, filled.history[1:]))
    retries = [(prev, e) for prev, e in pairs if e["retry"]]
    one_channel = [(prev, e) for prev, e in retries if prev["removed"] == 1]
    assert one_channel, attempts(filled)
    for prev, e in retries:  # a retry starts from the state before the failed attempt
        left = e["neurons"] + e["removed"]
        assert 1 <= e["removed"] <= max(prev["removed"] // 2, math.ceil(0.1 * left))
        assert 0 < e["removed_flops"] <= prev["removed_flops"] / 2
    assert any(e["removed"] > 1 and e["within_budget"] for _, e in one_channel), \
        attempts(filled)
    assert sum(filled.plan.widths()) < sum(plain.plan.widths())
    assert filled.flops_fraction >= 0.7
    same_result(run_bt(setup, retry_fill=True, **args), filled)


@pytest.mark.parametrize("stop_line", ["step   2:", "step   2 retry 1/2", "step   3 retry 1/2"])
def test_resume_during_backtracking_gives_the_same_result(setup, backtracked, tmp_path,
                                                          monkeypatch, stop_line):
    """Interrupted after a failed first attempt (resume recomputes the ranking and retries),
    after a successful retry, and after a failed retry: same plan and weights, bit for bit."""
    monkeypatch.setattr("pam_tf.prune.loop.evaluate", fake_evaluate)
    full, _ = backtracked

    def stop(line):
        if line.startswith(stop_line):
            raise Interrupt(line)
    with pytest.raises(Interrupt):
        run_bt(setup, backtracks=2, checkpoint_dir=str(tmp_path), progress=stop)
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["status"] == "running"
    lines = []
    resumed = run_bt(setup, backtracks=2, checkpoint_dir=str(tmp_path), progress=lines.append)
    assert lines[0].startswith("resuming") and not any(x.startswith(stop_line) for x in lines)
    same_result(resumed, full)
    if "retry" in stop_line:
        assert (tmp_path / f"step_00{stop_line[7]}_retry_1" / "weights.npz").exists()


def test_backtracks_must_be_a_non_negative_integer(setup):
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="backtracks"):
            run(setup, backtracks=bad, progress=None)


def test_empty_groups_lets_an_exclusive_group_vanish_but_never_starves_a_reader():
    from pam_tf.prune.selection import keep_from, narrowed
    from tests.test_prune_surgery import make_plan, tiny_pair

    _, chain = tiny_pair()
    pam = make_plan("pam", chain)  # one exclusive neuron per task in every layer
    scores = {f"{layer.name}__{g.key}": (np.zeros(g.width) if len(g.owners) == 1
                                         else np.ones(g.width))
              for layer, groups in zip(chain.hidden, pam.layers) for g in groups}
    n_exclusive = sum(g.width for groups in pam.layers for g in groups if len(g.owners) == 1)
    def exclusive(removal):
        return [name for name, _ in removal if name.split("__")[1] in ("t0", "t1")]

    # each exclusive group has one neuron: without the option none goes, shared ones go instead
    assert exclusive(choose_removal(pam, scores, n_exclusive, empty_groups=False)) == []
    removal = choose_removal(pam, scores, n_exclusive, empty_groups=True)
    assert len(exclusive(removal)) == n_exclusive  # all can go: the shared group feeds readers
    for k in range(len(removal) + 1):  # every prefix leaves a valid plan
        narrowed(pam, keep_from(pam, removal[:k]))
    none = make_plan("none", chain)  # each group is the only input of its readers
    scores = {f"{layer.name}__{g.key}": np.zeros(g.width)
              for layer, groups in zip(chain.hidden, none.layers) for g in groups}
    removal = choose_removal(none, scores, sum(none.widths()), empty_groups=True)
    assert len(removal) == sum(none.widths()) - sum(len(groups) for groups in none.layers)


def test_emptying_a_group_also_drops_the_group_it_leaves_unread(setup):
    from pam_tf.build import group_layer_name
    from pam_tf.prune.importance import Importance

    plan, weights, tasks, train, val, ref = setup
    task = plan.tasks[0]
    l3, l4 = len(plan.layers) - 2, len(plan.layers) - 1
    fc4_own = next(g for g in plan.layers[l4] if g.owners == (task,))
    fc3_own = next(g for g in plan.layers[l3] if g.owners == (task,))
    assert fc4_own.width == 1 and fc3_own.width == 1  # fc3's {task} group has one reader
    target = group_layer_name(plan.chain.hidden[l4], fc4_own)

    class LowestFirst(Importance):  # scores the target group lowest: step 1 empties it
        name = "lowest_first"

        def __call__(self, ctx):
            return {group_layer_name(layer, g): np.full(g.width, 0.0 if group_layer_name(
                layer, g) == target else 1.0)
                for layer, groups in zip(ctx.plan.chain.hidden, ctx.plan.layers) for g in groups}

    n0 = sum(plan.widths())
    one = tfmot.sparsity.keras.ConstantSparsity(1.2 / n0, begin_step=1, end_step=1, frequency=1)
    settings = PruneSettings(**{**LOOP_DEFAULTS, **FAST, "empty_groups": True,
                                "max_prune_steps": 1})
    res = prune(plan, weights, tasks, train, val, settings, importance=LowestFirst(),
                reference_accuracy={t: 0.0 for t in ref}, schedule=one, progress=None)
    owners = [[g.owners for g in groups] for groups in res.plan.layers]
    assert (task,) not in owners[l4] and (task,) not in owners[l3]
    assert res.history[-1]["step"] == 1 and res.history[-1]["removed"] == 1


def test_budget_mode_prunes_past_the_end_of_the_schedule(setup):
    lines = []
    res = run(setup, past_schedule=True, max_prune_steps=5, progress=lines.append)
    steps = [e["step"] for e in res.history]
    assert max(steps) > 3  # schedule3 ends at step 3; the budget (reference 0) never binds
    assert res.reason == "max_steps"
    after = [e for e in res.history if e["step"] > 3 and e["retry"] == 0]
    for e, before in zip(after, [res.history[res.history.index(e) - 1] for e in after]):
        assert e["removed"] == max(1, int(np.ceil(0.10 * before["neurons"])))


def test_an_unpruned_net_outside_the_budget_gets_recovery_rounds(setup):
    lines = []
    unreachable = {t: 1.0 for t in setup[5]}  # no accuracy reaches 100 %: every round fails
    res = run(setup, reference_accuracy=unreachable, initial_finetune_steps=2,
              recovery_rounds=2, progress=lines.append)
    rounds = [l for l in lines if "recovery round" in l]
    assert len(rounds) == 2 and "recovery round 2/2 (2 more mini-batches)" in rounds[-1]
    assert res.reason == "unpruned_outside_budget"


def _one_task_binds(setup):
    """References under which t0 soon leaves its budget and t1 never does."""
    ref = setup[5]
    t0, t1 = setup[0].tasks
    return {t0: ref[t0] + 0.009, t1: 0.0}


def test_per_task_budget_freezes_the_task_that_binds_and_prunes_the_others(setup):
    lines = []
    res = run(setup, reference_accuracy=_one_task_binds(setup), per_task_budget=True,
              past_schedule=True, max_prune_steps=8, progress=lines.append)
    t0, t1 = setup[0].tasks
    frozen = [l for l in lines if "reached the budget" in l]
    assert len(frozen) == 1 and f"{t0} reached the budget" in frozen[0]
    assert f"groups owned only by {t1}" in frozen[0]
    ok = [e for e in res.history if e["within_budget"]][-1]
    assert res.step == ok["step"] and res.plan.widths() == ok["widths"]  # t1-only groups: width 1
    plain = run(setup, reference_accuracy=_one_task_binds(setup), past_schedule=True,
                max_prune_steps=8)
    assert plain.reason == "budget" and not any("reached the budget" in str(e)
                                                for e in plain.history)


def test_per_task_budget_resumes_after_freezing_with_the_same_result(setup, tmp_path):
    args = dict(reference_accuracy=_one_task_binds(setup), per_task_budget=True,
                past_schedule=True, max_prune_steps=8)
    full = run(setup, **args)

    def stop_at_freeze(line):
        if "reached the budget" in line:
            raise Interrupt(line)
    with pytest.raises(Interrupt):
        run(setup, checkpoint_dir=str(tmp_path), progress=stop_at_freeze, **args)
    assert json.loads((tmp_path / "state.json").read_text())["frozen"] == [setup[0].tasks[0]]
    again = run(setup, checkpoint_dir=str(tmp_path), **args)
    assert again.plan == full.plan and again.reason == full.reason
    for k in full.weights:
        np.testing.assert_array_equal(again.weights[k], full.weights[k])


def test_distilled_targets_mix_labels_and_teacher_outputs():
    from pam_tf.prune.finetune import distilled_targets
    from pam_tf.tasks import Task

    binary, multi = Task("b", "binary", 2, ("x", "y")), Task("m", "multiclass", 3, ("p", "q", "r"))
    ys = {"b": np.array([[1, 0], [0, 1]], np.float32), "m": np.array([2, 0])}
    teacher = {"b": np.array([[0.8, 0.4], [0.2, 0.6]]), "m": np.array([[0.1, 0.2, 0.7],
                                                                       [0.5, 0.5, 0.0]])}
    out = distilled_targets([binary, multi], ys, teacher, 0.5)
    np.testing.assert_allclose(out["b"], [[0.9, 0.2], [0.1, 0.8]])
    np.testing.assert_allclose(out["m"], [[0.05, 0.1, 0.85], [0.75, 0.25, 0.0]])
    with pytest.raises(ValueError, match="teacher outputs of task 'm': expected shape"):
        distilled_targets([multi], ys, {"m": teacher["m"][:1]}, 0.5)


def test_distillation_needs_teacher_outputs_and_changes_the_fine_tuning(setup):
    with pytest.raises(ValueError, match="distill > 0 needs the teacher outputs"):
        run(setup, distill=0.5)
    from pam_tf.prune.finetune import predict

    plan, weights, tasks, train, _, _ = setup
    teacher = predict(plan, weights, train[0])
    a = run(setup, distill=0.5, teacher=teacher, max_prune_steps=1)
    b = run(setup, max_prune_steps=1)
    assert a.plan.widths() == b.plan.widths()
    assert any(not np.array_equal(a.weights[k], b.weights[k]) for k in a.weights)


def test_cosine_learning_rate_falls_from_lr_to_its_floor_within_one_fine_tune():
    from pam_tf.prune.finetune import COSINE_FLOOR, learning_rate

    assert learning_rate(1e-3, 100) == 1e-3
    rate = learning_rate(1e-3, 100, "cosine")
    assert float(rate(0)) == pytest.approx(1e-3)
    assert float(rate(50)) == pytest.approx(1e-3 * (COSINE_FLOOR + (1 - COSINE_FLOOR) / 2))
    assert float(rate(100)) == pytest.approx(1e-3 * COSINE_FLOOR)
    with pytest.raises(ValueError, match="lr_decay must be 'none' or 'cosine', got 'step'"):
        learning_rate(1e-3, 100, "step")


def test_lr_decay_changes_the_fine_tuning_and_reruns_identically(setup):
    a = run(setup, lr_decay="cosine", max_prune_steps=1)
    b = run(setup, max_prune_steps=1)
    again = run(setup, lr_decay="cosine", max_prune_steps=1)
    assert any(not np.array_equal(a.weights[k], b.weights[k]) for k in a.weights)
    for k in a.weights:
        np.testing.assert_array_equal(a.weights[k], again.weights[k])


def test_prune_only_shared_keeps_every_exclusive_group(setup):
    res = run(setup, prune_only_shared=True, empty_groups=True, max_prune_steps=3)
    start = {(l, g.owners): g.width for l, groups in enumerate(setup[0].layers) for g in groups}
    after = {(l, g.owners): g.width for l, groups in enumerate(res.plan.layers) for g in groups}
    assert all(after[k] == w for k, w in start.items() if len(k[1]) == 1)
    assert sum(res.plan.widths()) < sum(setup[0].widths())


PRECIOUS_LAYER = 2  # fc3: a wide group, so the neuron can go (unlike a width-1 conv group)


def precious(plan):
    """(layer, model, neuron) of the 'precious' neuron: fc3's first neuron of the start."""
    return (PRECIOUS_LAYER, *plan.layers[PRECIOUS_LAYER][0].sources[0])


class PreciousFirst:
    """A criterion that ranks one 'precious' neuron lowest, so every removal takes it first;
    the others rank by layer and position (deterministic)."""

    name = "precious_first"

    def __init__(self, neuron):
        self.neuron = neuron

    def config(self):
        return {"name": self.name, "neuron": list(self.neuron)}

    def __call__(self, ctx):
        scores = {}
        for l, (layer, groups) in enumerate(zip(ctx.plan.chain.hidden, ctx.plan.layers)):
            for g in groups:
                scores[f"{layer.name}__{g.key}"] = np.array(
                    [-1.0 if (l, *src) == self.neuron else 1.0 + l + 0.01 * j
                     for j, src in enumerate(g.sources)])
        return scores


def precious_evaluate_for(neuron):
    def evaluate(plan, weights, tasks, data, batch_size=512):
        """Inside the budget while the precious neuron stays and >= MIN_NEURONS are left."""
        l, *src = neuron
        has = any(s == tuple(src) for g in plan.layers[l] for s in g.sources)
        acc = 1.0 if has and sum(plan.widths()) >= MIN_NEURONS else 0.5
        return {t: acc for t in plan.tasks}
    return evaluate


def run_precious(setup, **kwargs):
    ref = {t: 1.0 for t in setup[0].tasks}
    return run(setup, reference_accuracy=ref, importance=PreciousFirst(precious(setup[0])),
               **{**BACKTRACK, "max_prune_steps": 12, "past_schedule": True, **kwargs})


def test_protect_failed_keeps_a_neuron_whose_removal_fails_and_prunes_the_others(setup,
                                                                              monkeypatch):
    monkeypatch.setattr("pam_tf.prune.loop.evaluate", precious_evaluate_for(precious(setup[0])))
    plain = run_precious(setup, backtracks=2)
    assert plain.reason == "budget" and plain.step == 0  # every attempt took the precious one
    lines = []
    res = run_precious(setup, backtracks=2, protect_failed=1, progress=lines.append)
    kept = [l for l in lines if "pruning on among the other neurons" in l]
    assert len(kept) == 1 and "(protection 1/1" in kept[0] and "of fc3" in kept[0]
    l, *src = precious(setup[0])
    assert any(s == tuple(src) for g in res.plan.layers[l] for s in g.sources)
    assert MIN_NEURONS <= sum(res.plan.widths()) < sum(setup[0].widths())


def test_protect_failed_resumes_after_protecting_with_the_same_result(setup, monkeypatch,
                                                                     tmp_path):
    monkeypatch.setattr("pam_tf.prune.loop.evaluate", precious_evaluate_for(precious(setup[0])))
    full = run_precious(setup, backtracks=2, protect_failed=1)

    def stop_at_protection(line):
        if "pruning on among the other neurons" in line:
            raise Interrupt(line)
    with pytest.raises(Interrupt):
        run_precious(setup, backtracks=2, protect_failed=1, checkpoint_dir=str(tmp_path),
                     progress=stop_at_protection)
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["protections"] == 1 and list(precious(setup[0])) in saved["protected"]
    again = run_precious(setup, backtracks=2, protect_failed=1, checkpoint_dir=str(tmp_path))
    same_result(again, full)


def test_step_recovery_fine_tunes_an_attempt_outside_the_budget_again_before_judging(
        setup, monkeypatch):
    """An attempt that needs two fine-tunes to recover ends a plain run at step 1; with one
    recovery round every attempt is judged after its second fine-tune and pruning goes on.
    Without it the history's JSON has no 'recovery' key (earlier files stay as they were)."""
    import pam_tf.prune.loop as loop

    real, tuned = loop.finetune, {}
    start = tuple(setup[0].widths())

    def counting(plan, weights, tasks, data, *, steps, **kw):
        key = tuple(plan.widths())
        tuned[key] = tuned.get(key, 0) + 1
        return real(plan, weights, tasks, data, steps=steps, **kw)

    def recovered_after_two(plan, weights, tasks, data, batch_size=512):
        key = tuple(plan.widths())
        acc = 1.0 if key == start or tuned.get(key, 0) >= 2 else 0.5
        return {t: acc for t in plan.tasks}
    monkeypatch.setattr(loop, "finetune", counting)
    monkeypatch.setattr(loop, "evaluate", recovered_after_two)
    ref = {t: 1.0 for t in setup[0].tasks}
    plain = run(setup, reference_accuracy=ref, backtracks=0, max_prune_steps=3)
    assert plain.reason == "budget" and plain.step == 0
    assert all("recovery" not in e for e in plain.history)
    tuned.clear()
    lines = []
    res = run(setup, reference_accuracy=ref, backtracks=0, max_prune_steps=3, step_recovery=1,
              progress=lines.append)
    assert res.step == 3 and all(e["within_budget"] for e in res.history)
    assert [e.get("recovery", 0) for e in res.history] == [0, 1, 1, 1]
    assert sum("judged after 1 extra fine-tune(s)" in l for l in lines) == 3
    tuned.clear()
    again = run(setup, reference_accuracy=ref, backtracks=0, max_prune_steps=3, step_recovery=1)
    same_result(again, res)


FINAL_STEPS = 7  # a length no other fine-tune of these runs has: marks the final fine-tune


def test_a_final_fine_tune_that_leaves_the_budget_is_not_kept(setup, monkeypatch):
    """The final fine-tune may not return a network outside the budget that the state it
    started from was inside: its weights are dropped, the message says so."""
    import pam_tf.prune.loop as loop

    real = loop.finetune

    def harmful_final(plan, weights, tasks, data, *, steps, **kw):
        out = real(plan, weights, tasks, data, steps=steps, **kw)
        return {k: v * 0 for k, v in out.items()} if steps == FINAL_STEPS else out

    def zero_is_bad(plan, weights, tasks, data, batch_size=512):
        acc = 0.5 if all(not v.any() for v in weights.values()) else 1.0
        return {t: acc for t in plan.tasks}
    monkeypatch.setattr(loop, "finetune", harmful_final)
    monkeypatch.setattr(loop, "evaluate", zero_is_bad)
    ref = {t: 1.0 for t in setup[0].tasks}
    res = run(setup, reference_accuracy=ref, final_finetune_steps=FINAL_STEPS, max_prune_steps=1)
    assert "the final fine-tune left the budget" in res.message
    assert any(v.any() for v in res.weights.values()) and min(res.accuracy.values()) == 1.0


def precious_conv(plan):
    """(layer, model, neuron) of conv1's first neuron: the most expensive kind to remove."""
    return (0, *plan.layers[0][0].sources[0])


class PreciousFirstFlops(PreciousFirst):
    """PreciousFirst for FLOPs-aware ranking (scores divided by cost): the precious neuron at
    0, the others positive, so it still goes first."""

    def to_positive(self, scores):
        return {k: np.maximum(v, 0.0) for k, v in scores.items()}


def test_retry_tabu_leaves_a_failed_conv_channel_out_of_the_next_steps(setup, monkeypatch,
                                                                       tmp_path):
    """A conv channel ranked first whose removal always fails: plain FLOPs-aware pruning tries
    it first at every step and then retries with cheaper neurons (two attempts per step); with
    retry_tabu=3 a failed try is followed by three steps without it, so fewer attempts fail,
    the channel stays, and a resumed run ends the same."""
    neuron = precious_conv(setup[0])
    monkeypatch.setattr("pam_tf.prune.loop.evaluate", precious_evaluate_for(neuron))
    args = dict(importance=PreciousFirstFlops(neuron), flops_aware=True, backtracks=2,
                max_prune_steps=8, past_schedule=True)
    ref = {t: 1.0 for t in setup[0].tasks}
    plain = run(setup, reference_accuracy=ref, **{**BACKTRACK, **args})
    tabu = run(setup, reference_accuracy=ref, retry_tabu=3, **{**BACKTRACK, **args})
    failed = lambda r: [e["step"] for e in r.history if e["within_budget"] is False]
    assert len(failed(tabu)) < len(failed(plain)), (attempts(plain), attempts(tabu))
    first = [e["step"] for e in tabu.history if e["retry"] == 0 and not e["within_budget"]]
    assert all(b - a > 3 for a, b in zip(first, first[1:])), attempts(tabu)
    l, *src = neuron
    assert any(s == tuple(src) for g in tabu.plan.layers[l] for s in g.sources)

    def stop_after_a_retry(line):
        if "retry 1" in line:
            raise Interrupt(line)
    with pytest.raises(Interrupt):
        run(setup, reference_accuracy=ref, retry_tabu=3, checkpoint_dir=str(tmp_path),
            progress=stop_after_a_retry, **{**BACKTRACK, **args})
    assert json.loads((tmp_path / "state.json").read_text())["tabu"]
    again = run(setup, reference_accuracy=ref, retry_tabu=3, checkpoint_dir=str(tmp_path),
                **{**BACKTRACK, **args})
    same_result(again, tabu)
