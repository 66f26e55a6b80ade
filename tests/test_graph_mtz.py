"""Multi-Task Zipping (B2) on graph networks: class by class, one-to-one pairs, exact on equal
networks, depthwise filters averaged, degree 0 the no-merge plan, one degree for every class."""
import numpy as np
import pytest

from pam_tf.build import output_dict
from pam_tf.config import MtzConfig
from pam_tf.graph.build import build_graph_model, inherit_graph_weights
from pam_tf.graph.mtz import zip_graph_networks
from pam_tf.graph.plan import graph_no_merge_plan
from pam_tf.graph.trace import trace_graph
from pam_tf.tasks import Task
from tests.graph_models import images, inverted_residual, residual_block

BUILDERS = {"residual": residual_block, "inverted": inverted_residual}


def tasks_for(n):
    return [Task(name, "binary", 2, ("x", "y")) for name in "abc"[:n]]


def train_data(n_tasks=2, n_images=48, seed=0):
    x = images(n_images, seed=seed)
    rng = np.random.default_rng(seed)
    return x, {t.name: (rng.random((n_images, 2)) > 0.5).astype(np.float32)
               for t in tasks_for(n_tasks)}


def zipped(models, steps=0, merge="1", seed=0):
    traced = [trace_graph(m, name) for m, name in zip(models, "abc")]
    config = MtzConfig(mtz_retrain_steps=steps, mtz_samples=48, mtz_merge=merge)
    net = zip_graph_networks(traced, tasks_for(len(models)), train_data(len(models)), config,
                             seed=seed, progress=lambda line: None)
    return traced, net


def outputs(net, x):
    model = build_graph_model(net.plan, net.weights)
    return output_dict(model, model(x))


@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_two_identical_networks_zip_into_one_trunk_computing_the_original_function(arch):
    """The merge of two equal channels is that channel: before any retraining the zipped
    network computes each original network's outputs."""
    model = BUILDERS[arch](1)
    traced, net = zipped([model, model])
    graph = traced[0].graph
    assert [[g.key for g in groups] for groups in net.plan.classes] == \
        [["a.b"]] * len(graph.class_names)
    assert net.plan.widths() == [graph.class_width(c) for c in range(len(graph.class_names))]
    x = images(16, seed=5)
    expected = model.predict(x, verbose=0)
    for task, y in outputs(net, x).items():
        np.testing.assert_allclose(y, expected, atol=1e-5, err_msg=task)
    for record in net.plan.meta["mtz"]["classes"]:
        (zipped_in,) = record["zips"]
        assert zipped_in["cost_max"] < 1e-4, record
        # equal networks: every channel is paired with its own copy
        assert all(a[1] == b[1] for a, b in zipped_in["matched"]), record


def test_different_residual_networks_end_fully_shared_with_one_to_one_pairs():
    traced, net = zipped([residual_block(1), residual_block(2)], steps=2)
    graph = traced[0].graph
    assert [c["class"] for c in net.plan.meta["mtz"]["classes"]] == list(graph.class_names)
    for c, groups in enumerate(net.plan.classes):
        width = graph.class_width(c)
        assert [(g.key, g.width) for g in groups] == [("a.b", width)]  # trunk width, not 2x
        (record,) = net.plan.meta["mtz"]["classes"][c]["zips"]
        a_side = [tuple(a) for a, _ in record["matched"]]
        b_side = [tuple(b) for _, b in record["matched"]]
        assert record["pairs"] == width == len(set(a_side)) == len(set(b_side))
        assert {m for m, _ in a_side} == {0} and {m for m, _ in b_side} == {1}
        assert record["cost_total"] > 0
    out = outputs(net, images(8, seed=2))
    assert set(out) == {"a", "b"} and all(np.isfinite(y).all() for y in out.values())
    for combo in net.plan.combinations():
        build_graph_model(net.plan, net.weights, combo).predict(images(2), verbose=0)


def test_seeded_zips_with_retraining_are_deterministic():
    nets = [zipped([residual_block(1), residual_block(2)], steps=3, seed=4)[1] for _ in range(2)]
    assert nets[0].plan.to_json() == nets[1].plan.to_json()
    for key, value in nets[0].weights.items():
        np.testing.assert_array_equal(value, nets[1].weights[key], err_msg=key)


def test_a_merged_pair_takes_the_mean_of_its_depthwise_filters_and_of_equal_input_producers():
    """Without retraining: the depthwise filter of a pair is the mean of the two; the stem reads
    the image, which both sides share (H_A = H_B), so its merged kernel is the mean too."""
    traced, net = zipped([inverted_residual(1), inverted_residual(2)])
    graph = traced[0].graph
    records = {c["class"]: c["zips"][0]["matched"] for c in net.plan.meta["mtz"]["classes"]}
    for node_name, cls_name in (("dw", "expand"), ("stem", "stem")):
        c = graph.class_names.index(cls_name)
        (group,) = net.plan.classes[c]
        pairs = dict((tuple(a), tuple(b)) for a, b in records[cls_name])
        kernel = net.weights[f"{node_name}__a.b/kernel"]
        bias = net.weights[f"{node_name}__a.b/bias"]
        (ka, ba), (kb, bb) = traced[0].weights[node_name], traced[1].weights[node_name]
        assert group.sources == tuple(sorted(pairs))  # the trunk's channels carry the pairs
        for pos, (m, i) in enumerate(group.sources):
            _, j = pairs[(m, i)]
            if node_name == "dw":
                np.testing.assert_allclose(kernel[:, :, pos, 0],
                                           (ka[:, :, i, 0] + kb[:, :, j, 0]) / 2, atol=1e-6)
            else:
                np.testing.assert_allclose(kernel[..., pos], (ka[..., i] + kb[..., j]) / 2,
                                           atol=1e-5)
            np.testing.assert_allclose(bias[pos], (ba[i] + bb[j]) / 2, atol=1e-5)


def test_three_networks_are_zipped_in_one_at_a_time_into_one_trunk():
    traced, net = zipped([inverted_residual(s) for s in (1, 2, 3)])
    graph = traced[0].graph
    assert [[(g.key, g.width) for g in groups] for groups in net.plan.classes] == \
        [[("a.b.c", graph.class_width(c))] for c in range(len(graph.class_names))]
    for record in net.plan.meta["mtz"]["classes"]:
        assert [(z["task"], z["into"]) for z in record["zips"]] == [("b", "a"), ("c", "a+b")]


def test_degree_zero_zips_nothing_and_gives_the_no_merge_plan():
    traced, net = zipped([residual_block(1), residual_block(2)], merge="0")
    graph = traced[0].graph
    plain = graph_no_merge_plan(graph, ["a", "b"], [2, 2], ["linear", "linear"])
    assert net.plan.classes == plain.classes and net.plan.heads == plain.heads
    assert net.plan.meta["mtz"]["classes"] == []
    inherited = inherit_graph_weights(plain, traced)
    assert set(net.weights) == set(inherited)
    for key, value in inherited.items():
        np.testing.assert_array_equal(net.weights[key], value, err_msg=key)


def test_a_merge_degree_per_layer_is_refused_naming_the_flag():
    with pytest.raises(ValueError, match=r"--mtz_merge=1,0.5: graph networks take one merge "
                                         r"degree for every coupling class \(3 classes: c1, b1, "
                                         r"c3\)"):
        zipped([residual_block(1), residual_block(2)], merge=("1", "0.5"))
