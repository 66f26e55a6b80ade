"""Structured pruning that really removes neurons, for any plan-built model (method.md §7).

    from pam_tf.prune import prune
    result = prune(plan, weights, tasks, (x_train, y_train), (x_val, y_val),
                   criterion="taylor", reference_accuracy={"a": 0.975, "b": 0.984},
                   budget_points=1.0, checkpoint_dir="runs/prune_a")
    result.plan, result.weights      # narrower plan and its weights; build.build_model(...)

- :mod:`.importance`: Taylor, VIB and magnitude criteria behind one interface;
- :mod:`.surgery`: remove neurons from plan and weights (narrower groups, readers' rows);
- :mod:`.finetune`: joint-loss fine-tuning and per-task evaluation, seeded batch order;
- :mod:`.loop`: the schedule/budget/target loop with checkpoints and resume;
- :mod:`.unstructured`: optional tfmot magnitude sparsity on the narrowed model.
"""
from pam_tf.prune.finetune import evaluate, finetune
from pam_tf.prune.gates import MaskGate, VIBGate
from pam_tf.prune.importance import (Importance, ImportanceContext, MagnitudeImportance,
                                     TaylorImportance, VIBImportance, make_importance)
from pam_tf.prune.loop import REASONS, PruneResult, default_schedule, neuron_flops, prune
from pam_tf.prune.surgery import remove_neurons, round_keep
from pam_tf.prune.unstructured import sparsify, zero_fraction

__all__ = ["prune", "PruneResult", "REASONS", "default_schedule", "remove_neurons", "round_keep",
           "Importance", "ImportanceContext", "TaylorImportance", "VIBImportance",
           "MagnitudeImportance", "make_importance", "neuron_flops", "finetune", "evaluate",
           "MaskGate", "VIBGate", "sparsify", "zero_fraction"]
