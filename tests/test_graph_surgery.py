"""Coupled removal: a class channel leaves every node of its class, and the narrow model
computes what the full model computes with that channel's reader rows zeroed (within 1e-6)."""
import numpy as np
import pytest

from pam_tf.cost import keras_model_cost
from pam_tf.graph.build import build_graph_model, inherit_graph_weights
from pam_tf.graph.plan import graph_no_merge_plan, graph_shared_plan
from pam_tf.graph.surgery import full_class_keep, remove_class_channels
from pam_tf.graph.trace import trace_graph
from pam_tf.plan import PlanError
from tests.graph_models import images, inverted_residual, residual_block


def _plan(make, producer):
    traced = [trace_graph(make(seed=s)) for s in range(2)]
    plan = producer(traced[0].graph, ["a", "b"], [2, 2], ["linear", "linear"])
    return plan, inherit_graph_weights(plan, traced)


def _zero_reader_rows(weights, reader_rows):
    """The masked model: the removed channels' rows zeroed in the layers that read them."""
    out = {k: v.copy() for k, v in weights.items()}
    for key, rows in reader_rows.items():
        k = out[key]
        if k.ndim == 4:
            k[:, :, rows, :] = 0
        else:
            k[rows] = 0
    return out


def _assert_same_function(plan, weights, small, small_weights):
    x = images(5)
    full = build_graph_model(plan, weights)(x)
    narrow = build_graph_model(small, small_weights)(x)
    for f, n in zip(full, narrow):
        assert np.abs(f.numpy()).max() > 1e-2
        np.testing.assert_allclose(n.numpy(), f.numpy(), atol=1e-6, rtol=0)


def test_removing_a_residual_channel_narrows_every_node_of_its_class():
    plan, weights = _plan(residual_block, graph_no_merge_plan)
    keep = full_class_keep(plan)
    keep["c1__a"][[1, 3]] = False  # class c1 = c1, c2, add, r3 of network a
    keep["b1__b"][0] = False
    small, small_w = remove_class_channels(plan, weights, keep)
    assert small_w["c1__a/kernel"].shape == (3, 3, 3, 2)
    assert small_w["c2__a/kernel"].shape == (3, 3, 5, 2)   # producer of the same class
    assert small_w["b1__a/kernel"].shape == (3, 3, 2, 5)   # reader of the class
    assert small_w["c3__a/kernel"].shape == (3, 3, 2, 5)
    assert small_w["c2__b/kernel"].shape == (3, 3, 4, 4)   # reader of b1 in network b
    masked = _zero_reader_rows(weights, {"b1__a/kernel": [1, 3], "c3__a/kernel": [1, 3],
                                         "c2__b/kernel": [0]})
    _assert_same_function(plan, masked, small, small_w)
    assert keras_model_cost(build_graph_model(small, small_w))[0] == small.cost(["a", "b"])
    assert small.cost(["a"]).macs < plan.cost(["a"]).macs
    assert small.cost(["b"]).macs < plan.cost(["b"]).macs


def test_removing_a_shared_channel_of_an_inverted_residual_keeps_the_masked_function():
    plan, weights = _plan(inverted_residual, graph_shared_plan)
    keep = full_class_keep(plan)
    keep["stem__a.b"][[0, 5]] = False     # stem, project, add, gap: one class, 8 channels
    keep["expand__a.b"][[2, 7, 20]] = False  # expand, pad, depthwise: 24 channels
    small, small_w = remove_class_channels(plan, weights, keep)
    assert small_w["dw__a.b/kernel"].shape == (3, 3, 21, 1)
    assert small_w["project__a.b/kernel"].shape == (1, 1, 21, 6)
    assert small_w["a/kernel"].shape == (6, 2)
    masked = _zero_reader_rows(weights, {"expand__a.b/kernel": [0, 5],
                                         "project__a.b/kernel": [2, 7, 20],
                                         "a/kernel": [0, 5], "b/kernel": [0, 5]})
    _assert_same_function(plan, masked, small, small_w)


def test_flatten_readers_lose_one_row_per_position():
    plan, weights = _plan(residual_block, graph_no_merge_plan)
    keep = full_class_keep(plan)
    keep["c3__a"][2] = False  # c3 (5 channels, 3x3 positions) is flattened into head a
    small, small_w = remove_class_channels(plan, weights, keep)
    assert small_w["a/kernel"].shape == (9 * 4, 2)
    masked = _zero_reader_rows(weights, {"a/kernel": [p * 5 + 2 for p in range(9)]})
    _assert_same_function(plan, masked, small, small_w)


def test_emptying_a_class_a_head_needs_is_refused():
    plan, weights = _plan(residual_block, graph_no_merge_plan)
    keep = {"c3__a": np.zeros(5, bool)}
    with pytest.raises(PlanError, match="head 'a'"):
        remove_class_channels(plan, weights, keep)
    with pytest.raises(PlanError, match=r"unknown class group\(s\) \['c2__a'\]"):
        remove_class_channels(plan, weights, {"c2__a": np.ones(4, bool)})
