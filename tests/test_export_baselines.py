"""Export of the baselines: B1 (no merging) as per-task files, fully shared as any merged plan."""
import os

import pytest

from pam_tf.export import export_all, flatbuffer_cost
from tests.export_fixtures import held_out, none2, shared2, tasks_of


@pytest.fixture(scope="module")
def b1(tmp_path_factory):
    plan, weights = none2()
    x, y = held_out(plan)
    out = str(tmp_path_factory.mktemp("none"))
    return plan, out, export_all(plan, weights, out, tasks=tasks_of(plan), x_test=x, y_test=y,
                                 multi_signature=False, progress=None, layout="split",
                                 separate_files=True)


def test_no_merge_exports_each_single_task_network_once(b1):
    _, out, manifest = b1
    assert sorted(manifest["files"]) == ["none__a.tflite", "none__b.tflite"]
    assert sorted(f for f in os.listdir(out) if f.endswith(".tflite")) == sorted(manifest["files"])


def test_no_merge_combination_lists_the_files_it_runs_and_sums_their_costs(b1):
    plan, out, manifest = b1
    both = next(c for c in manifest["combinations"] if c["tasks"] == ["a", "b"])
    assert both["files"] == ["none__a.tflite", "none__b.tflite"]
    files = [manifest["files"][f] for f in both["files"]]
    assert both["bytes"] == sum(f["bytes"] for f in files)
    assert both["gzip_bytes"] == sum(f["gzip_bytes"] for f in files)
    counted = 0
    for name in both["files"]:
        with open(os.path.join(out, name), "rb") as f:
            counted += flatbuffer_cost.count(f.read()).macs
    assert both["macs"] == both["flatbuffer_macs"] == counted == plan.cost(["a", "b"]).macs
    assert both["macs"] == plan.cost(["a"]).macs + plan.cost(["b"]).macs
    assert both["accuracy"] == {"a": manifest["combinations"][0]["accuracy"]["a"],
                                "b": manifest["combinations"][1]["accuracy"]["b"]}


def test_fully_shared_plan_exports_with_the_plans_cost(tmp_path):
    plan, weights = shared2()
    manifest = export_all(plan, weights, str(tmp_path), combinations=[["b"]],
                          multi_signature=False, progress=None, layout="split")
    (entry,) = manifest["combinations"]
    assert entry["files"] == ["shared__b.tflite"]
    assert entry["flatbuffer_macs"] == plan.cost(["b"]).macs == plan.cost(["a", "b"]).macs - \
        plan.head_cost("a").macs
