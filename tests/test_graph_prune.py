"""Pruning graph plans: coupled magnitude scores, a budgeted loop, B1 per task."""
import numpy as np

from pam_tf.graph.build import inherit_graph_weights
from pam_tf.graph.plan import graph_no_merge_plan, graph_shared_plan
from pam_tf.graph.prune import (GraphPruneSettings, coupled_magnitude, prune_graph,
                                prune_graph_per_task)
from pam_tf.graph.trace import trace_graph
from pam_tf.tasks import Task
from tests.graph_models import images, residual_block

TASKS = [Task("a", "binary", 2, ("x", "y")), Task("b", "binary", 2, ("x", "y"))]
FAST = GraphPruneSettings(budget=100.0, max_prune_steps=2, initial_finetune_steps=2,
                          finetune_steps=2, batch_size=16, step_fraction=0.2)


def _data(n=48, seed=0):
    x = images(n, seed=seed)
    y = {"a": (x[:, :4, :4, 0].mean(axis=(1, 2))[:, None] > [0.45, 0.55]).astype("f4"),
         "b": (x[:, 4:, 4:, 1].mean(axis=(1, 2))[:, None] > [0.45, 0.55]).astype("f4")}
    return x, y


def _start(producer):
    traced = [trace_graph(residual_block(seed=s)) for s in range(2)]
    plan = producer(traced[0].graph, ["a", "b"], [2, 2], ["sigmoid", "sigmoid"])
    return plan, inherit_graph_weights(plan, traced)


def test_coupled_magnitude_sums_every_producer_of_the_class():
    plan, w = _start(graph_no_merge_plan)
    s = coupled_magnitude(plan, w)
    expect = (np.abs(w["c1__a/kernel"]).sum(axis=(0, 1, 2))
              + np.abs(w["c2__a/kernel"]).sum(axis=(0, 1, 2)))
    np.testing.assert_allclose(s["c1__a"], expect, rtol=1e-6)
    assert set(s) == {"c1__a", "c1__b", "b1__a", "b1__b", "c3__a", "c3__b"}


def test_joint_pruning_of_a_shared_graph_plan_lowers_flops_every_step():
    plan, w = _start(graph_shared_plan)
    res = prune_graph(plan, w, TASKS, _data(), _data(seed=1), {"a": 0.5, "b": 0.5}, FAST,
                      progress=lambda s: None)
    flops = [h["flops"] for h in res.history]
    assert len(flops) == 3 and flops[0] > flops[1] > flops[2]
    assert res.reason == "max_steps" and res.plan.cost(["a", "b"]).flops == flops[-1]


def test_budget_stops_before_the_first_step_outside_it():
    plan, w = _start(graph_shared_plan)
    res = prune_graph(plan, w, TASKS, _data(), _data(seed=1), {"a": 1.0, "b": 1.0},
                      GraphPruneSettings(budget=0.0, initial_finetune_steps=0),
                      progress=lambda s: None)
    assert res.reason == "unpruned_outside_budget" and res.plan == plan


def test_b1_prunes_each_network_alone_and_recombines():
    plan, w = _start(graph_no_merge_plan)
    combined, parts = prune_graph_per_task(plan, w, TASKS, _data(), _data(seed=1),
                                           {"a": 0.5, "b": 0.5}, FAST,
                                           progress=lambda s: None)
    assert combined.plan.tasks == ("a", "b")
    for t, part in zip(("a", "b"), parts):
        assert combined.plan.cost([t]) == part.plan.cost([t])
        assert part.plan.cost([t]).flops < plan.cost([t]).flops
    assert combined.plan.cost(["a", "b"]).flops == sum(combined.plan.cost([t]).flops
                                                       for t in ("a", "b"))


