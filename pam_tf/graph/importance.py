"""First-order Taylor importance of coupled channels (``--criterion=taylor`` on graph networks).

The chain loop scores a neuron by |g·∂L/∂g| at a gate g = 1 on its output
(:class:`pam_tf.prune.importance.TaylorImportance`). A graph plan's channel lives in several
nodes at once (the producers of a coupling class, the depthwise filters that follow it), so
there is no single output to gate. Instead each node's share is taken from its own parameters:
a node's pre-activation output channel z is linear and homogeneous in that channel's
parameters θ (kernel column and bias; BN is folded in), so by Euler's theorem Σ θ·∂L/∂θ over
them equals z·∂L/∂z, the gate term of a gate on z (after a ReLU, a·∂L/∂a of the activation a
is the same number: the two differ only where z < 0, where both are 0). A class channel's score is the sum over its
nodes of the absolute gate terms, averaged over mini-batches like the chain's (the coupled
"group Taylor" importance of Torch-Pruning, Molchanov et al. 2019, in the chain's units).

Written by hand: no Keras 2 library scores coupled channel groups.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from pam_tf.compat import tf
from pam_tf.graph.build import build_graph_model
from pam_tf.graph.plan import GraphPlan
from pam_tf.graph.surgery import full_class_keep
from pam_tf.prune.finetune import Data, batch_indices, check_data, joint_loss, select_tasks
from pam_tf.tasks import Task

__all__ = ["coupled_taylor", "channel_gate_terms"]

_SCORED = ("conv", "dense", "depthwise")


def channel_gate_terms(kind: str, kernel: np.ndarray, bias: np.ndarray, d_kernel: np.ndarray,
                       d_bias: np.ndarray) -> np.ndarray:
    """Σ θ·∂L/∂θ per output channel of one node: its gate term (see the module docstring)."""
    prod = np.asarray(kernel) * np.asarray(d_kernel)
    per = prod.sum(axis=(0, 1, 3)) if kind == "depthwise" else \
        prod.reshape(-1, prod.shape[-1]).sum(axis=0)
    return per + np.asarray(bias) * np.asarray(d_bias)


def coupled_taylor(plan: GraphPlan, weights: Mapping[str, np.ndarray], tasks: Sequence[Task],
                   data: Data, *, n_batches: int = 8, batch_size: int = 64, seed: int = 0
                   ) -> dict[str, np.ndarray]:
    """Per class group ('<class>__<owners>'), each channel's coupled Taylor score on the joint
    loss of the plan's tasks, from `n_batches` seeded mini-batches of `data`."""
    tasks = select_tasks(plan, tasks)
    x, ys = check_data(data, tasks, "importance data")
    model = build_graph_model(plan, dict(weights), name="prune_taylor")
    loss_fn = joint_loss(model, tasks)
    layers = {layer.name: layer for layer in model.layers}
    scored = [(node, g, plan.group_name(node, g)) for node in plan.graph.hidden
              if node.kind in _SCORED and node.cls >= 0 for g in plan.classes[node.cls]]
    scored = [(node, g, name) for node, g, name in scored if name in layers]  # unread: absent
    variables = [v for _, _, name in scored for v in layers[name].trainable_weights]
    scores = {name: np.zeros(len(m)) for name, m in full_class_keep(plan).items()}
    idx = batch_indices(len(x), batch_size, n_batches, seed)
    for b in idx:
        with tf.GradientTape() as tape:
            loss = loss_fn(model(tf.constant(x[b]), training=False),
                           {k: tf.constant(v[b]) for k, v in ys.items()})
        grads = dict(zip((id(v) for v in variables), tape.gradient(loss, variables)))
        for node, g, name in scored:
            kernel, bias = layers[name].trainable_weights
            term = channel_gate_terms(node.kind, kernel.numpy(), bias.numpy(),
                                      grads[id(kernel)].numpy(), grads[id(bias)].numpy())
            scores[plan.class_group_name(node.cls, g)] += np.abs(term)
    return {name: s / len(idx) for name, s in scores.items()}
