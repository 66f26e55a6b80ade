"""Model zoo: stable layer names, output shapes, heads per task kind; and the Task definitions
the heads are built from (activation, loss, accuracy, information labels, validation)."""
import numpy as np
import pytest

from pam_tf.compat import keras
from pam_tf.tasks import Task
from pam_tf.zoo import ARCHITECTURES, build_model

BINARY = Task("a", "binary", 5, ("c0", "c1", "c2", "c3", "c4"))
MULTI = Task("digit", "multiclass", 10, tuple("0123456789"))


def test_lenet5_layer_names_and_model_name():
    m = build_model("lenet5", (28, 28, 1), BINARY, seed=0)
    assert m.name == "lenet5_a"
    assert [l.name for l in m.layers] == ["input", "conv1", "pool1", "conv2", "pool2", "flatten",
                                          "fc3", "fc4", "head"]


def test_lenet5_layer_widths():
    m = build_model("lenet5", (28, 28, 1), BINARY, seed=0)
    widths = {l.name: l.output.shape[-1] for l in m.layers if l.name.startswith(("conv", "fc"))}
    assert widths == {"conv1": 6, "conv2": 16, "fc3": 120, "fc4": 84}
    assert m.get_layer("conv1").kernel.shape == (5, 5, 1, 6)


def test_vgg_small_layer_names():
    m = build_model("vgg_small", (28, 56, 1), MULTI, seed=0)
    assert m.name == "vgg_small_digit"
    assert [l.name for l in m.layers] == [
        "input", "conv1", "conv2", "pool1", "conv3", "conv4", "pool2", "conv5", "conv6", "pool3",
        "flatten", "fc7", "fc8", "head"]


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("shape", [(28, 28, 1), (28, 56, 1), (16, 16, 1)])
def test_output_shape_is_batch_by_n_outputs(arch, shape):
    m = build_model(arch, shape, MULTI, seed=0)
    out = m(np.zeros((2, *shape), dtype=np.float32))
    assert out.shape == (2, 10)


@pytest.mark.parametrize("task,activation", [(BINARY, "sigmoid"), (MULTI, "softmax")])
def test_head_activation_follows_the_task_kind(task, activation):
    head = build_model("lenet5", (28, 28, 1), task, seed=0).get_layer("head")
    assert head.activation is keras.activations.get(activation)
    assert head.units == task.n_outputs


def test_same_seed_gives_same_weights_different_seed_differs():
    w = lambda s: build_model("lenet5", (16, 16, 1), BINARY, seed=s).get_weights()  # noqa: E731
    assert all(np.array_equal(a, b) for a, b in zip(w(3), w(3)))
    assert not np.array_equal(w(3)[0], w(4)[0])


def test_unknown_architecture_and_too_small_input_are_refused():
    with pytest.raises(ValueError, match=r"unknown architecture 'resnet'; choose one of"):
        build_model("resnet", (28, 28, 1), BINARY)
    with pytest.raises(ValueError, match="lenet5: input of 12x12 is too small"):
        build_model("lenet5", (12, 12, 1), BINARY)


def test_task_losses_match_the_kind():
    assert isinstance(BINARY.keras_loss(), keras.losses.BinaryCrossentropy)
    assert isinstance(MULTI.keras_loss(), keras.losses.SparseCategoricalCrossentropy)


def test_binary_accuracy_is_mean_per_label_accuracy_at_half():
    t = Task("b", "binary", 2, ("x", "y"))
    y = np.array([[1, 0], [0, 0]])
    pred = np.array([[0.7, 0.2], [0.6, 0.4]])  # label x: 1 of 2 right, label y: 2 of 2
    assert t.accuracy(y, pred) == 0.75 and t.per_label_accuracy(y, pred) == [0.5, 1.0]


def test_multiclass_accuracy_is_argmax_accuracy():
    t = Task("m", "multiclass", 3, ("x", "y", "z"))
    pred = np.array([[0.1, 0.8, 0.1], [0.5, 0.3, 0.2]])
    assert t.accuracy(np.array([1, 2]), pred) == 0.5


def test_information_labels_one_vector_per_binary_label_one_for_multiclass():
    assert [v.tolist() for v in BINARY.information_labels(np.eye(5)[[0, 3]])] == [
        [1, 0], [0, 0], [0, 0], [0, 1], [0, 0]]
    assert [v.tolist() for v in MULTI.information_labels(np.array([4, 7]))] == [[4, 7]]


@pytest.mark.parametrize("kwargs,message", [
    (dict(name="A", kind="binary", n_outputs=1, label_names=("x",)), "task name 'A' is invalid"),
    (dict(name="a", kind="regression", n_outputs=1, label_names=("x",)),
     "kind 'regression' is not one of"),
    (dict(name="a", kind="multiclass", n_outputs=1, label_names=("x",)),
     "a multiclass task needs n_outputs >= 2"),
    (dict(name="a", kind="binary", n_outputs=2, label_names=("x",)),
     "1 label names given for n_outputs=2"),
])
def test_invalid_tasks_are_refused_with_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Task(**kwargs)


def test_wrong_label_shape_is_refused():
    with pytest.raises(ValueError, match=r"labels must have shape \(N, 5\), got \(3, 4\)"):
        BINARY.check_labels(np.zeros((3, 4)))


def test_resnet_small_is_basic_blocks_with_projection_shortcuts():
    from pam_tf.graph.trace import trace_graph
    m = build_model("resnet_small", (28, 28, 1), BINARY, seed=0)
    assert m.name == "resnet_small_a"
    g = trace_graph(m).graph
    # identity block s1 joins the stem's class; s2, s3 join their 1x1 projection shortcut
    assert g.class_names == ("conv1", "s1_conv1", "s2_conv1", "s2_short", "s3_conv1",
                             "s3_short")
    assert g.node("s1_conv2").cls == g.node("conv1").cls
    assert g.node("s3_conv2").cls == g.node("s3_short").cls
    assert g.node("s3_conv2").output_shape == (7, 7, 64) and g.head.fan_in == 1


def test_mobilenetv2_small_has_inverted_residuals_with_linear_bottlenecks():
    from pam_tf.graph.trace import trace_graph
    m = build_model("mobilenetv2_small", (28, 56, 1), MULTI, seed=0)
    g = trace_graph(m).graph
    assert g.node("b3_dw").kind == "depthwise" and g.node("b3_dw").activation == "relu6"
    assert g.node("b3_dw").cls == g.node("b3_expand").cls      # depthwise follows expand
    assert g.node("b3_project").activation == "linear"         # linear bottleneck
    assert g.node("b3_project").cls == g.node("b2_project").cls  # joined by b3_add
    assert g.node("b4_pad").pad == (0, 1, 0, 1) and g.node("b4_dw").strides == (2, 2)
    assert "b4_add" not in {n.name for n in g.nodes}  # stride 2: no residual
    assert g.node("gap").kind == "global_avg_pool"