def test_groups_nothing_reads_are_dropped_and_partly_read_ones_keep_their_weights():
    from pam_tf.graph.build import build_graph_model
    from pam_tf.graph.merge import graph_plan_from_owners
    from pam_tf.graph.surgery import drop_unread_class_groups, unread_class_groups
    from pam_tf.graph.train import graph_finetune
    traced = [trace_graph(residual_block(seed=s)) for s in range(2)]
    a, b, ab = frozenset({0}), frozenset({1}), frozenset({0, 1})
    # no reader of class c1 has a group within {a} (b1: {a, b}, {b}; c3: {a, b}), and c2
    # (writing c1) reads b1's supersets of {a, b} or {a}: b1's {b} is read by nobody either
    owners = [[ab] * 4 + [a] * 4, [ab] * 5 + [b] * 5, [ab] * 10]
    plan = graph_plan_from_owners(traced[0].graph, ["a", "b"], [2, 2], ["sigmoid"] * 2,
                                  owners)
    weights = inherit_graph_weights(plan, traced)
    assert unread_class_groups(plan) == ["c1__a", "b1__b"]
    small, small_w, dropped = drop_unread_class_groups(plan, weights)
    assert dropped == ["c1__a", "b1__b"] and unread_class_groups(small) == []
    x = images(3)
    for f, n in zip(build_graph_model(plan, weights)(x), build_graph_model(small, small_w)(x)):
        np.testing.assert_allclose(n.numpy(), f.numpy(), atol=1e-6)
    # fine-tuning a plan with groups Keras leaves out of the model keeps their weights
    tuned = graph_finetune(plan, weights, TASKS, _data(), steps=1, batch_size=8)
    assert set(tuned) == set(weights)
    np.testing.assert_array_equal(tuned["b1__b/kernel"], weights["b1__b/kernel"])


