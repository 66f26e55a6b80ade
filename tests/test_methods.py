"""Methods as objects: one registry, producers of plans, and no module that tests a name."""
import ast
import os

import numpy as np
import pytest

from pam_tf.build import inherit_weights, weight_shapes
from pam_tf.methods import METHODS, MergeInputs, get_method, methods_of_run
from pam_tf.plan import PlanError, combine_single_task_plans, no_merge_plan, split_by_task
from pam_tf.tasks import Task
from tests.export_fixtures import traced_nets



def tiny_traced(n):
    return traced_nets(n), [Task(f"t{i}", "binary", 3, ("x", "y", "z")) for i in range(n)]


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_registry_names_plan_methods_and_labels_uniquely():
    assert [m.name for m in METHODS.values()] == list(METHODS)
    assert len({m.label for m in METHODS.values()}) == len(METHODS)
    assert [m.label for m in methods_of_run("pam", compare=True)] == ["pam", "b1", "b2"]
    assert [m.label for m in methods_of_run("none", compare=True)] == ["b1", "b2"]
    with pytest.raises(ValueError, match="unknown merge method 'mtx'; one of pam, none, mtz, shared"):
        get_method("mtx")


def test_baselines_choose_what_compare_adds_and_bad_names_are_refused():
    assert [m.label for m in methods_of_run("pam", True, baselines=("none",))] == ["pam", "b1"]
    assert [m.label for m in methods_of_run("pam", True, baselines=("mtz", "none"))] == \
        ["pam", "b2", "b1"]
    assert [m.label for m in methods_of_run("pam", False, baselines=("mtx",))] == ["pam"]
    with pytest.raises(ValueError, match="--baselines: unknown method 'mtx'"):
        methods_of_run("pam", True, baselines=("none", "mtx"))
    with pytest.raises(ValueError, match="a method is named twice"):
        methods_of_run("pam", True, baselines=("none", "none"))


def test_no_merge_plan_splits_into_the_single_task_plans_and_back():
    traced, tasks = tiny_traced(2)
    whole = get_method("none").produce(MergeInputs(traced, tasks))
    weights = inherit_weights(whole, traced)
    singles = split_by_task(whole)
    for i, single in enumerate(singles):
        alone = no_merge_plan(traced[i].chain, [tasks[i].name], [tasks[i].n_outputs],
                              [traced[i].chain.head.activation])
        assert single == alone
        own = inherit_weights(alone, [traced[i]])
        assert set(own) == set(weight_shapes(single))
        for k, v in own.items():
            np.testing.assert_array_equal(v, weights[k])
    assert combine_single_task_plans(singles).layers == whole.layers


def test_a_plan_with_shared_groups_does_not_split():
    traced, tasks = tiny_traced(2)
    shared = get_method("shared").produce(MergeInputs(traced, tasks))
    with pytest.raises(PlanError, match="shares group"):
        split_by_task(shared)


def _method_name_tests(path):
    """Comparisons of a `.method` or `method` expression with a string literal."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            names = [node.left, *node.comparators]
            named = any((isinstance(n, ast.Attribute) and n.attr == "method") or
                        (isinstance(n, ast.Name) and n.id == "method") for n in names)
            literal = any(isinstance(n, ast.Constant) and isinstance(n.value, str)
                          for n in names)
            if named and literal:
                hits.append(f"{path}:{node.lineno}")
    return hits


def test_no_module_tests_a_method_name():
    hits = []
    for folder in ("pam_tf", "tools", "android_bench"):
        for base, _, files in os.walk(os.path.join(ROOT, folder)):
            hits += [h for f in files if f.endswith(".py")
                     for h in _method_name_tests(os.path.join(base, f))]
    assert hits == []
