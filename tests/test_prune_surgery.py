"""Surgery: removing neurons from plan + weights equals masking them, on every kind of plan."""
import numpy as np
import pytest

from pam_tf.build import build_model, group_layer_name, inherit_weights, output_dict
from pam_tf.chain import check_same_chain, trace_model
from pam_tf.cost import keras_model_cost
from pam_tf.plan import Group, PlanError, no_merge_plan, plan_from_owners, shared_plan
from pam_tf.prune import MaskGate, remove_neurons, round_keep
from pam_tf.prune.surgery import full_keep
from tests.tiny_models import images, tiny_cnn

TASKS = ("t0", "t1")  # the tasks of pam_tf.data.synthetic (binary 2 labels, multiclass 3)
UNITS = (2, 3)
ACTS = ("sigmoid", "softmax")


def tiny_pair():
    """Two tiny 12×12 nets (conv4-pool-conv6-pool-flatten-fc10-fc8-head) for tasks t0, t1."""
    models = [tiny_cnn(1, units=2, activation="sigmoid"),
              tiny_cnn(2, units=3, activation="softmax")]
    traced = [trace_model(m) for m in models]
    return traced, check_same_chain(traced)


def pam_like(chain):
    """Per layer (conv too): one exclusive neuron per task, one dropped, the rest shared; so
    conv2 → flatten → fc3 has several row blocks per reader."""
    owners = []
    for layer in chain.hidden:
        d = layer.width
        own = [frozenset({0, 1})] * (2 * d)
        own[0], own[d], own[1] = frozenset({0}), frozenset({1}), frozenset()
        owners.append(own)
    return plan_from_owners(chain, TASKS, UNITS, ACTS, owners)


def make_plan(kind: str, chain):
    if kind == "pam":
        return pam_like(chain)
    if kind == "none":
        return no_merge_plan(chain, TASKS, UNITS, ACTS)
    if kind == "shared":
        return shared_plan(chain, TASKS, UNITS, ACTS)
    if kind == "single":
        return no_merge_plan(chain, TASKS[:1], UNITS[:1], ACTS[:1])
    raise ValueError(kind)


def trained_pam(n_train: int, n_test: int):
    """The pam-like plan of tiny_pair briefly fine-tuned on the synthetic suite: (plan, weights,
    data set). Shared by the importance and loop tests."""
    from pam_tf.data.synthetic import make_synthetic
    from pam_tf.prune.finetune import finetune

    ds = make_synthetic(2, n_train=n_train, n_test=n_test, size=12, seed=0)
    traced, chain = tiny_pair()
    plan = make_plan("pam", chain)
    weights = finetune(plan, inherit_weights(plan, traced), ds.tasks, (ds.x_train, ds.y_train),
                       steps=40, batch_size=32, lr=3e-3, seed=0)
    return plan, weights, ds


def random_keep(plan, seed=0, frac=0.5):
    """Keep about `frac` of every group's neurons, at least one, and remove at least one where
    the group has two or more."""
    rng = np.random.default_rng(seed)
    keep = {}
    for layer, groups in zip(plan.chain.hidden, plan.layers):
        for g in groups:
            m = rng.random(g.width) < frac
            if not m.any():
                m[rng.integers(g.width)] = True
            if m.all() and g.width > 1:
                m[rng.integers(g.width)] = False
            keep[group_layer_name(layer, g)] = m
    return keep


def masked_model(plan, weights, keep):
    """The unpruned model with gates fixed to the keep mask (0 = removed)."""
    return build_model(plan, weights, group_hook=lambda name, w: MaskGate(
        w, init=keep[name].astype(np.float32), name=f"{name}__mask"))


@pytest.fixture(scope="module")
def pair():
    return tiny_pair()


@pytest.mark.parametrize("kind", ["pam", "none", "shared", "single"])
def test_narrowed_model_equals_masked_model(pair, kind):
    traced, chain = pair
    plan = make_plan(kind, chain)
    weights = inherit_weights(plan, traced[:len(plan.tasks)])
    keep = random_keep(plan, seed=3)
    new_plan, new_weights = remove_neurons(plan, weights, keep)
    x = images(8)
    masked = masked_model(plan, weights, keep)
    narrow = build_model(new_plan, new_weights)
    want, got = output_dict(masked, masked(x)), output_dict(narrow, narrow(x))
    for t in plan.tasks:
        np.testing.assert_allclose(got[t], want[t], atol=1e-6, rtol=0)


def test_dense_after_flatten_rows_follow_position_major_blocks(pair):
    """Removing channel k of a conv group drops rows p·w + k of the dense reader's block."""
    traced, chain = pair
    plan = make_plan("none", chain)
    weights = inherit_weights(plan, traced)
    name = "conv2__t0"
    w = plan.layers[1][0].width
    keep = {name: np.arange(w) != 2}
    _, new_weights = remove_neurons(plan, weights, keep)
    old = weights["fc3__t0/kernel"]
    positions = old.shape[0] // w
    rows = [p * w + k for p in range(positions) for k in range(w) if k != 2]
    np.testing.assert_array_equal(new_weights["fc3__t0/kernel"], old[rows])


