"""Count MACs and FLOPs of an exported .tflite file from its flatbuffer, independently of Keras.

Why: the manifest promises a cost per task combination. The plan computes it from group shapes;
this module recounts it from what was actually written (operators and tensor shapes in the
flatbuffer, read with the schema that ships with ``ai_edge_litert``), so a converter that fused,
split or duplicated work would be caught rather than reported with the plan's figure.

Convention (method.md §9), per operator with n = kernel elements per output value:

- CONV_2D: weights (C_out, k_h, k_w, C_in_per_group), n = k_h·k_w·C_in;
- DEPTHWISE_CONV_2D: weights (1, k_h, k_w, C·mult), n = k_h·k_w;
- FULLY_CONNECTED: weights (n_out, n_in), n = n_in;

MACs = n × output elements and FLOPs = (2·n − 1) × output elements; bias, pooling, activations
and concatenation are not counted. A residual ADD is elementwise like a bias and is not counted
in MACs or FLOPs either (method.md §9); its output elements are tallied in ``add_elements`` so
a graph network's adds are still seen in the recount. Output elements are counted at batch 1 (a dynamic batch
dimension is stored as 1 in ``shape``).

Weights may be stored as float16 (a DEQUANTIZE op in front of the operator) or int8 (dynamic
range: the operator reads the int8 tensor directly); the weight tensor's *shape* is what counts,
its storage type is reported in ``weight_types``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ai_edge_litert import schema_py_generated as schema

from pam_tf.export.errors import CostMismatchError, ExportError

_OP = schema.BuiltinOperator
COUNTED = {_OP.CONV_2D: "CONV_2D", _OP.DEPTHWISE_CONV_2D: "DEPTHWISE_CONV_2D",
           _OP.FULLY_CONNECTED: "FULLY_CONNECTED"}
# Ops that only change how a constant is stored; look through them to the stored tensor.
_STORAGE_OPS = {_OP.DEQUANTIZE, _OP.DENSIFY}
TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
_ITEMSIZE = {"FLOAT32": 4, "FLOAT16": 2, "INT8": 1, "UINT8": 1, "INT32": 4, "INT64": 8,
             "INT16": 2}


@dataclass
class OpCost:
    """One counted operator: kind, weight shape and storage type, output shape, n, MACs, FLOPs."""

    kind: str
    weight_shape: tuple[int, ...]
    weight_type: str
    output_shape: tuple[int, ...]
    per_output: int
    macs: int
    flops: int


@dataclass
class FlatCost:
    """Cost of one subgraph (one signature) of a .tflite file."""

    macs: int = 0
    flops: int = 0
    ops: list[OpCost] = field(default_factory=list)
    add_elements: int = 0  # output elements of ADD ops (residual adds): not in MACs/FLOPs

    @property
    def weight_types(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for op in self.ops:
            out[op.weight_type] = out.get(op.weight_type, 0) + 1
        return out


def _model(data: bytes):
    try:
        return schema.Model.GetRootAsModel(data, 0)
    except Exception as e:  # flatbuffers raises assorted errors on garbage
        raise ExportError(f"not a .tflite flatbuffer ({type(e).__name__}: {e})") from e


def _opcode(model, op) -> int:
    code = model.OperatorCodes(op.OpcodeIndex())
    # builtin_code is authoritative; deprecated_builtin_code (int8) only for codes < 127
    return max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))


def _shape(tensor) -> tuple[int, ...]:
    if tensor.ShapeLength() == 0:
        return ()
    return tuple(max(int(v), 1) for v in tensor.ShapeAsNumpy())


def signature_subgraphs(data: bytes) -> dict[str, int]:
    """Signature key → subgraph index (a plain single-model file: {'serving_default': 0})."""
    model = _model(data)
    out = {}
    for i in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(i)
        out[sig.SignatureKey().decode()] = int(sig.SubgraphIndex())
    return out or {"serving_default": 0}


def _producers(graph) -> dict[int, object]:
    prod = {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        for t in op.OutputsAsNumpy():
            prod[int(t)] = op
    return prod


def _stored(model, graph, producers, index: int) -> int:
    """Follow a weight tensor back through DEQUANTIZE/DENSIFY to the tensor holding the data."""
    seen = 0
    while index in producers and seen < 4:
        op = producers[index]
        if _opcode(model, op) not in _STORAGE_OPS:
            break
        index = int(op.InputsAsNumpy()[0])
        seen += 1
    return index


def count_subgraph(data: bytes, subgraph: int = 0) -> FlatCost:
    """MACs/FLOPs of the CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED ops of one subgraph
    (and the output elements of its ADD ops, uncounted in MACs)."""
    model = _model(data)
    if not 0 <= subgraph < model.SubgraphsLength():
        raise ExportError(f"subgraph {subgraph} does not exist ({model.SubgraphsLength()} "
                          "subgraphs)")
    graph = model.Subgraphs(subgraph)
    producers = _producers(graph)
    cost = FlatCost()
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = _opcode(model, op)
        if code == _OP.ADD:
            out = graph.Tensors(int(op.OutputsAsNumpy()[0]))
            cost.add_elements += int(np.prod(_shape(out), dtype=np.int64))
            continue
        if code not in COUNTED:
            continue
        kind = COUNTED[code]
        inputs = op.InputsAsNumpy()
        weight = graph.Tensors(int(inputs[1]))
        stored = graph.Tensors(_stored(model, graph, producers, int(inputs[1])))
        w_shape = _shape(weight)
        out_shape = _shape(graph.Tensors(int(op.OutputsAsNumpy()[0])))
        if kind == "CONV_2D":
            if len(w_shape) != 4:
                raise ExportError(f"CONV_2D #{i}: weight shape {w_shape} is not 4-d")
            n = w_shape[1] * w_shape[2] * w_shape[3]
        elif kind == "DEPTHWISE_CONV_2D":
            if len(w_shape) != 4:
                raise ExportError(f"DEPTHWISE_CONV_2D #{i}: weight shape {w_shape} is not 4-d")
            n = w_shape[1] * w_shape[2]
        else:
            if len(w_shape) != 2:
                raise ExportError(f"FULLY_CONNECTED #{i}: weight shape {w_shape} is not 2-d")
            n = w_shape[1]
        outputs = int(np.prod(out_shape, dtype=np.int64))
        macs, flops = n * outputs, (2 * n - 1) * outputs
        cost.ops.append(OpCost(kind, w_shape, TYPE_NAMES.get(stored.Type(), str(stored.Type())),
                               out_shape, n, macs, flops))
        cost.macs += macs
        cost.flops += flops
    return cost


def count(data: bytes, signature: str | None = None) -> FlatCost:
    """Cost of one signature of a file (default: its only/first signature)."""
    subgraphs = signature_subgraphs(data)
    key = signature if signature is not None else next(iter(subgraphs))
    if key not in subgraphs:
        raise ExportError(f"no signature '{key}' in the flatbuffer (has {sorted(subgraphs)})")
    return count_subgraph(data, subgraphs[key])


def check(counted: FlatCost, macs: int, flops: int, where: str) -> None:
    """Raise CostMismatchError unless the counted MACs and FLOPs equal the expected figures."""
    if counted.macs != macs or counted.flops != flops:
        ops = ", ".join(f"{o.kind}{o.weight_shape}->{o.output_shape}" for o in counted.ops)
        raise CostMismatchError(
            f"{where}: the flatbuffer counts {counted.macs} MACs / {counted.flops} FLOPs, the "
            f"plan says {macs} MACs / {flops} FLOPs (difference {counted.macs - macs} MACs); "
            f"counted ops: {ops}")


def stored_weight_elements(data: bytes) -> tuple[int, int]:
    """(elements, bytes) of the distinct constant buffers read as weights/biases by counted ops.

    Over all subgraphs: a weight shared by several signatures is counted once if, and only if,
    the file stores it once. Comparing the element count with the model's own parameter count
    shows whether the converter deduplicated the shared groups' weights.
    """
    model = _model(data)
    seen: dict[int, tuple[int, int]] = {}
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        producers = _producers(graph)
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            if _opcode(model, op) not in COUNTED:
                continue
            for k in list(op.InputsAsNumpy())[1:3]:
                if k < 0:
                    continue
                tensor = graph.Tensors(_stored(model, graph, producers, int(k)))
                buf = int(tensor.Buffer())
                if buf <= 0 or buf in seen:
                    continue
                b = model.Buffers(buf)
                nbytes = int(b.DataLength()) or int(b.Size())
                if nbytes == 0:
                    continue
                elems = int(np.prod(_shape(tensor), dtype=np.int64))
                seen[buf] = (elems, nbytes)
    return sum(e for e, _ in seen.values()), sum(b for _, b in seen.values())
