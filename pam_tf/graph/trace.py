"""Trace a tf_keras functional model into a graph of nodes and channel-coupling classes.

Why classes: in a residual network the two inputs and the output of an ``Add`` are summed
channel by channel, so removing channel c from one of them means removing it from all of them;
a ``DepthwiseConv2D`` (and BN, activations, padding, pooling) transforms each channel on its
own, so it has no channels of its own to choose and follows its input. A ``Conv2D`` or
``Dense`` mixes channels and starts a new set. The classes are the union-find closure of these
rules (the idea of Torch-Pruning's dependency graph, written here for Keras 2).

In PAM terms a coupling class plays the role a neuron layer plays in a chain: its neurons are
grouped, owned, pruned and removed once, everywhere the class appears.

BatchNormalization that directly follows a linear Conv2D, DepthwiseConv2D or Dense (and is that
layer's only reader) is folded into it. Anything else unsupported is refused with a
:class:`~pam_tf.chain.TraceError` naming the model and the layer.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from pam_tf.chain import TraceError

INPUT_CLASS = -1  # the model input's channels: fixed, never pruned
HEAD_CLASS = -2   # the head's outputs: fixed (one head per task)
NEURON_KINDS = ("conv", "dense")           # mix channels: start a new class
WEIGHTED_KINDS = ("conv", "dense", "depthwise")
PASS_KINDS = ("depthwise", "act", "pad", "max_pool", "avg_pool", "global_avg_pool",
              "global_max_pool", "flatten")  # channel-wise: keep their input's class
ACTIVATIONS = ("linear", "relu", "relu6", "sigmoid", "tanh", "softmax")
_POOLS = {"MaxPooling2D": "max_pool", "AveragePooling2D": "avg_pool"}
_GLOBAL_POOLS = {"GlobalAveragePooling2D": "global_avg_pool",
                 "GlobalMaxPooling2D": "global_max_pool"}
_IGNORED = ("Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
            "ActivityRegularization")
SUPPORTED = ("Conv2D, DepthwiseConv2D, Dense, BatchNormalization, Activation, ReLU (max_value "
             "None or 6), ZeroPadding2D, MaxPooling2D, AveragePooling2D, Global*Pooling2D, "
             "Flatten, Add, Dropout")


@dataclass(frozen=True)
class Node:
    """One operation of the graph; its output channels belong to coupling class `cls`.

    `width` is the number of output channels (for flatten: channels before flattening),
    `fan_in` the inputs per input channel each output value reads (k_h·k_w for convolutions,
    flattened positions per channel for a Dense after Flatten), `out_positions` H·W of the
    output (1 for Dense and global pooling).
    """

    name: str
    kind: str
    inputs: tuple[str, ...]
    cls: int
    width: int
    output_shape: tuple[int, ...]
    activation: str = "linear"
    fan_in: int = 1
    out_positions: int = 1
    kernel_size: tuple[int, int] = (1, 1)
    strides: tuple[int, int] = (1, 1)
    padding: str = "valid"
    pool_size: tuple[int, int] = (1, 1)
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, bottom, left, right

    def to_json(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @staticmethod
    def from_json(d: dict) -> "Node":
        return Node(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


@dataclass(frozen=True)
class Graph:
    """The architecture shared by the n single-task networks: input, nodes (topological
    order, the Dense head last) and the name of each hidden coupling class."""

    input_shape: tuple[int, ...]
    nodes: tuple[Node, ...]
    class_names: tuple[str, ...]  # class id -> name of its first Conv2D/Dense producer

    @property
    def head(self) -> Node:
        return self.nodes[-1]

    @property
    def hidden(self) -> tuple[Node, ...]:
        return self.nodes[:-1]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def class_width(self, cls: int) -> int:
        if cls == INPUT_CLASS:
            return int(self.input_shape[-1])
        return next(n.width for n in self.nodes if n.cls == cls)

    def class_nodes(self, cls: int) -> list[Node]:
        """Every node whose output is in class `cls`: where the class appears."""
        return [n for n in self.nodes if n.cls == cls]

    def input_class(self, node: Node) -> int:
        """The coupling class a node reads (all inputs of an Add share one)."""
        return INPUT_CLASS if node.inputs[0] == "input" else self.node(node.inputs[0]).cls

    def signature(self) -> dict:
        """What must agree between the n models: everything but node names and head width."""
        nodes = [{**n.to_json(), "name": None, "inputs": None} for n in self.nodes]
        nodes[-1] = {k: nodes[-1][k] for k in ("kind", "fan_in")}
        index = {n.name: i for i, n in enumerate(self.nodes)}
        edges = [[index.get(s, -1) for s in n.inputs] for n in self.nodes]
        return {"input_shape": list(self.input_shape), "nodes": nodes, "edges": edges}

    def to_json(self) -> dict:
        return {"input_shape": list(self.input_shape), "class_names": list(self.class_names),
                "nodes": [n.to_json() for n in self.nodes]}

    @staticmethod
    def from_json(d: dict) -> "Graph":
        return Graph(input_shape=tuple(d["input_shape"]), class_names=tuple(d["class_names"]),
                     nodes=tuple(Node.from_json(n) for n in d["nodes"]))


@dataclass
class TracedGraph:
    """A traced single-task network: its graph and (kernel, bias) per weighted node, BN folded.

    Conv kernels (k_h, k_w, C_in, C_out), depthwise kernels (k_h, k_w, C, 1), Dense (n_in, n_out).
    """

    name: str
    graph: Graph
    weights: dict[str, tuple[np.ndarray, np.ndarray]]
    tensors: dict[str, str] = field(default_factory=dict)  # node -> Keras layer with its output


def _shape(s) -> tuple[int, ...]:
    return tuple(int(v) for v in s[1:])


def _inbound(layer) -> list:
    src = layer.inbound_nodes[0].inbound_layers
    return list(src) if isinstance(src, (list, tuple)) else [src]


class _UnionFind:
    """Coupling classes as they are discovered: a new class per Conv2D/Dense, Add unites."""

    def __init__(self) -> None:
        self.parent: list[int] = []

    def new(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, c: int) -> int:
        if c < 0:
            return c
        while self.parent[c] != c:
            self.parent[c] = self.parent[self.parent[c]]
            c = self.parent[c]
        return c

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)
        return min(ra, rb)


def trace_graph(model, name: str | None = None) -> TracedGraph:
    """Describe a tf_keras functional model as nodes and coupling classes, or raise TraceError."""
    name = name or model.name
    if not getattr(model, "_is_graph_network", False) and type(model).__name__ != "Sequential":
        raise TraceError(f"model '{name}': subclassed models cannot be traced; build it with the "
                         "functional or Sequential API")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise TraceError(f"model '{name}': expected one input and one output, found "
                         f"{len(model.inputs)} inputs and {len(model.outputs)} outputs")
    tracer = _GraphTracer(name, _shape(model.inputs[0].shape), model)
    for layer in _topological(model, name):
        tracer.add(layer)
    out_layer = model.outputs[0].node.layer
    return tracer.finish(out_layer)


def _topological(model, name: str) -> list:
    """The model's layers, each after the layers it reads (nested models refused)."""
    layers = list(model.layers)
    done, order = set(), []
    pending = layers
    while pending:
        rest = []
        for layer in pending:
            kind = type(layer).__name__
            if hasattr(layer, "layers") and kind not in ("Sequential",) and \
                    getattr(layer, "_is_graph_network", False):
                raise TraceError(f"model '{name}' layer '{layer.name}' is a nested model: build "
                                 "the task head on its output tensor (keras.Model(base.input, "
                                 "head(base.output))) so its layers are traced one by one")
            if kind == "InputLayer":
                done.add(layer.name)
                continue
            if len(layer.inbound_nodes) != 1:
                raise TraceError(f"model '{name}' layer '{layer.name}' ({kind}) is used "
                                 f"{len(layer.inbound_nodes)} times: shared layers are not "
                                 "supported")
            if all(src.name in done for src in _inbound(layer)):
                order.append(layer)
                done.add(layer.name)
            else:
                rest.append(layer)
        if len(rest) == len(pending):
            raise TraceError(f"model '{name}': layer '{rest[0].name}' reads a layer outside "
                             "the model")
        pending = rest
    return order


