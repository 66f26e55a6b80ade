"""Cost counter against hand-computed values in the paper's convention (method.md §9)."""
from pam_tf.compat import keras
from pam_tf.cost import Cost, conv_cost, dense_cost, keras_model_cost, neuron_layer_cost


def lenet5(input_shape):
    i = keras.Input(input_shape)
    x = keras.layers.Conv2D(6, 5, activation="relu", name="conv1")(i)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(16, 5, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(120, activation="relu", name="fc3")(x)
    x = keras.layers.Dense(84, activation="relu", name="fc4")(x)
    return keras.Model(i, keras.layers.Dense(5, activation="sigmoid", name="head")(x))


def test_formulas():
    assert conv_cost(5, 5, 1, 24, 24, 6) == Cost(49 * 24 * 24 * 6, 25 * 24 * 24 * 6, 150)
    assert dense_cost(256, 120) == Cost(511 * 120, 256 * 120, 256 * 120)
    assert neuron_layer_cost(25, 0, 64, 16) == Cost()


def test_lenet5_at_28x28_matches_hand_count():
    total, per_layer = keras_model_cost(lenet5((28, 28, 1)))
    # conv1: (2·25·1−1)·24·24·6; conv2: (2·25·6−1)·8·8·16; fc3: (2·256−1)·120; fc4: 239·84;
    # head: 167·5
    expected = {"conv1": 169344, "conv2": 306176, "fc3": 61320, "fc4": 20076, "head": 835}
    assert {k: v.flops for k, v in per_layer.items()} == expected
    assert total.flops == 557751
    assert total.macs == 25 * 576 * 6 + 150 * 64 * 16 + 256 * 120 + 120 * 84 + 84 * 5
    assert total.params == 150 + 2400 + 30720 + 10080 + 420


def test_lenet5_at_32x32_matches_hand_count():
    # 32 → conv 28 → pool 14 → conv 10 → pool 5: flatten 400
    total, per_layer = keras_model_cost(lenet5((32, 32, 1)))
    assert per_layer["conv1"].flops == 49 * 28 * 28 * 6
    assert per_layer["conv2"].flops == 299 * 10 * 10 * 16
    assert per_layer["fc3"].flops == 799 * 120
    assert total.flops == 49 * 28 * 28 * 6 + 299 * 100 * 16 + 799 * 120 + 239 * 84 + 167 * 5


def test_costs_add():
    assert Cost(1, 2, 3) + Cost(10, 20, 30) == Cost(11, 22, 33)
