"""Graph tracing: coupling classes on hand-built blocks; unsupported layers refused by name."""
import pytest

from pam_tf.chain import TraceError
from pam_tf.compat import keras
from pam_tf.graph.trace import HEAD_CLASS, INPUT_CLASS, check_same_graph, trace_graph
from tests.graph_models import inverted_residual, residual_block


def _classes(model) -> dict[str, int]:
    return {n.name: n.cls for n in trace_graph(model).graph.nodes}


def test_add_couples_its_inputs_and_output_bn_and_relu_fold():
    g = trace_graph(residual_block()).graph
    assert [(n.name, n.kind, n.activation) for n in g.nodes] == [
        ("c1", "conv", "relu"), ("b1", "conv", "relu"), ("c2", "conv", "linear"),
        ("add", "add", "linear"), ("r3", "act", "relu"), ("c3", "conv", "relu"),
        ("flat", "flatten", "linear"), ("head", "dense", "linear")]
    cls = {n.name: n.cls for n in g.nodes}
    assert cls["c1"] == cls["c2"] == cls["add"] == cls["r3"] == 0
    assert cls["b1"] == 1 and cls["c3"] == cls["flat"] == 2 and cls["head"] == HEAD_CLASS
    assert g.class_names == ("c1", "b1", "c3")
    assert g.node("c3").strides == (2, 2) and g.node("c3").out_positions == 9
    assert g.head.fan_in == 9  # flattened positions per channel


def test_depthwise_follows_its_input_class_and_bn_folds_after_it():
    g = trace_graph(inverted_residual()).graph
    kinds = {n.name: (n.kind, n.cls, n.activation) for n in g.nodes}
    assert kinds["pad"] == ("pad", 1, "linear")
    assert kinds["dw"] == ("depthwise", 1, "relu6")  # BN and ReLU6 folded into it
    assert kinds["expand"] == ("conv", 1, "relu6")
    assert kinds["project"][1] == kinds["stem"][1] == kinds["add"][1] == kinds["gap"][1] == 0
    assert g.node("pad").pad == (1, 1, 1, 1) and g.node("gap").kind == "global_avg_pool"
    assert g.class_names == ("stem", "expand")
    assert g.class_width(1) == 12 and g.class_width(INPUT_CLASS) == 3


def test_chained_adds_unite_three_producers():
    i = keras.Input((6, 6, 2))
    a = keras.layers.Conv2D(3, 1, name="a")(i)
    b = keras.layers.Conv2D(3, 1, name="b")(i)
    c = keras.layers.Conv2D(3, 1, name="c")(i)
    s = keras.layers.Add(name="s1")([a, b])
    s = keras.layers.Add(name="s2")([keras.layers.DepthwiseConv2D(3, padding="same",
                                                                  name="dw")(c), s])
    o = keras.layers.Dense(1, name="head")(keras.layers.GlobalAveragePooling2D(name="g")(s))
    cls = _classes(keras.Model(i, o))
    assert cls["a"] == cls["b"] == cls["c"] == cls["dw"] == cls["s1"] == cls["s2"] == 0


def test_activation_shared_by_two_readers_stays_a_node():
    i = keras.Input((6, 6, 2))
    a = keras.layers.Conv2D(3, 1, name="a")(i)
    r = keras.layers.ReLU(name="r")(a)
    s = keras.layers.Add(name="s")([a, r])  # 'a' is read twice: its ReLU cannot be fused
    o = keras.layers.Dense(1, name="head")(keras.layers.Flatten(name="f")(s))
    g = trace_graph(keras.Model(i, o)).graph
    assert [(n.name, n.kind) for n in g.nodes][:3] == [("a", "conv"), ("r", "act"), ("s", "add")]
    assert g.node("a").activation == "linear"


@pytest.mark.parametrize("make,layer,message", [
    (lambda i: keras.layers.Concatenate(name="cat")([keras.layers.Conv2D(2, 1)(i),
                                                     keras.layers.Conv2D(2, 1)(i)]),
     "cat", r"layer 'cat' \(Concatenate\) has 2 inputs: only Add may join"),
    (lambda i: keras.layers.Lambda(lambda t: t * 2, name="lam")(keras.layers.Conv2D(2, 1)(i)),
     "lam", r"layer 'lam' \(Lambda\): unsupported layer type Lambda"),
    (lambda i: keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw2")(
        keras.layers.Conv2D(2, 1)(i)), "dw2", "depth_multiplier 2 is not supported"),
    (lambda i: keras.layers.ReLU(4.0, name="r4")(keras.layers.Conv2D(2, 1)(i)),
     "r4", "ReLU max_value 4.0 is not supported"),
    (lambda i: keras.layers.Add(name="skip_in")([i, keras.layers.Conv2D(3, 1)(i)]),
     "skip_in", "a residual add on the model input is not supported"),
])
def test_unsupported_blocks_are_refused_naming_the_layer(make, layer, message):
    i = keras.Input((6, 6, 3))
    o = keras.layers.Dense(1, name="head")(keras.layers.Flatten()(make(i)))
    with pytest.raises(TraceError, match=rf"model 'bad' layer '{layer}'.*{message}|{message}"):
        trace_graph(keras.Model(i, o, name="bad"))


def test_bn_after_a_shared_tensor_is_refused():
    i = keras.Input((6, 6, 2))
    a = keras.layers.Conv2D(3, 1, name="a")(i)
    bn = keras.layers.BatchNormalization(name="bn")(a)
    s = keras.layers.Add(name="s")([a, bn])
    o = keras.layers.Dense(1, name="head")(keras.layers.Flatten()(s))
    with pytest.raises(TraceError, match="layer 'bn' .*nothing else reads"):
        trace_graph(keras.Model(i, o, name="m"))


def test_models_with_different_wiring_are_refused():
    a, b = residual_block(0), residual_block(1, width=6)
    with pytest.raises(TraceError, match="model 'res_1' node 'c1' differs from model 'res_0'"):
        check_same_graph([trace_graph(a), trace_graph(b)])
    assert check_same_graph([trace_graph(a), trace_graph(residual_block(1, units=3))])


def test_the_main_job_traces_chains_as_chains_and_refuses_with_the_right_tracer():
    from pam_tf.chain import TracedModel
    from pam_tf.networks import trace_network
    from tests.tiny_models import tiny_cnn
    assert isinstance(trace_network(tiny_cnn()), TracedModel)
    i = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(3, 1, name="a")(i)
    x = keras.layers.Add(name="s")([x, keras.layers.Conv2D(3, 1, name="b")(i)])
    x = keras.layers.Lambda(lambda t: t * 2, name="lam")(x)
    o = keras.layers.Dense(1, name="head")(keras.layers.Flatten()(x))
    with pytest.raises(TraceError, match=r"layer 'lam' \(Lambda\): unsupported layer type"):
        trace_network(keras.Model(i, o, name="m"))