def _kernel_and_bias(layer, depthwise: bool = False) -> list[np.ndarray]:
    k = (layer.depthwise_kernel if depthwise else layer.kernel).numpy().astype(np.float32)
    width = k.shape[2] if depthwise else k.shape[-1]
    b = layer.bias.numpy() if layer.use_bias else np.zeros(width)
    return [k, b.astype(np.float32)]


def _activation(fn) -> str:
    return getattr(fn, "__name__", str(fn))


class _GraphTracer:
    """The state of one :func:`trace_graph` call: nodes so far, aliases, classes."""

    def __init__(self, name: str, input_shape: tuple[int, ...], model) -> None:
        self.name = name
        self.input_shape = input_shape
        self.nodes: dict[str, dict] = {}
        self.weights: dict[str, list[np.ndarray]] = {}
        self.alias: dict[str, str] = {}  # keras layer name -> node name whose output it is
        self.uf = _UnionFind()
        self.readers: dict[str, int] = {}
        for layer in model.layers:
            if type(layer).__name__ != "InputLayer" and layer.inbound_nodes:
                for src in _inbound(layer):
                    self.readers[src.name] = self.readers.get(src.name, 0) + 1

    def _where(self, layer) -> str:
        return f"model '{self.name}' layer '{layer.name}' ({type(layer).__name__})"

    def _source(self, layer) -> str:
        return self.alias.get(layer.name, layer.name)

    def _cls(self, node_name: str) -> int:
        return INPUT_CLASS if node_name == "input" else self.uf.find(self.nodes[node_name]["cls"])

    def _width(self, node_name: str) -> int:
        return int(self.input_shape[-1]) if node_name == "input" else \
            self.nodes[node_name]["width"]

    def add(self, layer) -> None:
        """Take one layer into the graph (or refuse it, naming it)."""
        kind = type(layer).__name__
        srcs = [self._source(s) if type(s).__name__ != "InputLayer" else "input"
                for s in _inbound(layer)]
        if kind in _IGNORED:
            self.alias[layer.name] = srcs[0]
            return
        if kind == "Add":
            self._add(layer, srcs)
            return
        if len(srcs) != 1:
            raise TraceError(f"{self._where(layer)} has {len(srcs)} inputs: only Add may join "
                             "tensors (concatenation and other joins are not supported)")
        src = srcs[0]
        out_shape = _shape(layer.output_shape)
        if kind == "Conv2D":
            self._conv(layer, src, out_shape)
        elif kind == "DepthwiseConv2D":
            self._depthwise(layer, src, out_shape)
        elif kind == "Dense":
            self._dense(layer, src, out_shape)
        elif kind == "BatchNormalization":
            self._fold_batch_norm(layer, src)
        elif kind in ("Activation", "ReLU"):
            self._activation_layer(layer, src, out_shape)
        elif kind == "ZeroPadding2D":
            (t, b), (l, r) = layer.padding
            self._pass(layer, src, "pad", out_shape, pad=(int(t), int(b), int(l), int(r)))
        elif kind in _POOLS:
            cfg = layer.get_config()
            self._pass(layer, src, _POOLS[kind], out_shape, pool_size=tuple(cfg["pool_size"]),
                       strides=tuple(cfg["strides"]), padding=cfg["padding"])
        elif kind in _GLOBAL_POOLS:
            if layer.get_config().get("keepdims"):
                raise TraceError(f"{self._where(layer)}: keepdims=True is not supported")
            self._pass(layer, src, _GLOBAL_POOLS[kind], out_shape)
        elif kind == "Flatten":
            self._pass(layer, src, "flatten", out_shape)
        else:
            raise TraceError(f"{self._where(layer)}: unsupported layer type {kind}; the graph "
                             f"tracer takes {SUPPORTED}")

    def _node(self, layer, kind: str, inputs: Sequence[str], cls: int, width: int,
              out_shape: tuple[int, ...], **extra) -> None:
        positions = out_shape[0] * out_shape[1] if len(out_shape) == 3 else 1
        self.nodes[layer.name] = dict(name=layer.name, kind=kind, inputs=tuple(inputs), cls=cls,
                                      width=int(width), output_shape=out_shape,
                                      out_positions=positions, **extra)

    def _check_conv_config(self, layer) -> dict:
        cfg = layer.get_config()
        if tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1) or cfg.get("groups", 1) != 1:
            raise TraceError(f"{self._where(layer)}: dilated or grouped convolutions are not "
                             "supported")
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise TraceError(f"{self._where(layer)}: only channels_last is supported")
        return cfg

    def _conv(self, layer, src: str, out_shape) -> None:
        cfg = self._check_conv_config(layer)
        kh, kw = (int(v) for v in cfg["kernel_size"])
        self._node(layer, "conv", [src], self.uf.new(), out_shape[-1], out_shape,
                   activation=self._checked(_activation(layer.activation), layer),
                   fan_in=kh * kw, kernel_size=(kh, kw),
                   strides=tuple(int(v) for v in cfg["strides"]), padding=cfg["padding"])
        self.weights[layer.name] = _kernel_and_bias(layer)

    def _depthwise(self, layer, src: str, out_shape) -> None:
        """A depthwise conv transforms each channel alone: it keeps its input's class."""
        cfg = self._check_conv_config(layer)
        if int(cfg.get("depth_multiplier", 1)) != 1:
            raise TraceError(f"{self._where(layer)}: depth_multiplier "
                             f"{cfg['depth_multiplier']} is not supported (only 1: the layer then "
                             "has no channels of its own)")
        if src == "input":
            raise TraceError(f"{self._where(layer)}: a depthwise convolution on the model input "
                             "is not supported (its channels could not be pruned)")
        kh, kw = (int(v) for v in cfg["kernel_size"])
        self._node(layer, "depthwise", [src], self._cls(src), out_shape[-1], out_shape,
                   activation=self._checked(_activation(layer.activation), layer),
                   fan_in=kh * kw, kernel_size=(kh, kw),
                   strides=tuple(int(v) for v in cfg["strides"]), padding=cfg["padding"])
        self.weights[layer.name] = _kernel_and_bias(layer, depthwise=True)

    def _dense(self, layer, src: str, out_shape) -> None:
        in_shape = _shape(layer.input_shape)
        if len(in_shape) != 1:
            raise TraceError(f"{self._where(layer)}: Dense on a {len(in_shape)}-d input "
                             f"{in_shape}; add Flatten or global pooling before it")
        channels = self._width(src)
        self._node(layer, "dense", [src], self.uf.new(), out_shape[-1], out_shape,
                   activation=self._checked(_activation(layer.activation), layer),
                   fan_in=in_shape[0] // channels)
        self.weights[layer.name] = _kernel_and_bias(layer)

    def _add(self, layer, srcs: list[str]) -> None:
        """An Add couples its inputs and its output: one class for all of them."""
        if "input" in srcs:
            raise TraceError(f"{self._where(layer)}: a residual add on the model input is not "
                             "supported (the input's channels cannot be pruned)")
        shapes = {tuple(self.nodes[s]["output_shape"]) for s in srcs}
        if len(shapes) != 1:
            raise TraceError(f"{self._where(layer)}: inputs of shapes {sorted(shapes)} differ "
                             "(broadcasting adds are not supported)")
        cls = self._cls(srcs[0])
        for s in srcs[1:]:
            cls = self.uf.union(cls, self._cls(s))
        out_shape = _shape(layer.output_shape)
        self._node(layer, "add", srcs, cls, out_shape[-1], out_shape)

    def _pass(self, layer, src: str, kind: str, out_shape, **extra) -> None:
        """A channel-wise weightless op: its output keeps its input's class."""
        width = self._width(src)
        self._node(layer, kind, [src], self._cls(src), width, out_shape, **extra)

    def _read_once(self, node_name: str) -> bool:
        """Whether a node's output reaches exactly one layer (through ignored/folded layers),
        so a BN or activation may be folded into it without changing what others read."""
        names = [node_name] + [k for k, v in self.alias.items() if v == node_name]
        return all(self.readers.get(k, 0) == 1 for k in names)

    def _checked(self, act: str, layer) -> str:
        if act not in ACTIVATIONS:
            raise TraceError(f"{self._where(layer)}: activation '{act}' is not supported (one "
                             f"of {', '.join(ACTIVATIONS)})")
        return act

    def _activation_layer(self, layer, src: str, out_shape) -> None:
        """Fused into the linear weighted node it follows when that node has no other reader;
        otherwise its own channel-wise node (e.g. the ReLU after a residual add)."""
        if type(layer).__name__ == "ReLU":
            cfg = layer.get_config()
            if float(cfg.get("negative_slope", 0)) != 0 or float(cfg.get("threshold", 0)) != 0:
                raise TraceError(f"{self._where(layer)}: only ReLU without negative_slope or "
                                 "threshold is supported")
            max_value = cfg.get("max_value")
            if max_value is not None and float(max_value) != 6.0:
                raise TraceError(f"{self._where(layer)}: ReLU max_value {max_value} is not "
                                 "supported (None or 6)")
            act = "relu" if max_value is None else "relu6"
        else:
            act = self._checked(_activation(layer.activation), layer)
        node = self.nodes.get(src)
        if node is not None and node["kind"] in WEIGHTED_KINDS and \
                node["activation"] == "linear" and self._read_once(src):
            node["activation"] = act
            self.alias[layer.name] = src
            return
        self._pass(layer, src, "act", out_shape, activation=act)

    def _fold_batch_norm(self, layer, src: str) -> None:
        """Fold BN (inference statistics) into the linear Conv2D/DepthwiseConv2D/Dense before it."""
        node = self.nodes.get(src)
        if node is None or node["kind"] not in WEIGHTED_KINDS or node["activation"] != "linear" \
                or not self._read_once(src):
            raise TraceError(f"{self._where(layer)}: BatchNormalization must directly follow a "
                             "linear Conv2D, DepthwiseConv2D or Dense that nothing else reads, "
                             "to be folded")
        axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
        if axis not in (-1, len(node["output_shape"])):
            raise TraceError(f"{self._where(layer)}: BatchNormalization over axis {layer.axis} "
                             "cannot be folded (channels axis expected)")
        width = node["width"]
        gamma = layer.gamma.numpy() if layer.scale else np.ones(width)
        beta = layer.beta.numpy() if layer.center else np.zeros(width)
        scale = gamma / np.sqrt(layer.moving_variance.numpy() + layer.epsilon)
        k, b = self.weights[src]
        k = k * (scale[:, None] if node["kind"] == "depthwise" else scale)
        self.weights[src] = [k.astype(np.float32),
                             ((b - layer.moving_mean.numpy()) * scale + beta).astype(np.float32)]
        self.alias[layer.name] = src

    def finish(self, out_layer) -> TracedGraph:
        """Check the head (a Dense producing the model output, last), number the classes."""
        head_name = self._source(out_layer)
        head = self.nodes.get(head_name)
        if head is None or head["kind"] != "dense":
            raise TraceError(f"model '{self.name}': the output must come from a Dense head, "
                             f"found layer '{out_layer.name}' ({type(out_layer).__name__})")
        if list(self.nodes)[-1] != head_name:
            raise TraceError(f"model '{self.name}': layers after the head '{head_name}' are not "
                             "supported")
        if self.readers.get(head_name, 0):
            raise TraceError(f"model '{self.name}': the head '{head_name}' is read by another "
                             "layer")
        if len(self.nodes) < 2 or all(n["kind"] not in NEURON_KINDS
                                      for n in list(self.nodes.values())[:-1]):
            raise TraceError(f"model '{self.name}': needs at least one Conv2D/Dense before the "
                             "head")
        head_cls = self.uf.find(head["cls"])
        numbering: dict[int, int] = {}
        class_names: list[str] = []
        nodes = []
        for spec in self.nodes.values():
            root = self.uf.find(spec["cls"])
            if root == head_cls:
                cls = HEAD_CLASS
            elif root == INPUT_CLASS:
                cls = INPUT_CLASS
            else:
                if root not in numbering:
                    numbering[root] = len(class_names)
                    class_names.append(spec["name"])
                cls = numbering[root]
            nodes.append(Node(**{**spec, "cls": cls}))
        graph = Graph(self.input_shape, tuple(nodes), tuple(class_names))
        tensors = {n: n for n in self.nodes}
        for layer_name, node_name in self.alias.items():  # topological: the last one wins
            if node_name != "input":
                tensors[node_name] = layer_name
        return TracedGraph(self.name, graph, {k: (v[0], v[1]) for k, v in self.weights.items()},
                           tensors)


def check_same_graph(traced: Sequence[TracedGraph]) -> Graph:
    """Check that all n traced models share one graph (heads may differ in width); return it."""
    if not traced:
        raise TraceError("no models given")
    ref = traced[0]
    sig = ref.graph.signature()
    for other in traced[1:]:
        osig = other.graph.signature()
        if osig == sig:
            continue
        if osig["input_shape"] != sig["input_shape"]:
            raise TraceError(f"model '{other.name}': input shape {osig['input_shape']} differs "
                             f"from model '{ref.name}' ({sig['input_shape']})")
        if len(osig["nodes"]) != len(sig["nodes"]):
            raise TraceError(f"model '{other.name}' has {len(osig['nodes'])} traced nodes, model "
                             f"'{ref.name}' has {len(sig['nodes'])}")
        for a, b, ea, eb in zip(ref.graph.nodes, other.graph.nodes, sig["nodes"], osig["nodes"]):
            if ea != eb:
                raise TraceError(f"model '{other.name}' node '{b.name}' differs from model "
                                 f"'{ref.name}' node '{a.name}'")
        raise TraceError(f"model '{other.name}': its layers are connected differently from "
                         f"model '{ref.name}'")
    return ref.graph


__all__ = ["Node", "Graph", "TracedGraph", "trace_graph", "check_same_graph", "INPUT_CLASS",
           "HEAD_CLASS", "TraceError"]
