"""The network being zipped, held as one dense layer per chain layer (MTZ's working form).

A plan splits each layer into groups and its weights into one kernel per group; zipping moves
neurons between groups and lets a merged neuron read inputs its two parents never shared, which
is awkward to do group by group. So :class:`ZipState` holds, per hidden layer l, every neuron of
the current plan (identified by its plan source ``(model, neuron)``), which tasks own it, and one
kernel over *all* neurons of layer l-1: ``(positions, N_{l-1}, N_l)``, positions being k_h·k_w
for a conv and the flattened positions per channel for a dense layer after Flatten. An edge the
plan does not have is an exact zero. Such a dense network computes the plan's function, so it
also gives every layer's input (for the Hessians) with one plain Keras model.

:meth:`ZipState.legalize` re-derives the owners a neuron needs: a neuron read (through a non-zero
weight) by a neuron of tasks T must be computed whenever any task of T runs, so its owners must
contain T (the plan's read rule, method.md §2). This is what makes a partly merged layer honest:
zipped neurons reading a partly merged layer below make all the neurons they read shared, so a
partial merge saves computation only where the layer below is fully merged.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from pam_tf.build import apply_ops, group_layer_name
from pam_tf.chain import Chain, NeuronLayer
from pam_tf.plan import Plan, plan_from_owners

__all__ = ["ZipState"]

Source = tuple[int, int]


def _positions(layer: NeuronLayer) -> int:
    """Kernel positions per input channel: k_h·k_w (conv) or flattened positions (dense)."""
    return layer.kernel_size[0] * layer.kernel_size[1] if layer.kind == "conv" else layer.fan_in


class ZipState:
    """Dense per-layer form of a plan plus weights (see module docstring)."""

    def __init__(self, chain: Chain, tasks: Sequence[str], head_units: Sequence[int],
                 head_activations: Sequence[str], ids: list[list[Source]],
                 owners: list[np.ndarray], kernels: list[np.ndarray], biases: list[np.ndarray],
                 head_kernels: list[np.ndarray], head_biases: list[np.ndarray]):
        self.chain, self.tasks = chain, tuple(tasks)
        self.head_units, self.head_activations = tuple(head_units), tuple(head_activations)
        self.ids, self.owners = ids, owners
        self.kernels, self.biases = kernels, biases
        self.head_kernels, self.head_biases = head_kernels, head_biases

    # ----- plan ↔ dense ---------------------------------------------------------------------
    @staticmethod
    def from_plan(plan: Plan, weights: dict[str, np.ndarray]) -> "ZipState":
        """The dense form of `plan` with `weights` (edges the plan lacks are zeros)."""
        n = len(plan.tasks)
        ids = [[s for g in groups for s in g.sources] for groups in plan.layers]
        owners = [np.array([[t in g.owners for t in plan.tasks] for g in groups
                            for _ in g.sources], bool).reshape(-1, n) for groups in plan.layers]
        index = [{s: i for i, s in enumerate(layer_ids)} for layer_ids in ids]
        kernels, biases = [], []
        for l, (layer, groups) in enumerate(zip(plan.chain.hidden, plan.layers)):
            n_in = layer.in_channels if l == 0 else len(ids[l - 1])
            k = np.zeros((_positions(layer), n_in, len(ids[l])), np.float32)
            b = np.zeros(len(ids[l]), np.float32)
            for g in groups:
                name = group_layer_name(layer, g)
                cols = np.array([index[l][s] for s in g.sources])
                blocks = _row_blocks(plan, l, plan.readable(l, g), index)
                _scatter(k, weights[f"{name}/kernel"], blocks, cols, layer)
                b[cols] = weights[f"{name}/bias"]
            kernels.append(k)
            biases.append(b)
        head_kernels, head_biases = [], []
        last = len(plan.layers)
        for h in plan.heads:
            k = np.zeros((plan.chain.head.fan_in, len(ids[-1]), h.units), np.float32)
            blocks = _row_blocks(plan, last, plan.head_inputs(h.task), index)
            _scatter(k, weights[f"{h.task}/kernel"], blocks, np.arange(h.units), plan.chain.head)
            head_kernels.append(k)
            head_biases.append(np.asarray(weights[f"{h.task}/bias"], np.float32))
        return ZipState(plan.chain, plan.tasks, [h.units for h in plan.heads],
                        [h.activation for h in plan.heads], ids, owners, kernels, biases,
                        head_kernels, head_biases)

    def to_plan(self, method: str, meta: dict | None = None) -> Plan:
        """The plan of the current owners (one group per owner set, canonical order)."""
        pooled = []
        for l, layer in enumerate(self.chain.hidden):
            d = layer.width
            own = [frozenset()] * (len(self.tasks) * d)
            for (m, i), mask in zip(self.ids[l], self.owners[l]):
                own[m * d + i] = frozenset(int(t) for t in np.flatnonzero(mask))
            pooled.append(own)
        return plan_from_owners(self.chain, self.tasks, self.head_units, self.head_activations,
                                pooled, method=method, meta=meta)

    def weights_for(self, plan: Plan) -> dict[str, np.ndarray]:
        """`plan`'s weights sliced out of the dense kernels (the plan's neurons by source)."""
        index = [{s: i for i, s in enumerate(layer_ids)} for layer_ids in self.ids]
        out: dict[str, np.ndarray] = {}
        for l, (layer, groups) in enumerate(zip(plan.chain.hidden, plan.layers)):
            for g in groups:
                name = group_layer_name(layer, g)
                cols = np.array([index[l][s] for s in g.sources])
                blocks = _row_blocks(plan, l, plan.readable(l, g), index)
                out[f"{name}/kernel"] = _gather(self.kernels[l], blocks, cols, layer)
                out[f"{name}/bias"] = self.biases[l][cols].astype(np.float32)
        last = len(plan.layers)
        for t, h in enumerate(plan.heads):
            blocks = _row_blocks(plan, last, plan.head_inputs(h.task), index)
            out[f"{h.task}/kernel"] = _gather(self.head_kernels[t], blocks, np.arange(h.units),
                                              plan.chain.head)
            out[f"{h.task}/bias"] = self.head_biases[t].astype(np.float32)
        return out

    # ----- the dense network's function ---------------------------------------------------------
    def layer_input(self, l: int, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """What hidden layer `l` reads for images `x`: (N, H, W, N_{l-1}) before a conv,
        (N, positions·N_{l-1}) before a dense layer (position-major, as Flatten orders it)."""
        from pam_tf.compat import keras

        inputs = keras.Input(self.chain.input_shape)
        y = apply_ops(inputs, self.chain.pre, "input") if self.chain.pre else inputs
        layers = []
        for m in range(l):
            layer = self.chain.hidden[m]
            width = len(self.ids[m])
            if layer.kind == "conv":
                keras_layer = keras.layers.Conv2D(width, layer.kernel_size, strides=layer.strides,
                                                  padding=layer.padding,
                                                  activation=layer.activation, name=layer.name)
            else:
                keras_layer = keras.layers.Dense(width, activation=layer.activation,
                                                 name=layer.name)
            y = keras_layer(y)
            layers.append(keras_layer)
            y = apply_ops(y, layer.post, layer.name) if layer.post else y
        model = keras.Model(inputs, y)
        for m, keras_layer in enumerate(layers):
            keras_layer.set_weights([self.keras_kernel(m), self.biases[m]])
        x = np.asarray(x, np.float32)
        return np.concatenate([np.asarray(model(x[i:i + batch_size], training=False))
                               for i in range(0, len(x), batch_size)])

    def keras_kernel(self, l: int) -> np.ndarray:
        """Layer l's dense kernel in Keras' shape: (k_h, k_w, N_in, N_out) or (D, N_out)."""
        layer, k = self.chain.hidden[l], self.kernels[l]
        if layer.kind == "conv":
            return k.reshape(*layer.kernel_size, k.shape[1], k.shape[2])
        return k.reshape(-1, k.shape[2])

    # ----- reading rules ------------------------------------------------------------------------
    def input_owners(self, l: int) -> np.ndarray:
        """Owners (N_in, n) of what layer l reads; the image (l = 0) belongs to every task."""
        if l == 0:
            return np.ones((self.chain.hidden[0].in_channels, len(self.tasks)), bool)
        return self.owners[l - 1]

    def legalize(self) -> int:
        """Widen owners so every non-zero edge is one the plan allows (module docstring), from
        the heads down; returns how many neurons were widened."""
        widened = 0
        last = self.owners[-1]
        for t, k in enumerate(self.head_kernels):
            read = np.any(k != 0, axis=(0, 2))
            widened += int(np.sum(read & ~last[:, t]))
            last[read, t] = True
        for l in range(len(self.kernels) - 1, 0, -1):
            read = np.any(self.kernels[l] != 0, axis=0)              # (N_{l-1}, N_l)
            need = (read.astype(np.int64) @ self.owners[l].astype(np.int64)) > 0
            below = self.owners[l - 1]
            widened += int(np.sum(np.any(need & ~below, axis=1)))
            below |= need
        return widened

    def remove(self, l: int, cols: np.ndarray) -> None:
        """Drop neurons `cols` of hidden layer l (their outgoing rows go with them)."""
        self.kernels[l] = np.delete(self.kernels[l], cols, axis=2)
        self.biases[l] = np.delete(self.biases[l], cols)
        self.owners[l] = np.delete(self.owners[l], cols, axis=0)
        gone = set(np.asarray(cols).tolist())
        self.ids[l] = [s for i, s in enumerate(self.ids[l]) if i not in gone]
        if l + 1 < len(self.kernels):
            self.kernels[l + 1] = np.delete(self.kernels[l + 1], cols, axis=1)
        else:
            self.head_kernels = [np.delete(k, cols, axis=1) for k in self.head_kernels]

    def reroute(self, l: int, into: np.ndarray, away: np.ndarray) -> None:
        """The next layer (or the heads) reads neurons `away` of layer l through `into` instead:
        their outgoing weights are added (the readers of the two are disjoint before a zip, so
        this is MTZ's permutation of the next layer's inputs)."""
        if l + 1 < len(self.kernels):
            k = self.kernels[l + 1]
            k[:, into, :] += k[:, away, :]
        else:
            for k in self.head_kernels:
                k[:, into, :] += k[:, away, :]


def _row_blocks(plan: Plan, l: int, readable: Sequence[int],
                index: list[dict[Source, int]]) -> list[np.ndarray]:
    """Dense row indices (neurons of layer l-1) of each input block of a group of layer l (or of
    a head, l = number of hidden layers), in the order the group reads them."""
    if l == 0:
        return [np.arange(plan.chain.hidden[0].in_channels)]
    groups = plan.layers[l - 1]
    return [np.array([index[l - 1][s] for s in groups[gi].sources]) for gi in readable]


def _scatter(dense: np.ndarray, kernel: np.ndarray, blocks: list[np.ndarray], cols: np.ndarray,
             layer: NeuronLayer) -> None:
    """Write a group's kernel into the dense (positions, N_in, N_out) kernel."""
    p = dense.shape[0]
    if layer.kind == "conv":
        k = kernel.reshape(p, -1, len(cols))   # (kh, kw, cin, w): channels of the blocks in order
        start = 0
        for rows in blocks:
            dense[:, rows[:, None], cols[None, :]] = k[:, start:start + len(rows)]
            start += len(rows)
        return
    start = 0  # dense: every block is (positions × its width), position-major (Flatten order)
    for rows in blocks:
        size = p * len(rows)
        dense[:, rows[:, None], cols[None, :]] = kernel[start:start + size].reshape(
            p, len(rows), len(cols))
        start += size


def _gather(dense: np.ndarray, blocks: list[np.ndarray], cols: np.ndarray,
            layer: NeuronLayer) -> np.ndarray:
    """The inverse of :func:`_scatter`: a group's kernel in the plan's layout."""
    p = dense.shape[0]
    parts = [dense[:, rows[:, None], cols[None, :]] for rows in blocks]   # (p, w_r, w)
    if layer.kind == "conv":
        k = np.concatenate(parts, axis=1)
        return k.reshape(*layer.kernel_size, k.shape[1], len(cols)).astype(np.float32)
    return np.concatenate([x.reshape(p * x.shape[1], len(cols)) for x in parts],
                          axis=0).astype(np.float32)
