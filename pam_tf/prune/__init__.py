"""Structured pruning that really removes neurons, for any plan-built model (method.md §7).

    from pam_tf.config import PruneSettings
    from pam_tf.prune import prune
    result = prune(plan, weights, tasks, (x_train, y_train), (x_val, y_val),
                   PruneSettings(criterion="taylor", budget=1.0),
                   reference_accuracy={"a": 0.975, "b": 0.984}, checkpoint_dir="runs/prune_a")
    result.plan, result.weights      # narrower plan and its weights; build.build_model(...)

- :mod:`.importance`: Taylor, VIB and magnitude criteria behind one interface;
- :mod:`.surgery`: remove neurons from plan and weights (narrower groups, readers' rows);
- :mod:`.finetune`: joint-loss fine-tuning and per-task evaluation, seeded batch order;
- :mod:`.loop`: the driver: step 0, the budget and the FLOPs target, the final stage;
- :mod:`.schedule`: which step prunes how many neurons (the tfmot schedule);
- :mod:`.selection`: which neurons go (ranking, FLOPs-aware cost, keep masks, look-ahead);
- :mod:`.backtrack`: the smaller retry of a step that left the budget;
- :mod:`.state`: typed attempts, the run's state, checkpoints and resume;
- :mod:`.unstructured`: optional tfmot magnitude sparsity on the narrowed model.
"""
from pam_tf.prune.finetune import evaluate, finetune
from pam_tf.prune.gates import MaskGate, VIBGate
from pam_tf.prune.importance import (Importance, ImportanceContext, MagnitudeImportance,
                                     TaylorImportance, VIBImportance, make_importance)
from pam_tf.prune.loop import REASONS, PruneResult, choose_removal, default_schedule, prune
from pam_tf.prune.selection import neuron_flops
from pam_tf.prune.state import Attempt
from pam_tf.prune.surgery import remove_neurons, round_keep
from pam_tf.prune.unstructured import sparsify, zero_fraction

__all__ = ["prune", "PruneResult", "Attempt", "REASONS", "default_schedule", "choose_removal",
           "remove_neurons", "round_keep",
           "Importance", "ImportanceContext", "TaylorImportance", "VIBImportance",
           "MagnitudeImportance", "make_importance", "neuron_flops", "finetune", "evaluate",
           "MaskGate", "VIBGate", "sparsify", "zero_fraction"]
