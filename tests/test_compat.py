"""The compat module gives Keras 2 (tf_keras), which tfmot and our model files need."""
import os

import numpy as np

from pam_tf.compat import keras, tf


def test_legacy_keras_flag_is_set():
    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"


def test_keras_is_tf_keras_2():
    assert keras.__name__ == "tf_keras"
    assert keras.__version__.startswith("2.")


def test_tf_keras_model_round_trips_through_save_and_load(tmp_path):
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(3, name="head")(inputs)
    model = keras.Model(inputs, outputs)
    x = np.arange(8, dtype="float32").reshape(2, 4)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, keras.Model)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


def test_tfmot_accepts_our_keras_models():
    import tensorflow_model_optimization as tfmot

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model)
    assert any("prune_low_magnitude" in layer.name for layer in pruned.layers)
    assert tf.__version__.startswith("2.")
