"""The plan: structure rules, costs from the plan alone, exact JSON round trip, precise errors."""
import copy
import json

import pytest

from pam_tf.chain import trace_model
from pam_tf.plan import (Group, Plan, PlanError, combine_single_task_plans, no_merge_plan,
                          plan_from_owners, shared_plan)
from tests.tiny_models import tiny_cnn


@pytest.fixture(scope="module")
def chain():
    return trace_model(tiny_cnn()).chain


def pam_like(chain):
    """Shared first layers, one exclusive neuron per task in the dense layers."""
    owners = []
    for layer in chain.hidden:
        d = layer.width
        own = [frozenset({0, 1})] * (2 * d)
        if layer.kind == "dense":
            own = list(own)
            own[0] = frozenset({0})
            own[d] = frozenset({1})
            own[1] = frozenset()
        owners.append(own)
    return plan_from_owners(chain, ["a", "b"], [3, 3], ["sigmoid"] * 2, owners)


def test_groups_are_canonical_and_read_supersets(chain):
    plan = pam_like(chain)
    assert [g.key for g in plan.layers[2]] == ["a.b", "a", "b"]
    assert plan.readable(3, plan.layers[3][1]) == [0, 1]  # {a} reads {a,b} and {a}
    assert plan.readable(3, plan.layers[3][0]) == [0]      # {a,b} reads only {a,b}
    assert plan.head_inputs("b") == [0, 2]
    assert plan.widths() == [8, 12, 19, 15]


def test_cost_of_combination_sums_needed_groups(chain):
    plan = no_merge_plan(chain, ["a", "b"], [3, 3], ["sigmoid"] * 2)
    a, b, ab = plan.cost(["a"]), plan.cost(["b"]), plan.cost(["a", "b"])
    assert ab == a + b
    assert a.flops == sum(layer.cost().flops for layer in chain.layers)


def test_shared_plan_costs_the_same_for_every_combination_but_heads(chain):
    plan = shared_plan(chain, ["a", "b"], [3, 3], ["sigmoid"] * 2)
    assert plan.cost(["a"]) == plan.cost(["b"])
    assert plan.cost(["a", "b"]).flops == plan.cost(["a"]).flops + plan.head_cost("b").flops


def test_json_round_trip_is_exact(chain, tmp_path):
    plan = pam_like(chain)
    path = str(tmp_path / "plan.json")
    plan.save(path)
    again = Plan.load(path)
    assert again == plan
    assert again.to_json() == plan.to_json()


def test_combinations_are_all_non_empty_subsets(chain):
    plan = no_merge_plan(chain, ["a", "b"], [3, 3], ["sigmoid"] * 2)
    assert plan.combinations() == [("a",), ("b",), ("a", "b")]


def _broken(chain, edit):
    d = copy.deepcopy(pam_like(chain).to_json())
    edit(d)
    return d


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(version=99), "plan version 99 is not supported"),
    (lambda d: d.pop("heads"), "missing field 'heads'"),
    (lambda d: d["layers"][1]["groups"][0]["owners"].append("c"),
     "layer 'conv2' group 'a.b.c': unknown owner task"),
    (lambda d: d["layers"][2]["groups"][1]["sources"].append([0, 999]),
     r"layer 'fc3' group 'a': source neuron \(0, 999\) is outside 2 models × 10 neurons"),
    (lambda d: d["layers"][0]["groups"][0]["sources"].append([0, 0]),
     r"layer 'conv1': source neuron \(0, 0\) appears twice"),
    (lambda d: d["layers"][2]["groups"].reverse(), "layer 'fc3': groups are not in canonical"),
    (lambda d: d["layers"][3].update(name="fc9"), "layer names"),
    (lambda d: d["tasks"].__setitem__(0, "A B"), "task name 'A B' must match"),
    (lambda d: d["layers"][3].update(groups=[g for g in d["layers"][3]["groups"]
                                            if g["owners"] != ["a", "b"] and g["owners"] != ["a"]]),
     "head 'a': no group of the last hidden layer 'fc4' is owned by 'a'"),
])
def test_corrupted_plans_are_rejected_precisely(chain, edit, message):
    with pytest.raises(PlanError, match=message):
        Plan.from_json(_broken(chain, edit), where="p.json")


def test_a_group_that_reads_nothing_is_rejected(chain):
    plan = no_merge_plan(chain, ["a", "b"], [3, 3], ["sigmoid"] * 2)
    d = plan.to_json()
    # fc4 group owned by {a,b} cannot read the exclusive groups of fc3
    d["layers"][3]["groups"].insert(0, {"owners": ["a", "b"], "sources": [[0, 0]]})
    d["layers"][3]["groups"][1]["sources"] = d["layers"][3]["groups"][1]["sources"][1:]
    with pytest.raises(PlanError, match=r"layer 'fc4' group 'a.b': reads nothing"):
        Plan.from_json(d)


def test_not_json_is_a_clear_error(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text("{oops")
    with pytest.raises(PlanError, match="plan.json: not valid JSON"):
        Plan.load(str(path))


def test_plan_from_owners_drops_groups_that_cannot_read(chain):
    owners = []
    for l, layer in enumerate(chain.hidden):
        d = layer.width
        if l == 1:  # only exclusive groups in conv2 ...
            own = [frozenset({0})] * d + [frozenset({1})] * d
        else:       # ... so the shared group of fc3 has nothing to read and is dropped
            own = [frozenset({0, 1})] * (2 * d)
        owners.append(own)
    own = list(owners[2])
    own[0] = frozenset({0})
    own[chain.hidden[2].width] = frozenset({1})
    owners[2] = own
    owners[3] = [frozenset({0})] * chain.hidden[3].width + [frozenset({1})] * chain.hidden[3].width
    plan = plan_from_owners(chain, ["a", "b"], [3, 3], ["sigmoid"] * 2, owners)
    assert [g.key for g in plan.layers[2]] == ["a", "b"]
    assert plan.meta["dropped_unreadable"] == 2 * chain.hidden[2].width - 2
    assert json.loads(json.dumps(plan.to_json()))["meta"]["dropped_unreadable"] > 0


def test_group_key_and_width():
    g = Group(("a", "b"), ((0, 1), (1, 2)))
    assert (g.key, g.width) == ("a.b", 2)


def test_single_task_plans_combine_into_the_no_merge_plan(chain):
    one = [no_merge_plan(chain, [t], [3], ["sigmoid"]) for t in ("a", "b")]
    both = combine_single_task_plans(one)
    assert both == no_merge_plan(chain, ["a", "b"], [3, 3], ["sigmoid"] * 2)
    assert both.cost(["a", "b"]) == one[0].cost(["a"]) + one[1].cost(["b"])


def test_plan_from_owners_drops_groups_nothing_reads(chain):
    owners = [[frozenset({0, 1})] * (2 * layer.width) for layer in chain.hidden]
    owners[0] = list(owners[0])
    owners[0][0] = frozenset({0})  # an {a} group in conv1, but conv2 has no {a} group to read it
    plan = plan_from_owners(chain, ["a", "b"], [3, 3], ["sigmoid"] * 2, owners)
    assert [g.key for g in plan.layers[0]] == ["a.b"]
    assert plan.meta["dropped_unread"] == 1


def test_attribution_splits_a_combination_cost_by_owner_set(chain):
    plan = pam_like(chain)
    for combo in plan.combinations():
        parts = plan.attribution(combo)
        assert sum(parts.values()) == plan.cost(combo).flops
    assert "b" not in plan.attribution(["a"]) and set(plan.attribution(["a", "b"])) == \
        {"a+b", "a", "b", "heads"}
