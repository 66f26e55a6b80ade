"""Neuron importance criteria: one interface, three pruners of method.md §7.

An :class:`Importance` is called with an :class:`ImportanceContext` (plan, weights, tasks, training
data, seed) and returns, per hidden group layer name (``<layer>__<owners>``, as build names it),
one score per neuron; higher = more important. Heads are never scored (they are never pruned).
The loop ranks these scores globally or per layer; criteria only have to be comparable within
the ranking the caller chooses.

- :class:`TaylorImportance` (Molchanov et al., CVPR 2019): a gate g = 1 after every hidden neuron;
  the first-order Taylor estimate of the loss change when neuron i is removed is |g_i·∂L/∂g_i|,
  computed per mini-batch and averaged over a few batches. L is the joint loss (sum of task
  losses), so a group's neurons are ranked by the tasks that own them.
- :class:`VIBImportance` (Dai et al., ICML 2018): a learned Gaussian gate per neuron trained on the
  joint loss + kl_weight · Σ log(1 + μ²/σ²); importance = −log α, log α = log σ² − log μ².
  **The network's weights are frozen while the gates train**: the gates then measure how much
  noise each neuron of *this* network tolerates, the exported model needs no folding of μ into
  the weights (folding through a max-pool is exact only for μ ≥ 0), and fine-tuning stays the one
  place weights change, as for the other criteria. The paper's own keep rule (keep iff
  log α < threshold, paper 0.01) is available as :meth:`VIBImportance.keep_masks`; the pruning
  loop uses the scores for ranking so that every criterion prunes under the same schedule and
  accuracy budget (a fair comparison, method.md §7).
- :class:`MagnitudeImportance`: L1 norm of a neuron's incoming weights divided by their number
  (the group's fan-in), so that layers with large fan-in are not ranked unimportant merely for
  having many small weights. No data, no gradients.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from pam_tf.build import build_model, group_layer_name
from pam_tf.compat import keras, tf
from pam_tf.plan import Plan
from pam_tf.prune.finetune import batch_indices, check_data, joint_loss, select_tasks
from pam_tf.prune.gates import MaskGate, VIBGate
from pam_tf.tasks import Task

__all__ = ["ImportanceContext", "Importance", "TaylorImportance", "VIBImportance",
           "MagnitudeImportance", "make_importance", "group_layer_names"]


@dataclass
class ImportanceContext:
    """What a criterion may look at: the current plan and weights, the tasks and training data.

    ``seed`` fixes the mini-batches (and VIB noise), so scores are reproducible.
    """

    plan: Plan
    weights: Mapping[str, np.ndarray]
    tasks: Sequence[Task]
    x: np.ndarray
    ys: Mapping[str, np.ndarray]
    seed: int = 0
    extra: dict = field(default_factory=dict)


def group_layer_names(plan: Plan) -> list[str]:
    """Names of every hidden group layer, layer by layer in canonical group order."""
    return [group_layer_name(layer, g) for layer, groups in zip(plan.chain.hidden, plan.layers)
            for g in groups]


class Importance(abc.ABC):
    """Scores every hidden neuron of a plan-built model; higher = more important."""

    name: str = "importance"

    @abc.abstractmethod
    def __call__(self, ctx: ImportanceContext) -> dict[str, np.ndarray]:
        """Scores per hidden group layer name, one float per neuron."""

    def config(self) -> dict:
        """Settings that change the scores (part of a checkpoint's fingerprint)."""
        return {"name": self.name}

    def to_positive(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The same ranking as non-negative numbers (FLOPs-aware ranking divides by cost)."""
        return {k: np.maximum(v, 0.0) for k, v in scores.items()}


def _gated_model(plan: Plan, weights, make_gate):
    gates: dict[str, object] = {}

    def hook(name: str, width: int):
        gates[name] = make_gate(name, width)
        return gates[name]
    model = build_model(plan, dict(weights), group_hook=hook, name="prune_gated")
    return model, gates


class TaylorImportance(Importance):
    """|g·∂L/∂g| at g = 1, averaged over `n_batches` mini-batches of the training data."""

    name = "taylor"

    def __init__(self, n_batches: int = 8, batch_size: int = 64):
        self.n_batches = int(n_batches)
        self.batch_size = int(batch_size)

    def config(self) -> dict:
        return {"name": self.name, "n_batches": self.n_batches, "batch_size": self.batch_size}

    def __call__(self, ctx: ImportanceContext) -> dict[str, np.ndarray]:
        tasks = select_tasks(ctx.plan, ctx.tasks)
        x, ys = check_data((ctx.x, ctx.ys), tasks, "importance data")
        model, gates = _gated_model(
            ctx.plan, ctx.weights, lambda n, w: MaskGate(w, name=f"{n}__gate"))
        names = list(gates)
        variables = [gates[n].gate for n in names]
        loss_fn = joint_loss(model, tasks)

        def grads(xb, yb):  # eager: a few batches do not repay tracing a tf.function
            with tf.GradientTape() as tape:
                tape.watch(variables)
                loss = loss_fn(model(xb, training=False), yb)
            g = tape.gradient(loss, variables)
            return [tf.abs(v * gi) for v, gi in zip(variables, g)]

        total = [np.zeros(v.shape, np.float64) for v in variables]
        idx = batch_indices(len(x), self.batch_size, self.n_batches, ctx.seed)
        for b in idx:
            for acc, gv in zip(total, grads(tf.constant(x[b]),
                                            {k: tf.constant(v[b]) for k, v in ys.items()})):
                acc += gv.numpy()
        return {n: acc / len(idx) for n, acc in zip(names, total)}


class VIBImportance(Importance):
    """−log α of a learned Gaussian gate per neuron (weights frozen; see module docstring).

    Gates start at μ = 1, log σ² = `log_sigma2_init` (nearly noiseless, so the network starts
    unchanged) and train for `steps` mini-batches with Adam(`lr`) on
    joint loss + `kl_weight` · Σ_neurons log(1 + μ²/σ²). The KL is summed over neurons (as in the
    paper) so `kl_weight` is the price of one neuron's information in units of the joint loss.
    """

    name = "vib"

    def __init__(self, steps: int = 200, batch_size: int = 64, lr: float = 0.02,
                 kl_weight: float = 1e-3, log_sigma2_init: float = -6.0,
                 log_alpha_threshold: float = 0.01):
        self.steps = int(steps)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.kl_weight = float(kl_weight)
        self.log_sigma2_init = float(log_sigma2_init)
        self.log_alpha_threshold = float(log_alpha_threshold)
        self.last_log_alpha: dict[str, np.ndarray] = {}

    def config(self) -> dict:
        return {"name": self.name, "steps": self.steps, "batch_size": self.batch_size,
                "lr": self.lr, "kl_weight": self.kl_weight,
                "log_sigma2_init": self.log_sigma2_init}

    def __call__(self, ctx: ImportanceContext) -> dict[str, np.ndarray]:
        tasks = select_tasks(ctx.plan, ctx.tasks)
        x, ys = check_data((ctx.x, ctx.ys), tasks, "importance data")
        counter = iter(range(1 << 30))
        model, gates = _gated_model(
            ctx.plan, ctx.weights,
            lambda n, w: VIBGate(w, log_sigma2_init=self.log_sigma2_init,
                                 seed=ctx.seed * 1009 + next(counter), name=f"{n}__vib"))
        for layer in model.layers:
            if not isinstance(layer, VIBGate):
                layer.trainable = False
        gate_layers = list(gates.values())
        variables = [v for g in gate_layers for v in (g.mu, g.log_sigma2)]
        opt = keras.optimizers.Adam(learning_rate=self.lr)
        loss_fn = joint_loss(model, tasks)
        kl_weight = tf.constant(self.kl_weight, tf.float32)

        @tf.function
        def train_step(xb, yb):
            with tf.GradientTape() as tape:
                loss = loss_fn(model(xb, training=True), yb)
                loss += kl_weight * tf.add_n([g.kl() for g in gate_layers])
            opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss

        for b in batch_indices(len(x), self.batch_size, self.steps, ctx.seed):
            train_step(tf.constant(x[b]), {k: tf.constant(v[b]) for k, v in ys.items()})
        self.last_log_alpha = {n: g.log_alpha() for n, g in gates.items()}
        return {n: -la for n, la in self.last_log_alpha.items()}

    def keep_masks(self, threshold: float | None = None) -> dict[str, np.ndarray]:
        """The paper's rule on the last scoring: keep a neuron iff log α < threshold."""
        t = self.log_alpha_threshold if threshold is None else float(threshold)
        return {n: la < t for n, la in self.last_log_alpha.items()}

    def to_positive(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """1/α = μ²/σ² (the gate's signal-to-noise ratio): same order as −log α, never < 0."""
        return {k: np.exp(np.clip(v, -50.0, 50.0)) for k, v in scores.items()}


class MagnitudeImportance(Importance):
    """Mean absolute incoming weight of each neuron: L1(kernel column) / number of its inputs."""

    name = "magnitude"

    def __call__(self, ctx: ImportanceContext) -> dict[str, np.ndarray]:
        out = {}
        for name in group_layer_names(ctx.plan):
            k = np.asarray(ctx.weights[f"{name}/kernel"], np.float64)
            cols = k.reshape(-1, k.shape[-1])
            out[name] = np.abs(cols).sum(axis=0) / cols.shape[0]
        return out


_CRITERIA = {"taylor": TaylorImportance, "vib": VIBImportance, "magnitude": MagnitudeImportance}


def make_importance(name: str, **kwargs) -> Importance:
    """A criterion by name ('taylor', 'vib', 'magnitude'), keyword arguments to its constructor."""
    try:
        cls = _CRITERIA[name.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown pruning criterion {name!r}; choose one of "
                         f"{', '.join(_CRITERIA)}") from None
    return cls(**kwargs)
