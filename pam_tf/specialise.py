"""One task's sub-network of a merged plan, as a network of its own (PAM-S, issue 14).

A merged network is one file for every combination: task t alone runs every group that t's head
needs (:meth:`pam_tf.plan.Plan.needed`), including the neurons the other tasks needed. Cutting
that sub-network out and pruning it further for t alone gives a specialised single-task file:
cheaper for t, at the price of a second file beside the shared multi-task one. pam-tf reports it
separately from PAM (method ``pam_spec``), never as PAM itself.

The cut is exact: in layer l the needed groups become one group owned by t, and each group's
kernel rows move to where its inputs now sit; edges the merged plan forbade (a group reading a
group it may not read) become zero weights, so the sub-network computes exactly what the merged
network computes for t. Its neurons are numbered afresh; the chain of the one-task plan says the
pool they came from is n·d wide (the merged net's pool), which is what the plan checks them
against.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from pam_tf.artifacts import Network
from pam_tf.build import check_weights, group_layer_name
from pam_tf.plan import Group, Head, Plan


def pool_chain(plan: Plan):
    """The plan's chain with every hidden width n·d: the pool a one-task cut draws from."""
    n = len(plan.tasks)
    layers = tuple(replace(layer, width=layer.width * n) for layer in plan.chain.hidden)
    return replace(plan.chain, layers=layers + (plan.chain.head,))


def _moved_rows(kernel: np.ndarray, old_blocks: list[int], new_blocks: list[int],
                old_of: list[int], fan_in: int, conv: bool) -> np.ndarray:
    """Kernel rows of one group rearranged from its old inputs to the new input layout.

    `old_blocks`/`new_blocks`: widths of the input groups in the old (readable) and new (needed)
    order; `old_of[k]`: index in the new order of the k-th old input group. A conv's rows are
    input channels. A dense layer's rows are flattened inputs: before, each input group was
    flattened on its own (block by block, position-major inside a block); after, the one merged
    group is flattened whole, so row = position · (all channels) + channel offset."""
    unit = 1 if conv else fan_in
    new_off = np.concatenate([[0], np.cumsum(new_blocks)])[:-1]
    total = int(sum(new_blocks))
    src, dst = [], []
    pos = 0
    for k, width in enumerate(old_blocks):
        p, c = np.divmod(np.arange(width * unit), width)
        src.append(pos + p * width + c)
        dst.append(p * total + new_off[old_of[k]] + c)
        pos += width * unit
    src, dst = np.concatenate(src), np.concatenate(dst)
    axis = 2 if conv else 0
    shape = list(kernel.shape)
    shape[axis] = total * unit
    out = np.zeros(shape, kernel.dtype)
    if conv:
        out[:, :, dst] = kernel[:, :, src]
    else:
        out[dst] = kernel[src]
    return out


def cut_task(net: Network, task: str) -> Network:
    """Task `task`'s sub-network of `net` as a one-task network computing the same outputs."""
    plan, w = net.plan, net.weights
    needed = plan.needed((task,))
    chain = pool_chain(plan)
    weights: dict[str, np.ndarray] = {}
    layers = []
    for l, (layer, idx) in enumerate(zip(plan.chain.hidden, needed)):
        groups = [plan.layers[l][i] for i in idx]
        kernels, biases = [], []
        for i, g in zip(idx, groups):
            name = group_layer_name(layer, g)
            kernel = w[f"{name}/kernel"]
            if l > 0:
                kernel = _reorder_inputs(plan, l, i, needed[l - 1], kernel)
            kernels.append(kernel)
            biases.append(w[f"{name}/bias"])
        width = sum(g.width for g in groups)
        one = Group((task,), tuple((0, k) for k in range(width)))
        layers.append((one,))
        name = group_layer_name(chain.hidden[l], one)
        weights[f"{name}/kernel"] = np.concatenate(kernels, axis=-1)
        weights[f"{name}/bias"] = np.concatenate(biases)
    head = plan.heads[plan.task_index(task)]
    head_kernel = _reorder_inputs(plan, len(plan.layers), None, needed[-1],
                                  w[f"{task}/kernel"], task=task)
    weights[f"{task}/kernel"] = head_kernel
    weights[f"{task}/bias"] = w[f"{task}/bias"]
    cut = Plan(plan.method, (task,), chain, tuple(layers),
               (Head(task, head.units, head.activation, 0),),
               meta={"cut_from": plan.method, "task": task})
    check_weights(cut, weights, where=f"sub-network of task '{task}'")
    return Network(cut, weights)


def _reorder_inputs(plan: Plan, l: int, index: int | None, new_order: list[int],
                    kernel: np.ndarray, task: str | None = None) -> np.ndarray:
    """Rows of a kernel of layer `l` (group `index`, or the head of `task` when l is past the
    hidden layers) moved from the inputs it reads to all of `new_order` (the needed groups)."""
    below = plan.layers[l - 1]
    if task is None:
        read = plan.readable(l, plan.layers[l][index])
        conv = plan.chain.hidden[l].kind == "conv"
    else:
        read = plan.head_inputs(task)
        conv = False
    fan_in = plan.chain.layers[l].fan_in if not conv else 1
    where = {g: k for k, g in enumerate(new_order)}
    return _moved_rows(kernel, [below[i].width for i in read],
                       [below[i].width for i in new_order], [where[i] for i in read],
                       fan_in, conv)
