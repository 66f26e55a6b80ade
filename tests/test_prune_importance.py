"""Importance criteria: each ranks a planted useless neuron last; heads are never scored."""
import numpy as np
import pytest

from pam_tf.prune import (ImportanceContext, MagnitudeImportance, TaylorImportance,
                          VIBImportance, make_importance, neuron_flops)
from pam_tf.prune.finetune import evaluate
from pam_tf.prune.importance import group_layer_names
from tests.test_prune_surgery import make_plan, tiny_pair, trained_pam

# Planted dead neurons: incoming weights 0 and bias −1, so the post-ReLU activation is always 0.
# One is a conv channel (read through max-pool + flatten by the dense layer), one a dense unit.
PLANTED = [("conv2__t0.t1", 2), ("fc3__t0.t1", 3)]


@pytest.fixture(scope="module")
def trained():
    """A PAM-like two-task net, briefly trained on the synthetic suite, with dead neurons."""
    plan, weights, ds = trained_pam(n_train=256, n_test=128)
    for name, j in PLANTED:
        weights[f"{name}/kernel"][..., j] = 0.0
        weights[f"{name}/bias"][j] = -1.0
    assert evaluate(plan, weights, ds.tasks, (ds.x_test, ds.y_test))["t1"] > 0.5
    return ImportanceContext(plan, weights, ds.tasks, ds.x_train, ds.y_train, seed=1)


def assert_planted_last(scores):
    every = np.concatenate([np.asarray(v, float) for v in scores.values()])
    for name, j in PLANTED:
        s = scores[name]
        others = np.delete(s, j)
        assert s[j] <= every.min() + 1e-9, (name, s[j], every.min())
        assert s[j] < np.median(others), (name, s)


def test_taylor_ranks_a_dead_neuron_last(trained):
    assert_planted_last(TaylorImportance(n_batches=3, batch_size=32)(trained))


def test_vib_ranks_a_dead_neuron_below_every_neuron_it_keeps(trained):
    """VIB may rank a neuron the loss wants gone (frozen weights) even below a dead one, so the
    claim is: the paper's log α rule drops the dead neuron, every neuron the rule keeps scores
    higher, and the dead neuron is in the bottom quarter of the global ranking."""
    vib = VIBImportance(steps=80, batch_size=32)
    scores = vib(trained)
    keep = vib.keep_masks()
    every = np.concatenate([scores[n] for n in scores])
    kept = np.concatenate([scores[n][keep[n]] for n in scores])
    assert kept.size > every.size // 2
    for name, j in PLANTED:
        assert not keep[name][j]
        assert scores[name][j] < kept.min()
        assert np.mean(every < scores[name][j]) < 0.25


def test_magnitude_ranks_a_neuron_without_incoming_weights_last(trained):
    scores = MagnitudeImportance()(trained)
    assert_planted_last(scores)
    for name, j in PLANTED:
        assert scores[name][j] == 0 and np.all(np.delete(scores[name], j) > 0)


def test_taylor_scores_zero_for_a_neuron_nobody_reads(trained):
    """Outgoing weights zero (incoming intact): removing it cannot change the loss."""
    ctx = trained
    weights = {k: v.copy() for k, v in ctx.weights.items()}
    plan = ctx.plan
    # fc4__t0.t1 neuron 1 feeds fc4 readers = heads t0 and t1 (rows 1 of each head's first block)
    for t in plan.tasks:
        weights[f"{t}/kernel"][1] = 0.0
    ctx2 = ImportanceContext(plan, weights, ctx.tasks, ctx.x, ctx.ys, seed=1)
    scores = TaylorImportance(n_batches=2, batch_size=32)(ctx2)
    assert scores["fc4__t0.t1"][1] == 0.0


@pytest.mark.parametrize("name", ["taylor", "vib", "magnitude"])
def test_scores_cover_exactly_the_hidden_groups_never_heads(trained, name):
    kwargs = {"vib": {"steps": 2}, "taylor": {"n_batches": 1}}.get(name, {})
    scores = make_importance(name, **kwargs)(trained)
    assert sorted(scores) == sorted(group_layer_names(trained.plan))
    assert not set(scores) & set(trained.plan.tasks)
    for layer, groups in zip(trained.plan.chain.hidden, trained.plan.layers):
        for g in groups:
            assert scores[f"{layer.name}__{g.key}"].shape == (g.width,)


