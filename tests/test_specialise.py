"""PAM-S: a task's sub-network cut out of a merged net computes exactly what the merged net
computes for that task; the main job prunes it alone and reports it beside PAM."""
import os

import numpy as np
import pytest

from pam_tf.artifacts import Network
from pam_tf.build import build_model, inherit_weights, output_dict
from pam_tf.methods import methods_of_run
from pam_tf.pipeline import InputError, Pipeline
from pam_tf.plan import plan_from_owners
from pam_tf.specialise import cut_task
from tests.export_fixtures import jitter, traced_nets
from tests.tiny_models import images
from tests.test_pipeline import config, model_files  # noqa: F401  (module-scoped fixture)


def subsets_network(seed: int = 0) -> Network:
    """A 3-task merged net with groups owned by every kind of task subset, jittered weights."""
    traced = traced_nets(3)
    chain = traced[0].chain
    rng = np.random.default_rng(seed)
    owners = []
    for layer in chain.hidden:
        sets = [frozenset(int(t) for t in np.flatnonzero(rng.random(3) < 0.6))
                for _ in range(3 * layer.width)]
        sets[0] = frozenset({0, 1, 2})  # an all-task neuron in every layer: every group reads
        owners.append(sets)
    plan = plan_from_owners(chain, ["a", "b", "c"], [3, 3, 3], ["sigmoid"] * 3, owners)
    return Network(plan, jitter(inherit_weights(plan, traced), seed))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_cut_sub_network_computes_the_merged_networks_outputs(seed):
    net = subsets_network(seed)
    x = images(8)
    full = output_dict(m := build_model(net.plan, net.weights), m.predict(x, verbose=0))
    for task in net.plan.tasks:
        cut = cut_task(net, task)
        assert cut.plan.tasks == (task,)
        assert all(len(groups) == 1 and groups[0].owners == (task,) for groups in cut.plan.layers)
        assert [g[0].width for g in cut.plan.layers] == [
            sum(net.plan.layers[l][i].width for i in idx)
            for l, idx in enumerate(net.plan.needed((task,)))]
        got = build_model(cut.plan, cut.weights).predict(x, verbose=0)
        np.testing.assert_allclose(got, full[task], atol=1e-5)


def test_specialise_needs_pam_as_the_primary_method(model_files):  # noqa: F811
    with pytest.raises(ValueError, match="--specialise .* use it with --method=pam"):
        methods_of_run("none", compare=True, specialise=True)
    with pytest.raises(InputError, match="--specialise"):
        Pipeline(config(model_files, method="none", specialise=True), "unused")
    assert [m.label for m in methods_of_run("pam", True, True)] == ["pam", "b1", "b2", "pam_spec"]


def test_the_main_job_prunes_each_cut_alone_and_exports_one_file_per_task(model_files,  # noqa
                                                                          tmp_path):
    out = str(tmp_path / "out")
    pipe = Pipeline(config(model_files, specialise=True), out, lambda _l: None)
    pipe.run_all()
    spec = pipe.method_result(pipe.methods[-1])
    pam = pipe.method_result(pipe.methods[0])
    assert spec.plan_merged.to_json()["layers"] == pam.plan.to_json()["layers"]
    assert all(len(g.owners) == 1 for groups in spec.plan.layers for g in groups)
    by_combo = {"+".join(e["tasks"]): e for e in spec.manifest["combinations"]}
    for combo in spec.plan.combinations():
        assert by_combo["+".join(combo)]["flops"] == spec.plan.cost(combo).flops
    files = sorted(os.listdir(os.path.join(out, "baselines", "pam_spec", "tflite")))
    assert [f for f in files if f.endswith(".tflite")] == [
        f"pam_spec__{t}.fused.tflite" for t in spec.plan.tasks]  # no multi-signature file
    assert "PAM-S" in open(os.path.join(out, "report.md")).read()
