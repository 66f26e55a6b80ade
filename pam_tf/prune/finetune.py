"""Training and scoring of a plan-built multitask model on the joint loss, reproducibly.

The joint loss is the sum of the task losses (one ``task.keras_loss()`` per output, weight 1):
every group feeds only the heads of its owners, so its gradients come only from the tasks that
own it (method.md §7). Batches follow a fixed order derived from a seed (no Keras shuffling), so
a pruning run that is interrupted and resumed trains on exactly the same batches as an
uninterrupted one.

Data are ``(x, ys)``: images ``(N, H, W, C)`` float32 and a dict task name → labels (binary
``(N, k)`` float32 0/1, multiclass ``(N,)`` int).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from pam_tf.build import build_model, get_weights, output_dict
from pam_tf.compat import keras, tf
from pam_tf.distribute import active_strategy, split_batch
from pam_tf.plan import Plan
from pam_tf.tasks import Task

__all__ = ["Data", "select_tasks", "check_data", "batch_indices", "finetune", "evaluate",
           "joint_loss", "steps_for_epochs", "distilled_targets", "learning_rate",
           "train_model"]

Data = tuple[np.ndarray, Mapping[str, np.ndarray]]

# build_model's default name joins tasks with '+', which TF refuses as a name scope inside
# fit/predict's tf.function; models built here for training get a plain name instead.
MODEL_NAME = "prune_model"


def select_tasks(plan: Plan, tasks: Sequence[Task]) -> tuple[Task, ...]:
    """The Task objects of the plan's tasks, in plan order (extra tasks are ignored)."""
    by_name = {t.name: t for t in tasks}
    missing = [t for t in plan.tasks if t not in by_name]
    if missing:
        raise ValueError(f"no Task given for plan task(s) {missing}; tasks given: "
                         f"{sorted(by_name)}")
    return tuple(by_name[t] for t in plan.tasks)


def check_data(data: Data, tasks: Sequence[Task], what: str) -> tuple[np.ndarray, dict]:
    """Validate ``(x, ys)`` for `tasks`; return x as float32 and labels in each task's form."""
    try:
        x, ys = data
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected a pair (x, ys) with ys a dict task -> labels") \
            from None
    x = np.asarray(x, dtype=np.float32)
    out = {}
    for t in tasks:
        if t.name not in ys:
            raise ValueError(f"{what}: no labels for task '{t.name}' (have {sorted(ys)})")
        y = t.check_labels(ys[t.name])
        if len(y) != len(x):
            raise ValueError(f"{what}: {len(y)} labels for task '{t.name}', {len(x)} images")
        out[t.name] = y
    if len(x) == 0:
        raise ValueError(f"{what}: no samples")
    return x, out


def batch_indices(n: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """``steps`` mini-batches of sample indices, (steps, batch_size): consecutive seeded
    permutations of range(n) cut into full batches (an epoch's remainder starts the next)."""
    batch_size = min(int(batch_size), n)
    rng = np.random.default_rng(seed)
    need = steps * batch_size
    parts, have = [], 0
    while have < need:
        parts.append(rng.permutation(n))
        have += n
    flat = np.concatenate(parts)[:need] if parts else np.zeros(0, np.int64)
    return flat.reshape(steps, batch_size)


def steps_for_epochs(epochs: float, n: int, batch_size: int) -> int:
    """Number of mini-batches in `epochs` passes over n samples."""
    return int(math.ceil(epochs * n / min(batch_size, n)))


class Batches(keras.utils.Sequence):
    """Feeds model.fit exactly the precomputed batches, in order (used by the tfmot stage)."""

    def __init__(self, x: np.ndarray, ys: dict, idx: np.ndarray, single: bool):
        super().__init__()
        self.x, self.ys, self.idx, self.single = x, ys, idx, single

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i):
        b = self.idx[i]
        ys = {k: v[b] for k, v in self.ys.items()}
        return self.x[b], (next(iter(ys.values())) if self.single else ys)


# Below this many steps eager execution beats tracing a tf.function (tiny test models); the
# choice depends only on the arguments, so reruns stay bit-identical.
EAGER_STEPS = 30