def test_unknown_criterion_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="taylor, vib, magnitude"):
        make_importance("l2")


def test_flops_cost_counts_shared_neurons_in_more_combinations(trained):
    """n = 2: a group owned by both tasks runs in 3 combinations, an exclusive one in 2."""
    plan = trained.plan
    cost = neuron_flops(plan)
    layer = plan.chain.hidden[0]          # conv1: groups read the same input, same own cost
    shared, excl = cost["conv1__t0.t1"][0], cost["conv1__t0"][0]
    own = layer.cost(1, 1).flops
    fed_shared = shared - 3 * own
    fed_excl = excl - 2 * own
    assert fed_shared > 0 and fed_excl > 0
    assert shared > excl


@pytest.mark.parametrize("kind", ["pam", "shared", "none"])
def test_neuron_flops_from_cost_py_equal_the_hand_formula(kind):
    """neuron_flops prices a neuron through pam_tf.cost; the formula it replaced, written out:
    own row (2·fan_in·C_in − 1)·positions, fed columns 2·fan_in·positions·width per reader
    and head, each × the task combinations computing that group or reader."""
    from pam_tf.build import group_layer_name
    from tests.test_prune_surgery import make_plan, tiny_pair

    _, chain = tiny_pair()
    plan = make_plan(kind, chain)
    n, hidden = len(plan.tasks), plan.chain.hidden

    def combos(owners):
        return 2 ** n - 2 ** (n - owners)
    expected = {}
    for l, (layer, groups) in enumerate(zip(hidden, plan.layers)):
        for gi, g in enumerate(groups):
            own = (2 * layer.fan_in * plan.in_channels(l, g) - 1) * layer.out_positions
            own *= combos(len(g.owners))
            fed = 0
            if l + 1 < len(hidden):
                nxt = hidden[l + 1]
                for r in plan.layers[l + 1]:
                    if gi in plan.readable(l + 1, r):
                        fed += 2 * nxt.fan_in * nxt.out_positions * r.width * combos(len(r.owners))
            else:
                for h in plan.heads:
                    if h.task in g.owners:
                        fed += 2 * plan.chain.head.fan_in * h.units * combos(1)
            expected[group_layer_name(layer, g)] = np.full(g.width, float(max(own + fed, 1)))
    got = neuron_flops(plan)
    assert set(got) == set(expected)
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k], err_msg=k)


def test_usage_mix_weights_a_group_by_the_combinations_that_run_it():
    from pam_tf.prune.selection import usage_of

    uniform = usage_of(["a", "b", "c"])
    assert uniform(("a",)) == 4 and uniform(("a", "b")) == 6 and uniform(("a", "b", "c")) == 7
    singles = usage_of(["a", "b", "c"], "singles")
    assert singles(("a",)) == 1 and singles(("a", "b", "c")) == 3
    mix = usage_of(["a", "b"], "a=3,a+b=1")
    assert mix(("a",)) == 4 and mix(("b",)) == 1 and mix(("a", "b")) == 4
    with pytest.raises(ValueError, match=r"'x=1' is not TASKS=WEIGHT .*unknown: \['x'\]"):
        usage_of(["a", "b"], "x=1", strict=True)
    assert usage_of(["a"], "a=2,b=5")(("a",)) == 2  # B1's one-task nets ignore other tasks


def test_neuron_flops_follow_the_usage_mix():
    from pam_tf.prune.selection import usage_of

    plan = make_plan("pam", tiny_pair()[1])
    uniform, singles = neuron_flops(plan), neuron_flops(plan, usage_of(plan.tasks, "singles"))
    shared = next(k for k in uniform if k.startswith("fc3__") and "." in k)
    own = next(k for k in uniform if k.startswith("fc3__") and "." not in k)
    # a shared neuron costs relatively more when users run one task at a time
    assert singles[shared][0] / singles[own][0] > uniform[shared][0] / uniform[own][0]
