"""Users' standard definitions: tf_keras.applications MobileNetV2 and ResNet50 (weights=None,
32x32 input, a Dense task head) trace into coupling classes, rebuild exactly from a no-merge
plan, narrow with coupled removal, and convert to TFLite with the plan's MACs."""
import numpy as np
import pytest

from pam_tf.cost import keras_model_cost
from pam_tf.export import flatbuffer_cost
from pam_tf.export.convert import convert_keras_model
from pam_tf.graph.build import build_graph_model, inherit_graph_weights
from pam_tf.graph.plan import graph_no_merge_plan
from pam_tf.graph.surgery import full_class_keep, remove_class_channels
from pam_tf.graph.trace import trace_graph
from tests.graph_models import app_model, images


@pytest.fixture(scope="module", params=["mobilenetv2", "resnet50"])
def traced_app(request):
    model = app_model(request.param)
    traced = trace_graph(model)
    plan = graph_no_merge_plan(traced.graph, ["a"], [3], ["linear"])
    return request.param, model, plan, inherit_graph_weights(plan, [traced])


def test_classes_follow_the_blocks(traced_app):
    kind, _, plan, _ = traced_app
    g = plan.graph
    kinds = {n.kind for n in g.nodes}
    if kind == "mobilenetv2":
        assert "depthwise" in kinds and "pad" in kinds
        # the residual stream of stage 2 (block_1_project, block_2_project) is one class
        assert g.node("block_2_add").cls == g.node("block_1_project").cls
        assert g.node("block_2_depthwise").cls == g.node("block_2_expand").cls
        assert len(g.class_names) == 25
    else:
        assert g.node("conv2_block3_add").cls == g.node("conv2_block1_0_conv").cls
        assert g.node("conv2_block2_3_conv").cls == g.node("conv2_block1_3_conv").cls
        assert len(g.class_names) == 37  # 1 stem + 16 blocks x 2 + 4 residual streams


def test_no_merge_plan_rebuilds_the_application_exactly(traced_app):
    _, model, plan, weights = traced_app
    x = images(2, (32, 32, 3))
    ref = model(x).numpy()
    got = build_graph_model(plan, weights)(x).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert plan.cost(["a"]) == keras_model_cost(model)[0]


def test_coupled_removal_on_the_application_keeps_its_cost_consistent(traced_app):
    _, _, plan, weights = traced_app
    keep = full_class_keep(plan)
    for name, m in keep.items():
        m[::4] = False  # a quarter of every class, residual streams included
    small, small_w = remove_class_channels(plan, weights, keep)
    built = build_graph_model(small, small_w)
    assert keras_model_cost(built)[0] == small.cost(["a"])
    assert small.cost(["a"]).macs < 0.7 * plan.cost(["a"]).macs
    counted = flatbuffer_cost.count(convert_keras_model(built))
    assert counted.macs == small.cost(["a"]).macs