def joint_loss(model, tasks: Sequence[Task], soft: bool = False, per_sample: bool = False):
    """A function (outputs, ys) → Σ_t loss_t, for custom training loops on `model`; with
    `soft`, multiclass targets are probability vectors (see :func:`distilled_targets`); with
    `per_sample`, one summed loss per sample instead of the batch mean (a strategy's replicas
    average over the global batch themselves)."""
    kw = {"reduction": "none"} if per_sample else {}
    losses = {t.name: (keras.losses.CategoricalCrossentropy(name=f"{t.name}_loss", **kw)
                       if soft and t.kind != "binary" else t.keras_loss(**kw)) for t in tasks}
    names = [n.split("/")[0] for n in model.output_names]

    def fn(outputs, ys):
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        return tf.add_n([losses[n](ys[n], o) for n, o in zip(names, outputs)])
    return fn


def distilled_targets(tasks: Sequence[Task], ys: Mapping[str, np.ndarray],
                      teacher: Mapping[str, np.ndarray], weight: float) -> dict[str, np.ndarray]:
    """Training targets (1 − weight)·labels + weight·teacher outputs, per task (multiclass labels
    one-hot): the cross-entropy to them is the label loss plus `weight` times the
    cross-entropy to the teacher (the unpruned single-task net), i.e. distillation."""
    out = {}
    for t in tasks:
        y = np.asarray(ys[t.name])
        p = np.asarray(teacher[t.name], np.float32)
        if p.shape != (len(y), t.n_outputs):
            raise ValueError(f"teacher outputs of task '{t.name}': expected shape "
                             f"{(len(y), t.n_outputs)}, got {p.shape}")
        hard = y.astype(np.float32) if t.kind == "binary" else \
            np.eye(t.n_outputs, dtype=np.float32)[y]
        out[t.name] = ((1.0 - weight) * hard + weight * p).astype(np.float32)
    return out


#: Where a cosine-decayed fine-tune ends, as a fraction of its starting learning rate.
COSINE_FLOOR = 0.05


def learning_rate(lr: float, steps: int, decay: str = "none"):
    """Adam's learning rate for a fine-tune of `steps` mini-batches: `lr` constant ("none"), or
    a cosine from `lr` to COSINE_FLOOR·lr ("cosine"). The pruning loop judges the budget right
    after each fine-tune; a constant rate leaves the weights wherever the last noisy updates
    put them, so a step's accuracy moves by a few tenths of a point either way and a net near its
    budget is stopped by that noise, not by what it lost. A decayed rate settles them first."""
    if decay == "none":
        return lr
    if decay == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(int(steps), 1),
                                                      alpha=COSINE_FLOOR)
    raise ValueError(f"lr_decay must be 'none' or 'cosine', got {decay!r}")


def finetune(plan: Plan, weights: dict[str, np.ndarray], tasks: Sequence[Task], data: Data, *,
             steps: int, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
             teacher: Mapping[str, np.ndarray] | None = None, distill: float = 0.0,
             lr_decay: str = "none",
             strategy: "tf.distribute.Strategy | None" = None) -> dict[str, np.ndarray]:
    """Train all weights of the plan's model for `steps` mini-batches on the joint loss (Adam).

    A fresh Adam each call: pruning changes the parameter shapes anyway, and it keeps a resumed
    run identical to an uninterrupted one (no optimizer state to checkpoint). A plain
    GradientTape loop (not ``fit``) so the batch order is exactly :func:`batch_indices`' and no
    input pipeline is involved. With `teacher` (per task, outputs of the unpruned single-task
    net on `data`) and `distill` > 0 the targets are :func:`distilled_targets`. With `lr_decay`
    "cosine" the rate falls from `lr` to 5 % of it over the `steps` (:func:`learning_rate`).
    Returns new weights; ``steps == 0`` returns `weights` unchanged. Under a tf.distribute
    `strategy` (default: :func:`pam_tf.distribute.active_strategy`, None outside one) the same
    batches are split over its replicas (:func:`_finetune_replicated`).
    """
    if steps <= 0:
        return dict(weights)
    tasks = select_tasks(plan, tasks)
    x, ys = check_data(data, tasks, "training data")
    soft = bool(distill) and teacher is not None
    if soft:
        ys = distilled_targets(tasks, ys, teacher, float(distill))
    strategy = active_strategy() if strategy is None else strategy
    if strategy is not None:
        return _finetune_replicated(strategy, plan, weights, tasks, (x, ys), soft, steps=steps,
                                    batch_size=batch_size, lr=lr, lr_decay=lr_decay, seed=seed)
    model = build_model(plan, weights, name=MODEL_NAME)
    train_model(model, tasks, (x, ys), soft=soft, steps=steps, batch_size=batch_size,
                lr=learning_rate(lr, steps, lr_decay), seed=seed)
    return get_weights(model, plan)