def test_a_step_outside_the_budget_is_retried_with_half_the_removal(monkeypatch):
    import pam_tf.graph.prune as gp
    plan, w = _start(graph_shared_plan)
    verdicts = iter([0.9, 0.5, 0.9, 0.5, 0.5, 0.5])  # step 0 in; step 1 out, retry in; ...

    def judged(plan, weights, tasks, data):
        v = next(verdicts)
        return {t.name: v for t in tasks}
    monkeypatch.setattr(gp, "graph_evaluate", judged)
    res = prune_graph(plan, w, TASKS, _data(), _data(seed=1), {"a": 0.9, "b": 0.9},
                      GraphPruneSettings(budget=1.0, max_prune_steps=3, initial_finetune_steps=0,
                                         step_fraction=0.5,
                                         finetune_steps=1, batch_size=16, backtracks=1),
                      progress=lambda s: None)
    removed = [(h["step"], h.get("attempt"), h.get("removed")) for h in res.history]
    assert [r[:2] for r in removed] == [(0, None), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert removed[2][2] < removed[1][2]  # the retry removes about half as many
    assert res.reason == "budget" and res.step == 1


def test_gate_terms_are_the_pre_activation_taylor_term_of_each_channel():
    """Σ θ·∂L/∂θ over a channel's kernel column and bias equals z·∂L/∂z of its output z."""
    from pam_tf.compat import tf
    from pam_tf.graph.importance import channel_gate_terms

    rng = np.random.default_rng(0)
    for kind, x_shape, k_shape in (("conv", (3, 6, 6, 2), (3, 3, 2, 4)),
                                   ("depthwise", (3, 6, 6, 4), (3, 3, 4, 1)),
                                   ("dense", (3, 5), (5, 4))):
        x = tf.constant(rng.normal(size=x_shape), tf.float32)
        k = tf.Variable(rng.normal(size=k_shape), dtype=tf.float32)
        b = tf.Variable(rng.normal(size=(4,)), dtype=tf.float32)
        with tf.GradientTape(persistent=True) as tape:
            if kind == "conv":
                z = tf.nn.conv2d(x, k, 1, "SAME") + b
            elif kind == "depthwise":
                z = tf.nn.depthwise_conv2d(x, k, [1, 1, 1, 1], "SAME") + b
            else:
                z = x @ k + b
            loss = tf.reduce_sum(tf.nn.relu(z) ** 2)
        dk, db = tape.gradient(loss, [k, b])
        dz = tape.gradient(loss, z)
        want = tf.reduce_sum(z * dz, axis=tuple(range(len(x_shape) - 1))).numpy()
        got = channel_gate_terms(kind, k.numpy(), b.numpy(), dk.numpy(), db.numpy())
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_coupled_taylor_scores_every_class_group_and_a_dead_channel_scores_zero():
    from pam_tf.graph.importance import coupled_taylor

    plan, w = _start(graph_no_merge_plan)
    w = dict(w)
    for name in ("c1__a", "c2__a"):  # class c1 of task a: its producers c1 and c2 (the add)
        w[f"{name}/kernel"] = w[f"{name}/kernel"].copy()
        w[f"{name}/kernel"][..., 0] = 0.0
        w[f"{name}/bias"] = w[f"{name}/bias"].copy()
        w[f"{name}/bias"][0] = 0.0
    s = coupled_taylor(plan, w, TASKS, _data(), n_batches=2, batch_size=16, seed=3)
    assert set(s) == set(coupled_magnitude(plan, w))
    assert s["c1__a"][0] == 0.0 and (s["c1__a"][1:] > 0).all()
    again = coupled_taylor(plan, w, TASKS, _data(), n_batches=2, batch_size=16, seed=3)
    assert all(np.array_equal(s[k], again[k]) for k in s)  # seeded batches: same scores


def test_taylor_criterion_prunes_a_shared_graph_plan():
    from dataclasses import replace

    plan, w = _start(graph_shared_plan)
    res = prune_graph(plan, w, TASKS, _data(), _data(seed=1), {"a": 0.5, "b": 0.5},
                      replace(FAST, criterion="taylor"), progress=lambda s: None)
    flops = [h["flops"] for h in res.history]
    assert len(flops) == 3 and flops[0] > flops[1] > flops[2]
    assert "coupled taylor" in res.message


def test_a_start_outside_the_budget_gets_recovery_rounds_before_giving_up():
    from dataclasses import replace

    plan, w = _start(graph_shared_plan)
    lines: list[str] = []
    impossible = {"a": 1.0, "b": 1.0}  # 100 % with a 0-point budget: never inside
    res = prune_graph(plan, w, TASKS, _data(), _data(seed=1), impossible,
                      replace(FAST, budget=0.0, recovery_rounds=2), progress=lines.append)
    assert res.reason == "unpruned_outside_budget"
    assert [l for l in lines if "recovery round" in l][-1].endswith("round 2/2 (2 more mini-batches)")
    lines.clear()
    prune_graph(plan, w, TASKS, _data(), _data(seed=1), {"a": 0.0, "b": 0.0},
                replace(FAST, recovery_rounds=2), progress=lines.append)
    assert not [l for l in lines if "recovery round" in l]  # inside at once: no round


def test_step_recovery_fine_tunes_an_attempt_outside_the_budget_again(monkeypatch):
    """The same verdicts as the retry test: with one recovery round, step 1's attempt is
    judged after its second fine-tune (inside) and no retry is needed."""
    import pam_tf.graph.prune as gp
    plan, w = _start(graph_shared_plan)
    verdicts = iter([0.9, 0.5, 0.9, 0.5, 0.5, 0.5, 0.5])
    tunes = []
    real = gp.graph_finetune

    def counted(*args, **kw):
        tunes.append(kw["seed"])
        return real(*args, **kw)

    def judged(plan, weights, tasks, data):
        v = next(verdicts)
        return {t.name: v for t in tasks}
    monkeypatch.setattr(gp, "graph_evaluate", judged)
    monkeypatch.setattr(gp, "graph_finetune", counted)
    res = prune_graph(plan, w, TASKS, _data(), _data(seed=1), {"a": 0.9, "b": 0.9},
                      GraphPruneSettings(budget=1.0, max_prune_steps=2, initial_finetune_steps=0,
                                         step_fraction=0.5, finetune_steps=1, batch_size=16,
                                         backtracks=0, step_recovery=1),
                      progress=lambda s: None)
    assert [(h["step"], h.get("attempt")) for h in res.history] == [(0, None), (1, 0), (2, 0)]
    assert res.reason == "budget" and res.step == 1  # step 2: outside after both fine-tunes
    assert len(tunes) == 1 + 2 + 2 and len(set(tunes)) == len(tunes)  # each its own seed
