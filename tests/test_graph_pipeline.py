"""The main job on graph networks (mobilenetv2_small on the synthetic suite): PAM, B1 and B2
trace, merge, prune and export every combination; what graphs lack is refused up front."""
import json
import os

import pytest

from pam_tf.graph.plan import GraphPlan, load_any_plan
from pam_tf.pipeline import InputError, Pipeline, RunConfig
from tests.tiny_models import synthetic_model_files

FAST = dict(train_samples=256, val_samples=128, finetune_steps=4, max_prune_steps=2,
            info_samples=64, criterion="magnitude", budget=50.0, layout="split",
            benchmark=False, compare=False, initial_finetune_steps=4, final_finetune_steps=0)


@pytest.fixture(scope="module")
def graph_models(tmp_path_factory):
    return synthetic_model_files(tmp_path_factory.mktemp("graph_models"), epochs=1,
                                 arch="mobilenetv2_small")


def test_main_job_merges_prunes_and_exports_a_graph_network_against_b1(graph_models, tmp_path):
    """PAM with B1 as the only baseline (--baselines=none): both trace, prune and export."""
    out = str(tmp_path / "out")
    pipeline = Pipeline(RunConfig.from_flat(graph_models, "synthetic", **{
        **FAST, "compare": True, "baselines": "none"}), out, lambda line: None)
    assert [m.label for m in pipeline.methods] == ["pam", "b1"]
    pipeline.run_all()
    for method, where in (("pam", out), ("none", os.path.join(out, "baselines", "b1"))):
        merged, plan = (load_any_plan(os.path.join(where, n)) for n in ("plan_merged.json",
                                                                        "plan.json"))
        assert isinstance(plan, GraphPlan) and plan.method == method
        assert plan.cost(plan.tasks).flops < merged.cost(merged.tasks).flops
        manifest = json.load(open(os.path.join(where, "tflite", "manifest.json")))
        assert [c["tasks"] for c in manifest["combinations"]] == [["t0"], ["t1"], ["t0", "t1"]]
        for entry in manifest["combinations"]:
            assert entry["flatbuffer_macs"] == entry["macs"] == plan.cost(entry["tasks"]).macs
            assert entry["max_abs_diff"] <= 1e-5 and entry["accuracy"] is not None
    report = open(os.path.join(out, "report.md")).read()
    assert "| t0+t1 |" in report and "B1 (no merging)" in report


def test_b2_zips_prunes_and_exports_a_graph_network_in_the_main_job(graph_models, tmp_path):
    """--compare with the default baselines (B1 and B2): B2 zips every coupling class into one
    trunk, is pruned and exported like the others, its MACs counted in the flatbuffers."""
    out = str(tmp_path / "out")
    lines = []
    pipeline = Pipeline(RunConfig.from_flat(graph_models, "synthetic", **{
        **FAST, "compare": True, "mtz_samples": 64, "mtz_retrain_steps": 2}), out, lines.append)
    assert [m.label for m in pipeline.methods] == ["pam", "b1", "b2"]
    pipeline.run_all()
    assert any("MTZ: zipping 2 graph networks class by class" in line for line in lines)
    where = os.path.join(out, "baselines", "b2")
    merged, plan = (load_any_plan(os.path.join(where, n)) for n in ("plan_merged.json",
                                                                    "plan.json"))
    assert isinstance(merged, GraphPlan) and merged.method == plan.method == "mtz"
    assert [[g.owners for g in groups] for groups in merged.classes] == \
        [[("t0", "t1")]] * len(merged.graph.class_names)
    assert merged.widths() == [merged.graph.class_width(c)
                               for c in range(len(merged.graph.class_names))]
    assert len(merged.meta["mtz"]["classes"]) == len(merged.graph.class_names)
    assert plan.cost(plan.tasks).flops < merged.cost(merged.tasks).flops  # pruned as well
    manifest = json.load(open(os.path.join(where, "tflite", "manifest.json")))
    assert [c["tasks"] for c in manifest["combinations"]] == [["t0"], ["t1"], ["t0", "t1"]]
    for entry in manifest["combinations"]:
        assert entry["flatbuffer_macs"] == entry["macs"] == plan.cost(entry["tasks"]).macs
        assert entry["max_abs_diff"] <= 1e-5 and entry["accuracy"] is not None
    assert "B2 (MTZ)" in open(os.path.join(out, "report.md")).read()


def test_pam_s_is_refused_up_front_for_graph_networks(graph_models, tmp_path):
    with pytest.raises(InputError, match=r"PAM-S .* is not implemented for them"):
        Pipeline(RunConfig.from_flat(graph_models, "synthetic", **{**FAST, "specialise": True}),
                 str(tmp_path / "a"), lambda line: None).run_all()


@pytest.mark.parametrize("setting,message", [
    ({"layout": "fused"}, "--layout=fused is not implemented for them"),
    ({"criterion": "vib"}, "pruned with the coupled magnitude or Taylor criterion"),
    ({"distribute": "mirrored"}, "--distribute=mirrored is not implemented for them"),
    ({"lr_decay": "cosine"}, "--lr_decay=cosine is not implemented for graph networks"),
    ({"compare": True, "mtz_merge": ["1", "0.5"]},
     r"B2 \(MTZ\): --mtz_merge=1,0.5: graph networks take one merge degree for every coupling "
     "class"),
])
def test_settings_graph_networks_lack_are_refused_up_front(graph_models, tmp_path, setting,
                                                           message):
    with pytest.raises(InputError, match=message):
        Pipeline(RunConfig.from_flat(graph_models, "synthetic", **{**FAST, **setting}),
                 str(tmp_path / "a"), lambda line: None).run_all()