def train_model(model, tasks: Sequence[Task], data: Data, *, soft: bool, steps: int,
                batch_size: int, lr, seed: int) -> None:
    """Train a built multitask `model` in place for `steps` of :func:`batch_indices`' seeded
    mini-batches on the joint loss with a fresh Adam (`lr`: a rate or a Keras schedule). The
    one-device loop of every plan kind: chains (:func:`finetune`) and graphs
    (:func:`pam_tf.graph.train.graph_finetune`) differ only in how they build and read back."""
    x, ys = data
    variables = model.trainable_variables
    opt = keras.optimizers.Adam(learning_rate=lr)
    opt.build(variables)
    loss_fn = joint_loss(model, tasks, soft)

    def train_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(model(xb, training=True), yb)
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    if steps > EAGER_STEPS:
        train_step = tf.function(train_step)
    for b in batch_indices(len(x), batch_size, steps, seed):
        train_step(tf.constant(x[b]), {k: tf.constant(v[b]) for k, v in ys.items()})


def _finetune_replicated(strategy, plan: Plan, weights: dict[str, np.ndarray],
                         tasks: Sequence[Task], data: Data, soft: bool, *, steps: int,
                         batch_size: int, lr: float, lr_decay: str, seed: int
                         ) -> dict[str, np.ndarray]:
    """:func:`finetune` under a tf.distribute strategy: model and Adam built in its scope; each
    of the same global mini-batches split over the replicas (:func:`split_batch`); each
    replica's summed per-sample loss divided by the global batch size, and the replicas'
    gradients summed by the optimizer, so a step is the one-device step up to float rounding."""
    x, ys = data
    with strategy.scope():
        model = build_model(plan, weights, name=MODEL_NAME)
        variables = model.trainable_variables
        opt = keras.optimizers.Adam(learning_rate=learning_rate(lr, steps, lr_decay))
        opt.build(variables)
    loss_fn = joint_loss(model, tasks, soft, per_sample=True)
    indices = batch_indices(len(x), batch_size, steps, seed)
    global_batch = indices.shape[1]

    def replica_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = tf.nn.compute_average_loss(loss_fn(model(xb, training=True), yb),
                                              global_batch_size=global_batch)
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))

    @tf.function
    def train_step(xb, yb):
        strategy.run(replica_step, args=(xb, yb))

    for b in indices:
        train_step(*split_batch(strategy, (x[b], {k: v[b] for k, v in ys.items()})))
    return get_weights(model, plan)


def predict(plan: Plan, weights: dict[str, np.ndarray], x: np.ndarray,
            batch_size: int = 512) -> dict[str, np.ndarray]:
    """Head outputs of every task of the plan, keyed by task name."""
    model = build_model(plan, weights, name=MODEL_NAME)
    x = np.asarray(x, np.float32)
    parts = [output_dict(model, model(x[i:i + batch_size], training=False))
             for i in range(0, len(x), batch_size)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def evaluate(plan: Plan, weights: dict[str, np.ndarray], tasks: Sequence[Task], data: Data,
             batch_size: int = 512) -> dict[str, float]:
    """Per-task accuracy (``task.accuracy``: mean per-label for binary, argmax for multiclass)."""
    tasks = select_tasks(plan, tasks)
    x, ys = check_data(data, tasks, "validation data")
    out = predict(plan, weights, x, batch_size)
    return {t.name: t.accuracy(ys[t.name], out[t.name]) for t in tasks}
