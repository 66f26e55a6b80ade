"""Trace: supported chains become a layer chain; everything else is refused by name."""
import numpy as np
import pytest

from pam_tf.chain import TraceError, check_same_chain, trace_model
from pam_tf.compat import keras
from tests.tiny_models import tiny_cnn


def test_trace_lists_neuron_layers_with_shapes():
    chain = trace_model(tiny_cnn()).chain
    assert [(l.name, l.kind, l.width) for l in chain.layers] == [
        ("conv1", "conv", 4), ("conv2", "conv", 6), ("fc3", "dense", 10), ("fc4", "dense", 8),
        ("head", "dense", 3)]
    conv2, fc3 = chain.layers[1], chain.layers[2]
    assert (conv2.fan_in, conv2.out_positions, conv2.in_channels) == (9, 25, 4)
    assert [op.kind for op in conv2.post] == ["max_pool", "flatten"]
    assert (fc3.fan_in, fc3.in_channels) == (4, 6)  # 2×2 positions per channel after flatten
    assert chain.head.activation == "sigmoid"


def test_batchnorm_is_folded_into_the_conv():
    model = tiny_cnn(bn=True)
    traced = trace_model(model)
    assert traced.chain.layers[1].activation == "relu"
    plain = tiny_cnn(bn=False)  # same architecture without BN: load folded weights into it
    for layer_name, (k, b) in zip(["conv1", "conv2", "fc3", "fc4", "head"], traced.weights):
        plain.get_layer(layer_name).set_weights([k, b])
    x = np.random.default_rng(0).random((5, 12, 12, 1), dtype=np.float32)
    np.testing.assert_allclose(plain(x).numpy(), model(x).numpy(), atol=1e-5)


def test_residual_add_is_refused_by_layer_name():
    i = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, padding="same", name="c1")(i)
    y = keras.layers.Conv2D(2, 3, padding="same", name="c2")(x)
    z = keras.layers.Add(name="skip")([x, y])
    o = keras.layers.Dense(1, name="head")(keras.layers.Flatten()(z))
    with pytest.raises(TraceError, match=r"model 'res' layer 'skip' \(Add\) has 2 inputs"):
        trace_model(keras.Model(i, o), name="res")


def test_depthwise_conv_is_refused_by_layer_name():
    i = keras.Input((8, 8, 2))
    x = keras.layers.DepthwiseConv2D(3, name="dw")(i)
    o = keras.layers.Dense(1, name="head")(keras.layers.Flatten()(x))
    with pytest.raises(TraceError, match="layer 'dw': unsupported layer type DepthwiseConv2D"):
        trace_model(keras.Model(i, o), name="m")


def test_subclassed_model_is_refused():
    class Custom(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(TraceError, match="subclassed models cannot be traced"):
        trace_model(Custom(), name="custom")


def test_bn_after_relu_cannot_be_folded():
    i = keras.Input((6,))
    x = keras.layers.Dense(4, activation="relu", name="fc")(i)
    x = keras.layers.BatchNormalization(name="bn")(x)
    o = keras.layers.Dense(1, name="head")(x)
    with pytest.raises(TraceError, match="layer 'bn': BatchNormalization must directly follow"):
        trace_model(keras.Model(i, o), name="m")


def test_mismatched_models_name_model_layer_and_difference():
    a = trace_model(tiny_cnn(0, name="a"))
    b = trace_model(tiny_cnn(1, widths=(4, 7, 10, 8), name="b"))
    with pytest.raises(TraceError, match=r"model 'b' layer 'conv2' \(#2\): width 7 differs from "
                                         r"model 'a' layer 'conv2' \(6\)"):
        check_same_chain([a, b])


def test_different_input_shapes_are_refused():
    a = trace_model(tiny_cnn(0, name="a"))
    b = trace_model(tiny_cnn(0, input_shape=(14, 14, 1), name="b"))
    with pytest.raises(TraceError, match=r"model 'b': input shape \(14, 14, 1\) differs"):
        check_same_chain([a, b])


def test_heads_may_differ_in_width():
    a = trace_model(tiny_cnn(0, units=3))
    b = trace_model(tiny_cnn(1, units=10, activation="softmax"))
    assert check_same_chain([a, b]) == a.chain


def test_sequential_models_trace():
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    chain = trace_model(model).chain
    assert [l.width for l in chain.layers] == [4, 2]
