"""Graph plans: a no-merge plan rebuilds the traced networks exactly; cost counts depthwise
convolutions in the paper convention; TFLite agrees with Keras and its flatbuffer MACs with
the plan; plan format version 2 round-trips and version-1 plans keep loading."""
import numpy as np
import pytest

from pam_tf.cost import keras_model_cost
from pam_tf.export import flatbuffer_cost
from pam_tf.export.convert import convert_keras_model
from pam_tf.graph.build import build_graph_model, inherit_graph_weights
from pam_tf.graph.plan import (GraphPlan, graph_no_merge_plan, graph_split_by_task,
                               load_any_plan)
from pam_tf.graph.trace import trace_graph
from pam_tf.plan import Plan, PlanError, no_merge_plan
from pam_tf.chain import trace_model
from tests.graph_models import images, inverted_residual, residual_block
from tests.tiny_models import tiny_cnn

BLOCKS = {"residual": residual_block, "inverted": inverted_residual}


def _b1(models):
    traced = [trace_graph(m) for m in models]
    tasks = [f"t{i}" for i in range(len(models))]
    plan = graph_no_merge_plan(traced[0].graph, tasks, [m.output_shape[-1] for m in models],
                               ["linear"] * len(models))
    return plan, inherit_graph_weights(plan, traced)


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_no_merge_plan_rebuilds_every_network_exactly(block):
    models = [BLOCKS[block](seed=s) for s in range(3)]
    plan, weights = _b1(models)
    x = images()
    outs = build_graph_model(plan, weights)(x)
    for model, out in zip(models, outs):
        ref = model(x).numpy()
        assert np.abs(ref).max() > 1e-2
        np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_plan_cost_equals_the_keras_models_cost(block):
    model = BLOCKS[block]()
    plan, weights = _b1([model, BLOCKS[block](seed=1)])
    assert plan.cost(["t0"]) == keras_model_cost(model)[0]
    assert plan.cost(["t0", "t1"]).macs == 2 * plan.cost(["t0"]).macs
    built = build_graph_model(plan, weights, ["t0", "t1"])
    assert keras_model_cost(built)[0] == plan.cost(["t0", "t1"])


def test_depthwise_cost_is_per_channel():
    plan, _ = _b1([inverted_residual()])
    dw = plan.graph.node("dw")
    c = plan.group_cost(dw, 0)
    assert (c.macs, c.flops, c.params) == (9 * 64 * 12, 17 * 64 * 12, 9 * 12)


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_tflite_matches_keras_and_the_flatbuffer_counts_the_plans_macs(block):
    plan, weights = _b1([BLOCKS[block](seed=s) for s in range(2)])
    x = images(2)
    for combo in (("t0",), ("t0", "t1")):
        model = build_graph_model(plan, weights, combo)
        data = convert_keras_model(model)
        counted = flatbuffer_cost.count(data)
        cost = plan.cost(combo)
        flatbuffer_cost.check(counted, cost.macs, cost.flops, f"{block} {combo}")
        assert counted.add_elements == 8 * 8 * 4 * len(combo)
        assert "DEPTHWISE_CONV_2D" in {o.kind for o in counted.ops} or block == "residual"
        from ai_edge_litert.interpreter import Interpreter
        runner = Interpreter(model_content=data).get_signature_runner()
        got = runner(image=x[:1])
        ref = model(x[:1])
        ref = ref if isinstance(ref, list) else [ref]
        for t, r in zip(combo, ref):
            np.testing.assert_allclose(got[t], r.numpy(), atol=1e-5)


def test_graph_plan_round_trips_and_both_versions_load(tmp_path):
    plan, _ = _b1([residual_block(0), residual_block(1)])
    plan.save(str(tmp_path / "g.json"))
    assert load_any_plan(str(tmp_path / "g.json")) == plan
    assert GraphPlan.from_json(plan.to_json()).to_json() == plan.to_json()
    chain = trace_model(tiny_cnn()).chain
    v1 = no_merge_plan(chain, ["a"], [3], ["sigmoid"])
    v1.save(str(tmp_path / "v1.json"))
    assert isinstance(load_any_plan(str(tmp_path / "v1.json")), Plan)
    with pytest.raises(PlanError, match="expected a graph plan"):
        GraphPlan.from_json(v1.to_json())


def test_split_by_task_gives_one_network_per_task():
    plan, weights = _b1([residual_block(0), residual_block(1)])
    parts = graph_split_by_task(plan)
    assert [p.tasks for p in parts] == [("t0",), ("t1",)]
    assert parts[1].cost(["t1"]) == plan.cost(["t1"])
    x = images()
    sub = {k: v for k, v in weights.items() if "__t1/" in k or k.startswith("t1/")}
    out = build_graph_model(parts[1], sub)(x).numpy()
    np.testing.assert_allclose(out, residual_block(1)(x).numpy(), atol=1e-5)


def test_a_group_reading_nothing_is_refused():
    plan, _ = _b1([residual_block(0), residual_block(1)])
    classes = list(plan.classes)
    classes[0] = classes[0][:1]  # class c1 only has t0's group: t1's b1 group reads nothing
    with pytest.raises(PlanError, match="node 'b1' group 't1': reads nothing"):
        GraphPlan(plan.method, plan.tasks, plan.graph, tuple(classes), plan.heads)


def test_a_chain_plan_reader_points_graph_plans_to_load_any_plan():
    plan, _ = _b1([residual_block(0)])
    with pytest.raises(PlanError, match="plan version 2 is not supported .*load_any_plan"):
        Plan.from_json(plan.to_json())


def test_networks_whose_layer_names_differ_merge_by_position():
    from pam_tf.compat import keras

    def unnamed(seed):
        keras.utils.set_random_seed(seed)
        i = keras.Input((6, 6, 2))
        x = keras.layers.Conv2D(3, 3, padding="same", activation="relu")(i)
        y = keras.layers.DepthwiseConv2D(3, padding="same")(x)
        x = keras.layers.Add()([x, keras.layers.Conv2D(3, 1)(y)])
        return keras.Model(i, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))

    models = [unnamed(0), unnamed(1)]
    assert models[0].layers[1].name != models[1].layers[1].name
    plan, weights = _b1(models)
    x = images(3, (6, 6, 2))
    for model, out in zip(models, build_graph_model(plan, weights)(x)):
        np.testing.assert_allclose(out.numpy(), model(x).numpy(), atol=1e-5)
