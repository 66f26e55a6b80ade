"""Where training runs: a ``tf.distribute`` strategy for fine-tuning and single-task training.

``--distribute`` (:class:`pam_tf.config.DistributeConfig`) picks it:

- ``default``: no strategy object at all; every training loop runs exactly the code it ran before
  strategies existed, so default results stay byte-identical.
- ``mirrored``: ``tf.distribute.MirroredStrategy`` over every local GPU (over every logical CPU
  device when there is no GPU, which is how the tests run it on two logical CPUs).
- ``multi_worker``: ``tf.distribute.MultiWorkerMirroredStrategy``, which reads the cluster from
  ``TF_CONFIG``; like TensorFlow requires, the command-line tools create it at start-up, before
  anything else touches TensorFlow.

What must not change meaning under a strategy: the mini-batch is the *global* batch
(``--batch_size``, the same seeded indices), cut into one slice per replica; each replica's loss
is summed over its samples and divided by the global batch size (``tf.nn.compute_average_loss``),
and the optimizer sums the replicas' gradients, so a step's update is the one-device update up
to float rounding. Importance scores, budgets and accuracies are computed outside the strategy,
on one device, by the very same code as before.

    with training_strategy("mirrored"):
        weights = finetune(plan, weights, tasks, data, steps=100)   # runs on every replica
"""
from __future__ import annotations

import contextlib
import json
import os
from typing import Iterator

import numpy as np

from pam_tf.compat import tf
from pam_tf.config import DistributeConfig, setting_choices

STRATEGIES: tuple[str, ...] = setting_choices(DistributeConfig, "distribute")

_made: dict[str, tf.distribute.Strategy] = {}
_active: list[str] = ["default"]


def check_tf_config() -> dict | None:
    """``TF_CONFIG`` parsed, or None when unset; ValueError saying what is wrong with it."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        conf = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"--distribute=multi_worker: TF_CONFIG is not valid JSON ({e})") from None
    if not isinstance(conf, dict) or "cluster" not in conf or "task" not in conf:
        raise ValueError("--distribute=multi_worker: TF_CONFIG must hold 'cluster' and 'task', "
                         'e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                         '"task": {"type": "worker", "index": 0}}')
    return conf


def worker_path(path: str, name: str) -> str:
    """Where this process writes its output (a run folder or a model file): `path`, except under
    ``multi_worker`` for every task but the chief (the ``chief`` task, else worker 0). Every
    worker runs the whole job in step (the collective ops need them all) and computes the same
    numbers; the others write beside `path`, to ``<path>.<type><index>`` (before a file's
    suffix), instead of over the chief's files."""
    conf = check_tf_config() if name == "multi_worker" else None
    if not conf:
        return path
    task = conf["task"]
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    if kind == "chief" or (kind == "worker" and index == 0 and "chief" not in conf["cluster"]):
        return path
    root, ext = os.path.splitext(path.rstrip(os.sep))
    return f"{root}.{kind}{index}{ext}"


def make_strategy(name: str) -> tf.distribute.Strategy | None:
    """The strategy called `name` (made once per process and kept), None for ``default``."""
    if name not in STRATEGIES:
        raise ValueError(f"--distribute={name!r} is not one of {', '.join(STRATEGIES)}")
    if name == "default":
        return None
    if name not in _made:
        if name == "mirrored":
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
            _made[name] = tf.distribute.MirroredStrategy(devices=devices)
        else:
            check_tf_config()
            _made[name] = tf.distribute.MultiWorkerMirroredStrategy()
    return _made[name]


@contextlib.contextmanager
def training_strategy(name: str) -> Iterator[tf.distribute.Strategy | None]:
    """Make `name` the strategy of every training loop run inside the block (see
    :func:`active_strategy`); the pipeline wraps a whole run in it."""
    strategy = make_strategy(name)
    _active.append(name)
    try:
        yield strategy
    finally:
        _active.pop()


def active_strategy() -> tf.distribute.Strategy | None:
    """The strategy training runs under now: None (the default) outside :func:`training_strategy`."""
    return make_strategy(_active[-1])


def split_batch(strategy: tf.distribute.Strategy, batch):
    """One global mini-batch (a nest of arrays) as per-replica slices, in replica order, so the
    replicas together see exactly the samples the default strategy sees."""
    n = strategy.num_replicas_in_sync

    def slice_for(ctx):
        return tf.nest.map_structure(
            lambda a: tf.constant(np.array_split(a, n)[ctx.replica_id_in_sync_group]), batch)
    return strategy.experimental_distribute_values_from_function(slice_for)