@pytest.mark.parametrize("kind", ["pam", "shared"])
def test_plan_cost_shrinks_and_matches_counted_cost_of_every_combination(pair, kind):
    traced, chain = pair
    plan = make_plan(kind, chain)
    weights = inherit_weights(plan, traced)
    new_plan, new_weights = remove_neurons(plan, weights, random_keep(plan, seed=5))
    assert all(n < o for n, o in zip(new_plan.widths(), plan.widths()))
    for combo in plan.combinations():
        counted, _ = keras_model_cost(build_model(new_plan, new_weights, combo))
        assert counted == new_plan.cost(combo), combo
        assert new_plan.cost(combo).flops < plan.cost(combo).flops
    assert build_model(new_plan, new_weights).count_params() < \
        build_model(plan, weights).count_params()


def test_sources_are_sliced_with_the_neurons(pair):
    traced, chain = pair
    plan = make_plan("pam", chain)
    weights = inherit_weights(plan, traced)
    keep = random_keep(plan, seed=7)
    new_plan, _ = remove_neurons(plan, weights, keep)
    for layer, old_groups, new_groups in zip(chain.hidden, plan.layers, new_plan.layers):
        for og, ng in zip(old_groups, new_groups):
            m = keep[group_layer_name(layer, og)]
            assert ng.owners == og.owners
            assert list(ng.sources) == [s for s, k in zip(og.sources, m) if k]


def test_emptied_group_disappears_and_readers_lose_its_rows(pair):
    traced, chain = pair
    plan = make_plan("pam", chain)
    weights = inherit_weights(plan, traced)
    keep = {"fc4__t0": np.zeros(plan.layers[3][1].width, bool)}  # head t0 still reads fc4__t0.t1
    new_plan, new_weights = remove_neurons(plan, weights, keep)
    assert [g.key for g in new_plan.layers[3]] == ["t0.t1", "t1"]
    assert new_weights["t0/kernel"].shape[0] == new_plan.layers[3][0].width
    x = images(4)
    masked = masked_model(plan, weights, {**full_keep(plan), **keep})
    narrow = build_model(new_plan, new_weights)
    np.testing.assert_allclose(output_dict(narrow, narrow(x))["t0"],
                               output_dict(masked, masked(x))["t0"], atol=1e-6)


def test_heads_and_unknown_layers_cannot_be_pruned(pair):
    traced, chain = pair
    plan = make_plan("none", chain)
    weights = inherit_weights(plan, traced)
    with pytest.raises(PlanError, match="unknown group layer"):
        remove_neurons(plan, weights, {"t0": np.ones(2, bool)})
    with pytest.raises(PlanError, match="bool array of shape"):
        remove_neurons(plan, weights, {"fc3__t0": np.ones(3, bool)})


def test_round_to_keeps_multiples_by_adding_back_the_best_scored():
    keep = {"a": np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0], bool),    # 3 kept → 4
            "b": np.array([1, 1, 1, 1, 0, 0], bool),                # 4 kept, a multiple
            "c": np.array([0, 0, 1], bool)}                         # width 3 < 4 → all 3
    scores = {"a": np.array([9, 8, 7, 1, 6, 2, 3, 0, 0, 0], float),
              "b": np.zeros(6), "c": np.zeros(3)}
    out = round_keep(keep, scores, 4)
    assert out["a"].tolist() == [1, 1, 1, 0, 1, 0, 0, 0, 0, 0]
    assert out["b"].tolist() == keep["b"].tolist()
    assert out["c"].all()
    assert all(m.sum() % 4 == 0 or m.all() for m in out.values())


def test_groups_nobody_reads_are_dropped_without_changing_outputs(pair):
    """conv1 has an exclusive {t0} group but conv2 has no {t0} group to read it."""
    from pam_tf.build import get_weights
    from pam_tf.prune.surgery import drop_unread_groups, unread_groups
    traced, chain = pair
    owners = []
    for l, layer in enumerate(chain.hidden):
        d = layer.width
        own = [frozenset({0, 1})] * (2 * d)
        if l == 0:
            own[0] = frozenset()
        owners.append(own)
    shared = plan_from_owners(chain, TASKS, UNITS, ACTS, owners)
    # plan_from_owners never makes an unread group; plans from elsewhere may hold one
    plan = shared.with_layers([shared.layers[0] + (Group(("t0",), ((0, 0),)),)]
                              + list(shared.layers[1:]))
    weights = inherit_weights(plan, traced)
    assert unread_groups(plan) == ["conv1__t0"]
    new_plan, new_weights, dropped = drop_unread_groups(plan, weights)
    assert dropped == ["conv1__t0"] and unread_groups(new_plan) == []
    x = images(4)
    old, new = build_model(plan, weights), build_model(new_plan, new_weights)
    for t in TASKS:
        np.testing.assert_allclose(output_dict(new, new(x))[t], output_dict(old, old(x))[t],
                                   atol=1e-6)
    assert set(get_weights(new, new_plan)) == set(new_weights)
