"""Build: any plan + weights → a Keras multitask model; sub-models per combination."""
import numpy as np
import pytest

from pam_tf.build import (build_model, check_weights, get_weights, inherit_weights, output_dict)
from pam_tf.chain import check_same_chain, trace_model
from pam_tf.cost import keras_model_cost
from pam_tf.plan import PlanError, no_merge_plan, shared_plan
from tests.test_plan import pam_like
from tests.tiny_models import images, tiny_cnn


@pytest.fixture(scope="module")
def pair():
    models = [tiny_cnn(1, units=3), tiny_cnn(2, units=4, activation="softmax")]
    traced = [trace_model(m) for m in models]
    return models, traced, check_same_chain(traced)


def test_no_merge_plan_reproduces_each_original_network_exactly(pair):
    models, traced, chain = pair
    plan = no_merge_plan(chain, ["a", "b"], [3, 4], ["sigmoid", "softmax"])
    full = build_model(plan, inherit_weights(plan, traced))
    x = images()
    out = output_dict(full, full(x))
    np.testing.assert_array_equal(out["a"], models[0](x).numpy())
    np.testing.assert_array_equal(out["b"], models[1](x).numpy())


def test_shared_plan_is_block_diagonal_and_reproduces_the_networks(pair):
    models, traced, chain = pair
    plan = shared_plan(chain, ["a", "b"], [3, 4], ["sigmoid", "softmax"])
    full = build_model(plan, inherit_weights(plan, traced))
    out = output_dict(full, full(images()))
    np.testing.assert_allclose(out["b"], models[1](images()).numpy(), atol=1e-6)


@pytest.mark.parametrize("make", ["pam", "none", "shared"])
def test_single_task_submodel_computes_exactly_that_head_of_the_full_model(pair, make):
    models, traced, chain = pair
    plan = {"pam": lambda: pam_like(chain),
            "none": lambda: no_merge_plan(chain, ["a", "b"], [3, 3], ["sigmoid"] * 2),
            "shared": lambda: shared_plan(chain, ["a", "b"], [3, 3], ["sigmoid"] * 2)}[make]()
    traced3 = [traced[0], trace_model(tiny_cnn(3, units=3))]
    weights = inherit_weights(plan, traced3)
    full = build_model(plan, weights)
    x = images()
    out = output_dict(full, full(x))
    for task in ["a", "b"]:
        sub = build_model(plan, weights, [task])
        np.testing.assert_array_equal(sub(x).numpy(), out[task])
        assert sub.output_names == [task]


def test_plan_cost_equals_cost_counted_on_every_built_submodel(pair):
    _, traced, chain = pair
    plan = pam_like(chain)
    for combo in plan.combinations():
        counted, _ = keras_model_cost(build_model(plan, None, combo))
        assert counted == plan.cost(combo), combo


def test_submodel_holds_only_the_groups_its_combination_needs(pair):
    _, _, chain = pair
    plan = pam_like(chain)
    names = {layer.name for layer in build_model(plan, None, ["a"]).layers}
    assert "fc3__a" in names and "fc3__a.b" in names and "fc3__b" not in names


def test_mismatched_weights_are_refused_by_name(pair):
    _, traced, chain = pair
    plan = pam_like(chain)
    weights = inherit_weights(plan, [traced[0], trace_model(tiny_cnn(3, units=3))])
    weights["fc3__a/kernel"] = weights["fc3__a/kernel"][:, :0]
    with pytest.raises(PlanError, match=r"'fc3__a/kernel' has shape \(\d+, 0\), the plan needs"):
        check_weights(plan, weights)
    del weights["fc3__a/kernel"]
    with pytest.raises(PlanError, match="missing 1 array"):
        build_model(plan, weights)


def test_weights_round_trip_through_the_model(pair):
    _, traced, chain = pair
    plan = pam_like(chain)
    weights = inherit_weights(plan, [traced[0], trace_model(tiny_cnn(3, units=3))])
    again = get_weights(build_model(plan, weights), plan)
    assert set(again) == set(weights)
    for k in weights:
        np.testing.assert_array_equal(again[k], weights[k])


def test_inherited_weights_zero_across_networks(pair):
    _, traced, chain = pair
    plan = shared_plan(chain, ["a", "b"], [3, 4], ["sigmoid", "softmax"])
    w = inherit_weights(plan, traced)["conv2__a.b/kernel"]  # (3,3, 2×4, 2×6)
    assert np.all(w[:, :, 4:, :6] == 0) and np.all(w[:, :, :4, 6:] == 0)
    np.testing.assert_array_equal(w[:, :, :4, :6], traced[0].weights[1][0])


def test_a_group_only_other_tasks_read_is_not_computed_for_a_combination():
    from pam_tf.plan import plan_from_owners
    from tests.export_fixtures import _owners, traced_nets

    traced = traced_nets(3)
    chain = check_same_chain(traced)
    owners = []
    for l, layer in enumerate(chain.hidden):
        d = layer.width
        spec = [(0, 0, d // 2, {0, 1, 2})]
        spec += [(1, 0, 2, {0, 1})] if l == 1 else [(1, 0, 1, {0})] if l > 1 else []
        owners.append(_owners(d, spec))
    plan = plan_from_owners(chain, ["a", "b", "c"], [3, 3, 3], ["sigmoid"] * 3, owners)
    assert [g.owners for g in plan.layers[1]] == [("a", "b", "c"), ("a", "b")]
    assert [g.owners for g in plan.layers[2]] == [("a", "b", "c"), ("a",)]
    # conv2's {a, b} group is read only by fc3's {a} group: task b alone does not compute it
    assert plan.needed(["b"])[1] == [0] and plan.needed(["a"])[1] == [0, 1]
    weights = inherit_weights(plan, traced)
    for combo in plan.combinations():
        counted, _ = keras_model_cost(build_model(plan, weights, combo))
        assert counted == plan.cost(combo), combo
