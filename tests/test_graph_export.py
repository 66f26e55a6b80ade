"""export_all on graph plans: every combination's file matches Keras within the float32
tolerance and counts the plan's MACs (split layout); B1 exports one file per task; the fused
layout is refused by name."""
import numpy as np
import pytest

from pam_tf.export import export_all, load_manifest
from pam_tf.graph.build import inherit_graph_weights
from pam_tf.graph.plan import graph_no_merge_plan, graph_shared_plan
from pam_tf.graph.trace import trace_graph
from pam_tf.tasks import Task
from tests.graph_models import images, inverted_residual

TASKS = [Task("a", "binary", 2, ("x", "y")), Task("b", "binary", 2, ("x", "y"))]


def _plan(producer):
    traced = [trace_graph(inverted_residual(seed=s)) for s in range(2)]
    plan = producer(traced[0].graph, ["a", "b"], [2, 2], ["sigmoid", "sigmoid"])
    return plan, inherit_graph_weights(plan, traced)


def test_split_export_of_a_merged_graph_plan_checks_parity_and_macs(tmp_path):
    plan, weights = _plan(graph_shared_plan)
    x = images(8, seed=2)
    y = {t: (x[:, :2, :2, i].mean(axis=(1, 2))[:, None] > [0.4, 0.6]).astype("f4")
         for i, t in enumerate(("a", "b"))}
    manifest = export_all(plan, weights, str(tmp_path), tasks=TASKS, x_test=x, y_test=y,
                          layout="split", progress=None)
    assert [c["tasks"] for c in manifest["combinations"]] == [["a"], ["b"], ["a", "b"]]
    for entry in manifest["combinations"]:
        assert entry["flatbuffer_macs"] == entry["macs"] == plan.cost(entry["tasks"]).macs
        assert entry["max_abs_diff"] <= 1e-5
    assert manifest["multi_signature"]["signatures"].keys() == {"a", "b", "a+b"}
    assert load_manifest(str(tmp_path))["method"] == "shared"


def test_b1_graph_export_runs_one_file_per_task(tmp_path):
    plan, weights = _plan(graph_no_merge_plan)
    manifest = export_all(plan, weights, str(tmp_path), layout="split", separate_files=True,
                          multi_signature=False, progress=None)
    both = manifest["combinations"][-1]
    assert both["files"] == ["none__a.tflite", "none__b.tflite"]
    assert both["flatbuffer_macs"] == plan.cost(["a", "b"]).macs


def test_fused_layout_is_refused_for_graph_plans(tmp_path):
    plan, weights = _plan(graph_shared_plan)
    with pytest.raises(ValueError, match="layout='fused' is not implemented for graph plans"):
        export_all(plan, weights, str(tmp_path), progress=None)
