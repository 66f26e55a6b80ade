"""Per-neuron gate layers the pruner inserts after each hidden group (via build's group_hook).

Gates exist only while importance is measured (or, in tests, to emulate masking); surgery removes
neurons from the plan and weights, and the exported model is rebuilt from the narrower plan
without any hook, so it contains none of these layers.

- :class:`MaskGate` multiplies each neuron (conv channel / dense unit) by a fixed, non-trainable
  value: 1 for Taylor importance (whose gradient w.r.t. the gate is the first-order estimate of the
  loss change when the neuron is removed), 0/1 to emulate a mask.
- :class:`VIBGate` is the learned multiplicative Gaussian gate of the variational information
  bottleneck (Dai et al., ICML 2018): z = μ + σ·ε while training, z = μ at inference.
"""
from __future__ import annotations

import numpy as np

from pam_tf.compat import keras, tf

__all__ = ["MaskGate", "VIBGate"]


def _channel_shape(x, width: int):
    """Broadcast shape of a per-neuron vector against `x` (neurons on the last axis)."""
    return [1] * (len(x.shape) - 1) + [width]


@keras.utils.register_keras_serializable(package="pam_tf")
class MaskGate(keras.layers.Layer):
    """y = x · g with one fixed gate value per neuron (last axis); g is not trainable.

    Being a (non-trainable) variable rather than a constant is what lets Taylor importance ask
    the tape for ∂L/∂g, and lets a test set some gates to 0 to emulate removed neurons.
    """

    def __init__(self, width: int, init: np.ndarray | None = None, **kwargs):
        super().__init__(**kwargs)
        self.width = int(width)
        self._init = None if init is None else np.asarray(init, np.float32).reshape(self.width)

    def build(self, input_shape):
        init = (keras.initializers.Ones() if self._init is None
                else keras.initializers.Constant(self._init))
        self.gate = self.add_weight(name="gate", shape=(self.width,), initializer=init,
                                    trainable=False)
        super().build(input_shape)

    def call(self, x):
        return x * tf.reshape(self.gate, _channel_shape(x, self.width))

    def get_config(self):
        return {**super().get_config(), "width": self.width}


@keras.utils.register_keras_serializable(package="pam_tf")
class VIBGate(keras.layers.Layer):
    """Multiplicative Gaussian gate z ~ N(μ, σ²) per neuron (Dai et al. 2018).

    Training: y = x · (μ + σ·ε), one ε per sample and neuron (shared over a conv channel's
    positions, as in the paper's code). Inference: y = x · μ. :meth:`kl` is the paper's upper
    bound on the information the layer passes on, Σ_i log(1 + μ_i²/σ_i²); minimising it pushes
    neurons the loss does not need towards a low signal-to-noise ratio, i.e. a large
    log α = log σ² − log μ². Noise comes from a seeded ``tf.random.Generator`` so gate training is
    reproducible.
    """

    def __init__(self, width: int, mu_init: float = 1.0, log_sigma2_init: float = -6.0,
                 seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.width = int(width)
        self.mu_init = float(mu_init)
        self.log_sigma2_init = float(log_sigma2_init)
        self.seed = int(seed)
        self._rng = tf.random.Generator.from_seed(self.seed)

    def build(self, input_shape):
        self.mu = self.add_weight(name="mu", shape=(self.width,),
                                  initializer=keras.initializers.Constant(self.mu_init),
                                  trainable=True)
        self.log_sigma2 = self.add_weight(
            name="log_sigma2", shape=(self.width,),
            initializer=keras.initializers.Constant(self.log_sigma2_init), trainable=True)
        super().build(input_shape)

    def call(self, x, training=None):
        shape = _channel_shape(x, self.width)
        if training:
            eps = self._rng.normal(tf.stack([tf.shape(x)[0], self.width]))
            z = self.mu + tf.exp(0.5 * self.log_sigma2) * eps
            z = tf.reshape(z, tf.concat([[tf.shape(x)[0]], shape[1:]], axis=0))
            return x * z
        return x * tf.reshape(self.mu, shape)

    def kl(self):
        """Σ_i log(1 + μ_i² / σ_i²): the KL-style penalty of the VIB objective."""
        return tf.reduce_sum(tf.math.log1p(tf.square(self.mu) * tf.exp(-self.log_sigma2)))

    def log_alpha(self) -> np.ndarray:
        """log α = log σ² − log μ² per neuron (large: the neuron carries mostly noise)."""
        mu2 = np.square(self.mu.numpy().astype(np.float64))
        return (self.log_sigma2.numpy().astype(np.float64) - np.log(mu2 + 1e-30))

    def get_config(self):
        return {**super().get_config(), "width": self.width, "mu_init": self.mu_init,
                "log_sigma2_init": self.log_sigma2_init, "seed": self.seed}
