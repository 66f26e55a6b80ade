"""Fine-tuning and scoring of a graph-plan model on the joint loss (the chain's recipe).

The same joint loss, seeded batch order and fresh Adam per call as
:func:`pam_tf.prune.finetune.finetune`; only the builder differs (graph plans are built by
:func:`pam_tf.graph.build.build_graph_model`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from pam_tf.build import output_dict
from pam_tf.graph.build import build_graph_model, check_graph_weights, weight_shapes
from pam_tf.graph.plan import GraphPlan
from pam_tf.prune.finetune import MODEL_NAME, Data, check_data, select_tasks, train_model
from pam_tf.tasks import Task

__all__ = ["graph_finetune", "graph_evaluate", "graph_predict", "graph_get_weights"]


def graph_get_weights(model, plan: GraphPlan,
                      unread: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Plan weights read back from a full model built by :func:`build_graph_model`.

    A group of a node that no output needs (e.g. one input of an add whose other readers do
    not read that group) is not in the Keras model; its weights come from `unread` unchanged
    (they affect no output, and no combination's cost counts them)."""
    names = {key.rsplit("/", 1)[0] for key in weight_shapes(plan)}
    out: dict[str, np.ndarray] = {}
    for layer in model.layers:
        if layer.name in names:
            k, b = layer.get_weights()
            out[f"{layer.name}/kernel"], out[f"{layer.name}/bias"] = k, b
    for key in weight_shapes(plan):
        if key not in out and unread is not None and key in unread:
            out[key] = np.asarray(unread[key])
    check_graph_weights(plan, out, where=f"model '{model.name}'")
    return out


def graph_finetune(plan: GraphPlan, weights: dict[str, np.ndarray], tasks: Sequence[Task],
                   data: Data, *, steps: int, batch_size: int = 64, lr: float = 1e-3,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Train every weight of the plan's model for `steps` mini-batches on the joint loss."""
    if steps <= 0:
        return dict(weights)
    tasks = select_tasks(plan, tasks)
    x, ys = check_data(data, tasks, "training data")
    model = build_graph_model(plan, weights, name=MODEL_NAME)
    train_model(model, tasks, (x, ys), soft=False, steps=steps, batch_size=batch_size, lr=lr,
                seed=seed)
    return graph_get_weights(model, plan, unread=weights)


def graph_predict(plan: GraphPlan, weights: dict[str, np.ndarray], x: np.ndarray,
                  batch_size: int = 512) -> dict[str, np.ndarray]:
    model = build_graph_model(plan, weights, name=MODEL_NAME)
    x = np.asarray(x, np.float32)
    parts = [output_dict(model, model(x[i:i + batch_size], training=False))
             for i in range(0, len(x), batch_size)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def graph_evaluate(plan: GraphPlan, weights: dict[str, np.ndarray], tasks: Sequence[Task],
                   data: Data) -> dict[str, float]:
    """Per-task accuracy of the plan's model (``task.accuracy``)."""
    tasks = select_tasks(plan, tasks)
    x, ys = check_data(data, tasks, "validation data")
    out = graph_predict(plan, weights, x)
    return {t.name: t.accuracy(ys[t.name], out[t.name]) for t in tasks}
