"""Run by tests/test_distribute.py in its own process: two logical CPU devices must be set up
before TensorFlow initialises its devices, which the test process has long done.

Trains the same things under the default strategy and under MirroredStrategy over the two
logical CPUs and prints, as one JSON line, how far apart the results are: merged-net
fine-tuning (plain and distilled), a short pruning run (its decisions and weights), MTZ's
retraining (through the strategy the pipeline sets), and single-task training (Keras fit).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pam_tf.compat import tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import numpy as np  # noqa: E402

from pam_tf.config import MtzConfig, PruneSettings  # noqa: E402
from pam_tf.data.synthetic import make_synthetic  # noqa: E402
from pam_tf.distribute import make_strategy, training_strategy  # noqa: E402
from pam_tf.prune import TaylorImportance, prune  # noqa: E402
from pam_tf.prune.finetune import evaluate, finetune, predict  # noqa: E402
from tests.test_prune_surgery import inherit_weights, make_plan, tiny_pair  # noqa: E402


def max_diff(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def under_both(fn):
    """fn() under the default strategy, then under 'mirrored' (two logical CPUs)."""
    first = fn()
    with training_strategy("mirrored"):
        return first, fn()


def main() -> None:
    out = {"replicas": make_strategy("mirrored").num_replicas_in_sync}
    ds = make_synthetic(2, n_train=192, n_test=96, size=12, seed=0)
    traced, chain = tiny_pair()
    plan = make_plan("pam", chain)
    start = inherit_weights(plan, traced)
    train, val = (ds.x_train, ds.y_train), (ds.x_test, ds.y_test)

    a, b = under_both(lambda: finetune(plan, start, ds.tasks, train, steps=40, batch_size=32,
                                       lr=3e-3, seed=0))
    out["finetune_weights"] = max_diff(a, b)
    acc_a, acc_b = (evaluate(plan, w, ds.tasks, val) for w in (a, b))
    out["finetune_accuracy"] = max(abs(acc_a[t] - acc_b[t]) for t in acc_a)
    teacher = predict(plan, start, ds.x_train)
    a, b = under_both(lambda: finetune(plan, start, ds.tasks, train, steps=10, batch_size=32,
                                       seed=1, teacher=teacher, distill=0.5))
    out["distill_weights"] = max_diff(a, b)

    settings = PruneSettings(finetune_steps=3, initial_finetune_steps=4, final_finetune_steps=2,
                             batch_size=32, max_prune_steps=2, budget=30.0)
    ref = evaluate(plan, start, ds.tasks, val)
    a, b = under_both(lambda: prune(plan, start, ds.tasks, train, val, settings,
                                    importance=TaylorImportance(n_batches=2, batch_size=32),
                                    reference_accuracy=ref, progress=None))
    out["prune_same_widths"] = a.plan.widths() == b.plan.widths()
    out["prune_widths"] = a.plan.widths()
    out["prune_weights"] = max_diff(a.weights, b.weights)

    from pam_tf.mtz import zip_networks
    a, b = under_both(lambda: zip_networks(traced, ds.tasks, train, MtzConfig(
        mtz_samples=64, mtz_retrain_steps=5, mtz_batch_size=32), progress=lambda _l: None))
    out["mtz_same_widths"] = a.plan.widths() == b.plan.widths()
    out["mtz_weights"] = max_diff(a.weights, b.weights)

    from pam_tf.train import train_single_task
    ds16 = make_synthetic(2, n_train=256, n_test=64, size=16, seed=0)
    models = [train_single_task(ds16, "t0", "lenet5", epochs=1, batch_size=32, seed=0,
                                verbose=0, distribute=name)[0] for name in ("default", "mirrored")]
    out["single_task_weights"] = max(float(np.max(np.abs(x - y))) for x, y in
                                     zip(models[0].get_weights(), models[1].get_weights()))
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
