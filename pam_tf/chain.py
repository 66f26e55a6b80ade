"""Trace: a single-task tf_keras model becomes a small layer-chain description plus its weights.

PAM works layer by layer on networks that are chains of "neuron layers" (Conv2D / Dense) with
pooling, flatten, global pooling, dropout and activations in between (method.md §1). This module
turns a Keras model into that description and refuses anything else with an error that names the
model and the layer, because a silent approximation would give a wrong merged network.

BatchNormalization directly after a linear Conv2D/Dense is folded into that layer's kernel and
bias (inference statistics), so the chain only holds neuron layers.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from pam_tf.cost import Cost, neuron_layer_cost

SUPPORTED_ACTIVATIONS = ("linear", "relu", "sigmoid", "softmax", "tanh")
POOL_KINDS = {"MaxPooling2D": "max_pool", "AveragePooling2D": "avg_pool"}
GLOBAL_POOL_KINDS = {"GlobalMaxPooling2D": "global_max_pool",
                     "GlobalAveragePooling2D": "global_avg_pool"}
IGNORED_AT_INFERENCE = ("Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
                        "ActivityRegularization")


class TraceError(ValueError):
    """A model cannot be described as a supported layer chain (names the model and the layer)."""


@dataclass(frozen=True)
class Op:
    """A weightless operation between neuron layers, applied channel-wise."""

    kind: str  # max_pool | avg_pool | flatten | global_max_pool | global_avg_pool
    pool_size: tuple[int, int] | None = None
    strides: tuple[int, int] | None = None
    padding: str | None = None

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()
                if v is not None}

    @staticmethod
    def from_json(d: dict) -> "Op":
        return Op(kind=d["kind"],
                  pool_size=tuple(d["pool_size"]) if "pool_size" in d else None,
                  strides=tuple(d["strides"]) if "strides" in d else None,
                  padding=d.get("padding"))


@dataclass(frozen=True)
class NeuronLayer:
    """One Conv2D or Dense layer of the chain, with the ops that follow its activation.

    `fan_in` is the number of inputs per input channel each output reads (k_h·k_w for a conv,
    the flattened positions per channel for a dense after Flatten), `out_positions` the number of
    output positions (H·W for a conv, 1 for a dense): with them cost.neuron_layer_cost prices any
    width of this layer, which is what merged groups need.
    """

    name: str
    kind: str  # conv | dense
    width: int
    activation: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    fan_in: int
    out_positions: int
    kernel_size: tuple[int, int] = (1, 1)
    strides: tuple[int, int] = (1, 1)
    padding: str = "valid"
    post: tuple[Op, ...] = ()

    @property
    def in_channels(self) -> int:
        """Input channels of the original layer (features per position for a dense layer)."""
        return int(self.input_shape[-1]) // (self.fan_in if self.kind == "dense" else 1)

    def cost(self, in_channels: int | None = None, out_channels: int | None = None) -> Cost:
        """Cost of this layer at the given input/output widths (default: the original's)."""
        return neuron_layer_cost(self.fan_in, self.in_channels if in_channels is None
                                 else in_channels, self.out_positions,
                                 self.width if out_channels is None else out_channels)

    def signature(self) -> dict:
        """What must agree between the n models (everything but name, width of heads)."""
        d = {"kind": self.kind, "width": self.width, "activation": self.activation,
             "input_shape": self.input_shape, "kernel_size": self.kernel_size,
             "strides": self.strides, "padding": self.padding,
             "post": [op.to_json() for op in self.post]}
        return d

    def to_json(self) -> dict:
        d = asdict(self)
        d["post"] = [op.to_json() for op in self.post]
        for k in ("input_shape", "output_shape", "kernel_size", "strides"):
            d[k] = list(d[k])
        return d

    @staticmethod
    def from_json(d: dict) -> "NeuronLayer":
        return NeuronLayer(
            name=d["name"], kind=d["kind"], width=int(d["width"]), activation=d["activation"],
            input_shape=tuple(d["input_shape"]), output_shape=tuple(d["output_shape"]),
            fan_in=int(d["fan_in"]), out_positions=int(d["out_positions"]),
            kernel_size=tuple(d["kernel_size"]), strides=tuple(d["strides"]),
            padding=d["padding"], post=tuple(Op.from_json(o) for o in d["post"]))


@dataclass(frozen=True)
class Chain:
    """The architecture shared by the n single-task networks: input, hidden layers, head."""

    input_shape: tuple[int, ...]
    layers: tuple[NeuronLayer, ...]  # hidden neuron layers, then the head (a Dense)
    pre: tuple[Op, ...] = field(default=())

    @property
    def hidden(self) -> tuple[NeuronLayer, ...]:
        return self.layers[:-1]

    @property
    def head(self) -> NeuronLayer:
        return self.layers[-1]

    def to_json(self) -> dict:
        return {"input_shape": list(self.input_shape), "pre": [o.to_json() for o in self.pre],
                "layers": [layer.to_json() for layer in self.layers]}

    @staticmethod
    def from_json(d: dict) -> "Chain":
        return Chain(input_shape=tuple(d["input_shape"]),
                     pre=tuple(Op.from_json(o) for o in d.get("pre", [])),
                     layers=tuple(NeuronLayer.from_json(x) for x in d["layers"]))


@dataclass
class TracedModel:
    """A traced single-task network: its chain and, per neuron layer, (kernel, bias) float32.

    Dense kernels are (n_in, n_out); conv kernels (k_h, k_w, C_in, C_out), BN already folded.
    """

    name: str
    chain: Chain
    weights: list[tuple[np.ndarray, np.ndarray]]


def _activation_name(fn) -> str:
    name = getattr(fn, "__name__", str(fn))
    return name


def _shape(s) -> tuple[int, ...]:
    return tuple(int(v) for v in s[1:])


def trace_model(model, name: str | None = None) -> TracedModel:
    """Describe a tf_keras Sequential/functional chain model; raise TraceError when unsupported."""
    name = name or model.name
    layers = _chain_layers(model, name)
    tracer = _Tracer(name, _shape(model.inputs[0].shape))
    for layer in layers:
        tracer.add(layer)
    return tracer.finish()


def _chain_layers(model, name: str) -> list:
    """The model's layers (without InputLayer), checked to form one plain chain."""
    if not getattr(model, "_is_graph_network", False) and type(model).__name__ != "Sequential":
        raise TraceError(f"model '{name}': subclassed models cannot be traced; build it with the "
                         "functional or Sequential API")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise TraceError(f"model '{name}': expected one input and one output, found "
                         f"{len(model.inputs)} inputs and {len(model.outputs)} outputs")
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    previous = None
    for layer in layers:
        kind = type(layer).__name__
        if len(layer.inbound_nodes) != 1:
            raise TraceError(f"model '{name}' layer '{layer.name}' ({kind}) is used "
                             f"{len(layer.inbound_nodes)} times: shared layers are not supported")
        inbound = layer.inbound_nodes[0].inbound_layers
        inbound = inbound if isinstance(inbound, (list, tuple)) else [inbound]
        if len(inbound) != 1:
            raise TraceError(f"model '{name}' layer '{layer.name}' ({kind}) has {len(inbound)} "
                             "inputs: residual adds and concatenations are not supported; pam-tf "
                             "merges plain chains of Conv2D/Dense layers (residual and depthwise "
                             "nets are traced by pam_tf.graph.trace.trace_graph)")
        src = inbound[0]
        if previous is not None and src is not previous:
            raise TraceError(f"model '{name}' layer '{layer.name}' reads '{src.name}', not the "
                             f"layer before it ('{previous.name}'): only chains are supported")
        previous = layer
    return layers


def _kernel_and_bias(layer) -> list[np.ndarray]:
    """A Conv2D/Dense layer's float32 kernel and bias (zeros without a bias)."""
    k = layer.kernel.numpy().astype(np.float32)
    b = (layer.bias.numpy() if layer.use_bias else np.zeros(k.shape[-1])).astype(np.float32)
    return [k, b]


class _Tracer:
    """The state of one :func:`trace_model` call: the chain so far, built layer by layer.

    Neuron layers are kept as dicts (their ``post`` ops and activation are still being filled
    in) until :meth:`finish` checks the whole chain and freezes it.
    """

    def __init__(self, name: str, input_shape: tuple[int, ...]) -> None:
        self.name = name
        self.input_shape = input_shape
        self.neuron_layers: list[dict] = []
        self.weights: list[list[np.ndarray]] = []
        self.pre: list[Op] = []

    def add(self, layer) -> None:
        """Take one layer of the chain into the description (or refuse it)."""
        kind = type(layer).__name__
        in_shape = _shape(layer.input_shape)
        out_shape = _shape(layer.output_shape)
        if kind == "Conv2D":
            self._conv(layer, in_shape, out_shape)
        elif kind == "Dense":
            self._dense(layer, in_shape, out_shape)
        elif kind == "BatchNormalization":
            self._fold_batch_norm(layer, in_shape)
        elif kind == "Activation":
            self._set_activation(_activation_name(layer.activation), layer)
        elif kind == "ReLU":
            self._relu(layer)
        elif kind in POOL_KINDS:
            cfg = layer.get_config()
            self._attach(Op(POOL_KINDS[kind], tuple(cfg["pool_size"]), tuple(cfg["strides"]),
                            cfg["padding"]), layer)
        elif kind in GLOBAL_POOL_KINDS:
            if layer.get_config().get("keepdims"):
                raise TraceError(f"model '{self.name}' layer '{layer.name}': keepdims=True is "
                                 "not supported")
            self._attach(Op(GLOBAL_POOL_KINDS[kind]), layer)
        elif kind == "Flatten":
            self._attach(Op("flatten"), layer)
        elif kind not in IGNORED_AT_INFERENCE:
            raise TraceError(f"model '{self.name}' layer '{layer.name}': unsupported layer type "
                             f"{kind}; pam-tf merges chains of Conv2D/Dense with pooling, "
                             "Flatten, global pooling, Dropout, activations and BatchNormalization"
                             " (residual and depthwise nets: pam_tf.graph.trace.trace_graph)")

    def _conv(self, layer, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
        """A Conv2D: plain (no dilation, no groups), channels_last."""
        cfg = layer.get_config()
        if tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1) or cfg.get("groups", 1) != 1:
            raise TraceError(f"model '{self.name}' layer '{layer.name}': dilated or grouped "
                             "convolutions are not supported")
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise TraceError(f"model '{self.name}' layer '{layer.name}': only channels_last")
        kh, kw = (int(v) for v in cfg["kernel_size"])
        k, b = _kernel_and_bias(layer)
        self.neuron_layers.append(dict(
            name=layer.name, kind="conv", width=int(k.shape[-1]),
            activation=_activation_name(layer.activation), input_shape=in_shape,
            output_shape=out_shape, fan_in=kh * kw, out_positions=out_shape[0] * out_shape[1],
            kernel_size=(kh, kw), strides=tuple(int(v) for v in cfg["strides"]),
            padding=cfg["padding"], post=[]))
        self.weights.append([k, b])

    def _dense(self, layer, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
        """A Dense on a flat input; after Flatten its fan-in is the positions per channel."""
        k, b = _kernel_and_bias(layer)
        if len(in_shape) != 1:
            raise TraceError(f"model '{self.name}' layer '{layer.name}': Dense on a "
                             f"{len(in_shape)}-d input {in_shape}; add Flatten before it")
        fan_in = 1
        last = self.neuron_layers[-1] if self.neuron_layers else None
        if last is not None and last["post"] and last["post"][-1].kind == "flatten":
            fan_in = in_shape[0] // last["width"]
        elif last is None and self.pre and self.pre[-1].kind == "flatten":
            fan_in = in_shape[0] // self.input_shape[-1]
        self.neuron_layers.append(dict(
            name=layer.name, kind="dense", width=int(k.shape[-1]),
            activation=_activation_name(layer.activation), input_shape=in_shape,
            output_shape=out_shape, fan_in=fan_in, out_positions=1, post=[]))
        self.weights.append([k, b])

    def _fold_batch_norm(self, layer, in_shape: tuple[int, ...]) -> None:
        """Fold a BatchNormalization (inference statistics) into the linear layer before it."""
        if not self.neuron_layers or self.neuron_layers[-1]["post"] or \
                self.neuron_layers[-1]["activation"] != "linear":
            raise TraceError(f"model '{self.name}' layer '{layer.name}': BatchNormalization must "
                             "directly follow a linear Conv2D/Dense to be folded")
        axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
        if axis not in (-1, len(in_shape)):
            raise TraceError(f"model '{self.name}' layer '{layer.name}': BatchNormalization over "
                             f"axis {layer.axis} cannot be folded (channels axis expected)")
        width = self.neuron_layers[-1]["width"]
        gamma = layer.gamma.numpy() if layer.scale else np.ones(width)
        beta = layer.beta.numpy() if layer.center else np.zeros(width)
        scale = gamma / np.sqrt(layer.moving_variance.numpy() + layer.epsilon)
        k, b = self.weights[-1]
        self.weights[-1] = [(k * scale).astype(np.float32),
                            ((b - layer.moving_mean.numpy()) * scale + beta).astype(np.float32)]

    def _relu(self, layer) -> None:
        """A ReLU layer: only the plain one is an activation of the chain."""
        cfg = layer.get_config()
        if cfg.get("max_value") is not None or float(cfg.get("negative_slope", 0)) != 0 or \
                float(cfg.get("threshold", 0)) != 0:
            raise TraceError(f"model '{self.name}' layer '{layer.name}': only plain ReLU is "
                             "supported (no max_value, negative_slope or threshold)")
        self._set_activation("relu", layer)

    def _attach(self, op: Op, layer) -> None:
        """A weightless op: after the last neuron layer, or before the first (pool, flatten)."""
        if self.neuron_layers:
            self.neuron_layers[-1]["post"].append(op)
        elif op.kind in ("max_pool", "avg_pool", "flatten"):
            self.pre.append(op)
        else:
            raise TraceError(f"model '{self.name}' layer '{layer.name}': {op.kind} before the "
                             "first neuron layer is not supported")

    def _set_activation(self, act: str, layer) -> None:
        """An activation layer: becomes the activation of the linear layer right before it."""
        if not self.neuron_layers:
            raise TraceError(f"model '{self.name}' layer '{layer.name}': an activation before "
                             "the first Conv2D/Dense is not supported")
        last = self.neuron_layers[-1]
        if last["post"] or last["activation"] != "linear":
            raise TraceError(f"model '{self.name}' layer '{layer.name}': activation '{act}' must "
                             f"directly follow a linear Conv2D/Dense (after '{last['name']}')")
        if act not in SUPPORTED_ACTIVATIONS:
            raise TraceError(f"model '{self.name}' layer '{layer.name}': activation '{act}' is "
                             f"not supported (one of {', '.join(SUPPORTED_ACTIVATIONS)})")
        last["activation"] = act

    def finish(self) -> TracedModel:
        """Check the whole chain (hidden layers, then a Dense head) and freeze it."""
        name, neuron_layers = self.name, self.neuron_layers
        if not neuron_layers:
            raise TraceError(f"model '{name}': no Conv2D/Dense layers found")
        if neuron_layers[-1]["kind"] != "dense":
            raise TraceError(f"model '{name}': the last neuron layer "
                             f"'{neuron_layers[-1]['name']}' must be a Dense head")
        if neuron_layers[-1]["post"]:
            raise TraceError(f"model '{name}': nothing may follow the head "
                             f"'{neuron_layers[-1]['name']}'")
        if len(neuron_layers) < 2:
            raise TraceError(f"model '{name}': needs at least one hidden layer before the head")
        for spec in neuron_layers[:-1]:
            if spec["activation"] not in ("relu", "linear", "tanh", "sigmoid"):
                raise TraceError(f"model '{name}' layer '{spec['name']}': hidden activation "
                                 f"'{spec['activation']}' is not supported")
        chain = Chain(input_shape=self.input_shape, pre=tuple(self.pre),
                      layers=tuple(NeuronLayer(**{**s, "post": tuple(s["post"])})
                                   for s in neuron_layers))
        return TracedModel(name=name, chain=chain, weights=[(k, b) for k, b in self.weights])


def check_same_chain(traced: Sequence[TracedModel]) -> Chain:
    """Check that all n traced models share one chain; return it (heads may differ in width).

    The error names the model, the layer and what differs, because merging networks of
    different shapes has no meaning.
    """
    if not traced:
        raise TraceError("no models given")
    ref = traced[0]
    for other in traced[1:]:
        if other.chain.input_shape != ref.chain.input_shape:
            raise TraceError(f"model '{other.name}': input shape {other.chain.input_shape} "
                             f"differs from model '{ref.name}' ({ref.chain.input_shape})")
        if other.chain.pre != ref.chain.pre:
            raise TraceError(f"model '{other.name}': the ops before the first layer differ from "
                             f"model '{ref.name}'")
        if len(other.chain.layers) != len(ref.chain.layers):
            raise TraceError(f"model '{other.name}' has {len(other.chain.layers)} Conv2D/Dense "
                             f"layers, model '{ref.name}' has {len(ref.chain.layers)}")
        for i, (a, b) in enumerate(zip(ref.chain.layers, other.chain.layers)):
            sa, sb = a.signature(), b.signature()
            if i == len(ref.chain.layers) - 1:  # heads: only their input must agree
                sa = {k: sa[k] for k in ("kind", "input_shape")}
                sb = {k: sb[k] for k in ("kind", "input_shape")}
            for key in sa:
                if sa[key] != sb[key]:
                    raise TraceError(
                        f"model '{other.name}' layer '{b.name}' (#{i + 1}): {key} "
                        f"{sb[key]} differs from model '{ref.name}' layer '{a.name}' "
                        f"({sa[key]})")
    return ref.chain


def layer_activation_model(model, chain: Chain):
    """A Keras model returning every hidden neuron layer's activation (for information estimates).

    Activations are read after the activation function (post-ReLU, method.md §4) and before
    pooling. Neuron layers are found by position, so models whose layer names differ work too.
    """
    from pam_tf.compat import keras

    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    starts = [j for j, layer in enumerate(layers) if type(layer).__name__ in ("Conv2D", "Dense")]
    outputs = []
    for j in starts[:len(chain.hidden)]:
        while j + 1 < len(layers) and type(layers[j + 1]).__name__ in (
                "BatchNormalization", "Activation", "ReLU"):
            j += 1
        outputs.append(layers[j].output)
    return keras.Model(model.inputs, outputs)
