"""PAM over coupling classes: every class is regrouped once, from all the tensors it covers."""
import numpy as np

from pam_tf.config import InfoConfig, MergeConfig
from pam_tf.graph.build import build_graph_model, inherit_graph_weights
from pam_tf.graph.merge import (class_sq, class_tensors, graph_plan_from_owners,
                                pam_graph_plan, pooled_class_activations)
from pam_tf.graph.trace import trace_graph
from pam_tf.regroup import neuron_sq_diffs
from pam_tf.tasks import Task
from tests.graph_models import images, residual_block

TASKS = [Task("a", "binary", 2, ("x", "y")), Task("b", "binary", 2, ("x", "y"))]


def _setup():
    models = [residual_block(seed=s) for s in range(2)]
    traced = [trace_graph(m) for m in models]
    x = images(32, seed=3)
    y = {"a": (x[:, :4, :4, 0].mean(axis=(1, 2))[:, None] > np.array([0.4, 0.5])).astype("f4"),
         "b": (x[:, 4:, 4:, 1].mean(axis=(1, 2))[:, None] > np.array([0.5, 0.6])).astype("f4")}
    return models, traced, x, y


def test_a_class_covers_every_tensor_its_channels_live_in():
    g = trace_graph(residual_block()).graph
    assert class_tensors(g) == [["c1", "c2", "add", "r3"], ["b1"], ["c3"]]


def test_class_information_sums_over_its_tensors():
    models, traced, x, _ = _setup()
    acts = pooled_class_activations(models, traced, x)
    assert [len(a) for a in acts] == [4, 1, 1]
    assert acts[0][0].shape == (32, 8)  # 2 networks x 4 channels, model-major
    np.testing.assert_allclose(class_sq(acts[0]), sum(neuron_sq_diffs(a) for a in acts[0]))
    ref = models[1].get_layer("r1").output  # channel 0 of network 1 in c1's class, post-ReLU
    from pam_tf.compat import keras
    value = keras.Model(models[1].inputs, ref)(x).numpy().max(axis=(1, 2))
    np.testing.assert_allclose(acts[0][0][:, 4:], value, rtol=1e-5)


def test_pam_regroups_each_class_once_and_builds():
    models, traced, x, y = _setup()
    plan = pam_graph_plan(models, traced, TASKS, x, y, MergeConfig(alpha=0.3),
                          InfoConfig(), progress=lambda s: None)
    assert [c["class"] for c in plan.meta["classes"]] == ["c1", "b1", "c3"]
    assert [c["tensors"] for c in plan.meta["classes"]] == [4, 1, 1]
    weights = inherit_graph_weights(plan, traced)
    out = build_graph_model(plan, weights)(x[:2])
    assert [o.shape for o in out] == [(2, 2), (2, 2)]
    for t in ("a", "b"):
        assert plan.cost([t]).macs <= plan.cost(["a", "b"]).macs


def test_alpha_zero_shares_every_informative_channel():
    models, traced, x, y = _setup()
    plan = pam_graph_plan(models, traced, TASKS, x, y, MergeConfig(alpha=0.0),
                          InfoConfig(), progress=lambda s: None)
    for c, groups in enumerate(plan.classes):
        assert [g.owners for g in groups] == [("a", "b")], plan.graph.class_names[c]


def test_unreadable_groups_are_dropped_and_coupling_propagates_the_drop():
    import pytest
    from pam_tf.plan import PlanError
    g = trace_graph(residual_block()).graph
    a, b, ab = frozenset({0}), frozenset({1}), frozenset({0, 1})
    # c3's {a, b} channels would read a {a, b} group of class c1, which has none
    owners = [[a] * 4 + [b] * 4, [a] * 5 + [b] * 5, [a] * 4 + [ab] + [b] * 4 + [ab]]
    plan = graph_plan_from_owners(g, ["a", "b"], [2, 2], ["linear"] * 2, owners)
    assert [[x.owners for x in gs] for gs in plan.classes] == [
        [("a",), ("b",)], [("a",), ("b",)], [("a",), ("b",)]]
    assert plan.meta["dropped_unreadable"] == 2
    # a shared residual stream needs a shared group inside the block too: c2 writes class c1
    # from b1, so without a {a, b} group in b1 the whole stream goes, and no head can be fed
    owners = [[ab] * 8, [a] * 5 + [b] * 5, [a] * 5 + [b] * 5]
    with pytest.raises(PlanError, match="class 'c1': no groups"):
        graph_plan_from_owners(g, ["a", "b"], [2, 2], ["linear"] * 2, owners)
