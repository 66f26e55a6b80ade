"""Optional second stage: tfmot's unstructured magnitude pruning on the already narrowed model.

Zeros inside dense tensors do not lower FLOPs in the paper's convention (nor on most hardware),
but they compress the model file and can be exploited by sparse kernels. Only hidden group
layers are wrapped (heads are never pruned, as in the structured stage). After training with the
pruning wrappers the model is stripped (``strip_pruning``) and the weights are read back by
layer name into the plan's flat dict, so the caller rebuilds a plain model from plan + weights
(stack.md: the stripped model's ``layer.output`` tensors point into the old graph, so no
sub-models are cut from it).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from pam_tf.build import build_model, get_weights
from pam_tf.compat import keras
from pam_tf.plan import Plan
from pam_tf.prune.finetune import Data, Batches, batch_indices, check_data, select_tasks
from pam_tf.prune.importance import group_layer_names
from pam_tf.tasks import Task

__all__ = ["sparsify", "zero_fraction"]


def sparsify(plan: Plan, weights: dict[str, np.ndarray], tasks: Sequence[Task], data: Data, *,
             sparsity: float, steps: int = 100, batch_size: int = 64, lr: float = 1e-3,
             seed: int = 0) -> dict[str, np.ndarray]:
    """Zero `sparsity` of every hidden group kernel by magnitude, training `steps` batches on
    the joint loss while the masks settle (tfmot ConstantSparsity, mask updated every step)."""
    import tensorflow_model_optimization as tfmot

    if not 0.0 < sparsity < 1.0:
        raise ValueError(f"unstructured sparsity must be in (0, 1), got {sparsity}")
    tasks = select_tasks(plan, tasks)
    x, ys = check_data(data, tasks, "training data")
    base = build_model(plan, weights, name="prune_sparsify")
    targets = set(group_layer_names(plan))
    schedule = tfmot.sparsity.keras.ConstantSparsity(sparsity, begin_step=0, frequency=1)

    def wrap(layer):
        if layer.name in targets:
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    # clone_function gets the original layer objects: wrapping (or returning) them keeps the
    # trained weights, which is tfmot's documented way to prune selected layers.
    model = keras.models.clone_model(base, clone_function=wrap)
    single = len(tasks) == 1
    loss = tasks[0].keras_loss() if single else {t.name: t.keras_loss() for t in tasks}
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss=loss)
    idx = batch_indices(len(x), batch_size, max(int(steps), 1), seed)
    model.fit(Batches(x, ys, idx, single), epochs=1, shuffle=False, verbose=0,
              callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(model)
    return get_weights(stripped, plan)


def zero_fraction(plan: Plan, weights: dict[str, np.ndarray]) -> float:
    """Fraction of exactly-zero entries over all hidden group kernels."""
    ks = [np.asarray(weights[f"{n}/kernel"]) for n in group_layer_names(plan)]
    return float(sum(int((k == 0).sum()) for k in ks) / sum(k.size for k in ks))
