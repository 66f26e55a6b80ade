"""Pruning graph plans: coupled magnitude or Taylor ranking, coupled removal, fine-tuning, a
budget.

The chain's pruning loop (:mod:`pam_tf.prune.loop`: Taylor/VIB gates, backtracking,
checkpoints) is written against chain plans; graph plans get this smaller loop, kept
deliberately simple:

- **importance** of a class channel: the L1 norm of everything that computes it, summed over
  every node of its class (each Conv2D/Dense producer's kernel column and each depthwise filter)
  — a channel is kept or removed as one unit, so it is scored as one (Torch-Pruning's group
  magnitude); or, with ``criterion="taylor"``, its first-order Taylor score on the joint loss
  (:mod:`pam_tf.graph.importance`, the chain's |g·∂L/∂g| summed over the class's nodes);
  FLOPs aware, divided by what one channel of its group costs across the network;
- **step**: every class gives up `step_fraction` of its prunable channels, its lowest-ranked
  (a group keeps at least one), narrow with :func:`~pam_tf.graph.surgery.remove_class_channels`, fine-tune on the
  joint loss, evaluate;
- **budget**: a step that takes a task more than `budget` points below its reference is
  retried with half the removal (`backtracks` times); when every retry fails, pruning stops
  and returns the last state inside the budget. With `step_recovery` > 0 an attempt outside
  the budget is first fine-tuned again (up to that many rounds) and judged anew, as in the
  chain loop.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from pam_tf.graph.plan import GraphPlan, graph_split_by_task
from pam_tf.graph.surgery import (drop_unread_class_groups, full_class_keep,
                                 remove_class_channels)
from pam_tf.graph.train import graph_evaluate, graph_finetune
from pam_tf.plan import Group, Head, PlanError, canonical_order
from pam_tf.prune.finetune import Data
from pam_tf.prune.state import RECOVERY_SEED_OFFSET, STEP_RECOVERY_SEED_OFFSET
from pam_tf.tasks import Task

__all__ = ["GraphPruneSettings", "GraphPruneResult", "coupled_magnitude", "prune_graph",
           "prune_graph_per_task", "combine_graph_plans"]


CRITERIA = ("magnitude", "taylor")


@dataclass(frozen=True)
class GraphPruneSettings:
    """Settings of :func:`prune_graph` (the chain loop's names where they mean the same)."""

    budget: float = 1.0            # accuracy points below the reference a task may lose
    step_fraction: float = 0.1     # fraction of the prunable channels removed per step
    max_prune_steps: int = 20
    initial_finetune_steps: int = 100  # recovery of a merged start before pruning
    finetune_steps: int = 50
    batch_size: int = 64
    lr: float = 1e-3
    flops_aware: bool = True
    final_finetune_steps: int = 0
    backtracks: int = 2  # retries of a step outside the budget, each removing half as much
    criterion: str = "magnitude"  # or "taylor" (pam_tf.graph.importance.coupled_taylor)
    recovery_rounds: int = 3  # more rounds of the initial fine-tune while outside the budget
    step_recovery: int = 0  # more fine-tunes of an attempt outside the budget before judging it

    @staticmethod
    def from_prune_settings(settings, step_fraction: float = 0.1) -> "GraphPruneSettings":
        """The main job's (resolved) PruneSettings for graph networks; settings this loop
        cannot honour are refused rather than ignored."""
        if settings.criterion not in CRITERIA:
            raise ValueError(f"--criterion={settings.criterion}: graph networks (residual, "
                             "depthwise) are pruned with the coupled magnitude or Taylor "
                             "criterion; pass --criterion=magnitude or --criterion=taylor")
        if settings.target_flops is not None or settings.distill:
            raise ValueError("--target_flops and --distill are not implemented for graph "
                             "networks (budget mode only)")
        if settings.lr_decay != "none":
            raise ValueError(f"--lr_decay={settings.lr_decay} is not implemented for graph "
                             "networks (their fine-tunes run at a constant rate); pass "
                             "--lr_decay=none")
        return GraphPruneSettings(
            budget=settings.budget, step_fraction=step_fraction,
            max_prune_steps=settings.max_prune_steps,
            initial_finetune_steps=int(settings.initial_finetune_steps or 0),
            finetune_steps=settings.finetune_steps, batch_size=settings.batch_size,
            lr=settings.lr, flops_aware=settings.flops_aware,
            final_finetune_steps=int(settings.final_finetune_steps or 0),
            backtracks=int(settings.backtracks), criterion=settings.criterion,
            recovery_rounds=int(settings.recovery_rounds),
            step_recovery=int(settings.step_recovery))

    def __post_init__(self) -> None:
        if not 0.0 < self.step_fraction < 1.0:
            raise ValueError(f"step_fraction must be in (0, 1), got {self.step_fraction}")
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {', '.join(CRITERIA)}, got "
                             f"{self.criterion!r}")
        if self.budget < 0 or self.max_prune_steps < 0:
            raise ValueError("budget and max_prune_steps must be >= 0")


REASONS = {
    "budget": "the next pruning step left the accuracy budget; returned the last state "
              "inside it",
    "unpruned_outside_budget": "even the unpruned network is outside the accuracy budget",
    "max_steps": "max_prune_steps was reached",
    "exhausted": "every group is at one channel; nothing left to prune",
}


@dataclass
class GraphPruneResult:
    """The pruned network, its validation accuracy and why pruning stopped (the fields the
    main job reads from the chain loop's PruneResult)."""

    plan: GraphPlan
    weights: dict[str, np.ndarray]
    accuracy: dict[str, float]
    reason: str
    history: list[dict] = field(default_factory=list)
    criterion: str = "magnitude"

    @property
    def step(self) -> int:
        kept = [h["step"] for h in self.history
                if h.get("flops") == self.plan.cost(self.plan.tasks).flops]
        return kept[-1] if kept else 0

    @property
    def flops_fraction(self) -> float:
        start = self.history[0]["flops"] if self.history else 1
        return self.plan.cost(self.plan.tasks).flops / max(1, start)

    @property
    def message(self) -> str:
        why = ", ".join(REASONS.get(r, r) for r in self.reason.split(","))
        return (f"graph loop (coupled {self.criterion}): {why}; step {self.step}, "
                f"{100 * self.flops_fraction:.1f} % of the starting FLOPs")


def coupled_magnitude(plan: GraphPlan, weights: Mapping[str, np.ndarray]
                      ) -> dict[str, np.ndarray]:
    """Per class group ('<class>__<owners>'), each channel's L1 norm summed over the class."""
    scores = {name: np.zeros(len(m)) for name, m in full_class_keep(plan).items()}
    for node in plan.graph.hidden:
        if node.kind not in ("conv", "dense", "depthwise") or node.cls < 0:
            continue
        for g in plan.classes[node.cls]:
            k = np.abs(np.asarray(weights[f"{plan.group_name(node, g)}/kernel"]))
            per = k.sum(axis=(0, 1, 3)) if node.kind == "depthwise" else \
                k.reshape(-1, k.shape[-1]).sum(axis=0)
            scores[plan.class_group_name(node.cls, g)] += per
    return scores


def _channel_flops(plan: GraphPlan) -> dict[str, float]:
    """FLOPs of all combinations together that one channel of each group costs (>= 1)."""
    combos = plan.combinations()
    base = sum(plan.cost(c).flops for c in combos)
    out = {}
    for c, groups in enumerate(plan.classes):
        for gi, g in enumerate(groups):
            name = plan.class_group_name(c, g)
            if g.width < 2:
                out[name] = float(max(1, base))
                continue
            classes = list(plan.classes)
            classes[c] = groups[:gi] + (Group(g.owners, g.sources[:-1]),) + groups[gi + 1:]
            try:
                smaller = GraphPlan(plan.method, plan.tasks, plan.graph, tuple(classes),
                                    plan.heads)
                out[name] = float(max(1, base - sum(smaller.cost(k).flops for k in combos)))
            except PlanError:
                out[name] = float(max(1, base))
    return out


def _scores(plan: GraphPlan, weights: Mapping[str, np.ndarray], tasks: Sequence[Task],
            train: Data, settings: GraphPruneSettings, seed: int) -> dict[str, np.ndarray]:
    """Per class group, each channel's importance by the settings' criterion."""
    if settings.criterion == "taylor":
        from pam_tf.graph.importance import coupled_taylor

        return coupled_taylor(plan, weights, tasks, train, batch_size=settings.batch_size,
                              seed=seed)
    return coupled_magnitude(plan, weights)


def _removal_keep(plan: GraphPlan, scores: Mapping[str, np.ndarray], fraction: float,
                  flops_aware: bool) -> tuple[dict[str, np.ndarray], int]:
    """Keep masks without the lowest-ranked `fraction` of the prunable channels.

    Each class gives up `fraction` of its own prunable channels (its weakest by coupled
    magnitude; with `flops_aware`, a class's channels are ranked across its groups by
    magnitude per FLOP). Ranking across classes by normalised magnitude per FLOP was tried
    first and is not used: magnitudes of different classes do not compare, so the FLOPs term
    alone decided and the first step removed the expensive full-resolution stem (B1 on
    mobilenetv2_small, composite: 63 % of the FLOPs in one step, accuracy 82 → 12 %)."""
    flops = _channel_flops(plan) if flops_aware else {}
    keep = {name: np.ones(len(s), bool) for name, s in scores.items()}
    removed = 0
    for c, groups in enumerate(plan.classes):
        names = [plan.class_group_name(c, g) for g in groups]
        ranked = sorted((float(scores[n][j]) / (flops[n] if flops_aware else 1.0), n, j)
                        for n in names for j in range(len(scores[n])))
        quota = int(np.ceil(fraction * sum(len(scores[n]) - 1 for n in names)))
        taken = 0
        for _, name, j in ranked:
            if taken >= quota:
                break
            if keep[name].sum() > 1:
                keep[name][j] = False
                taken += 1
        removed += taken
    return keep, removed


def _inside(acc: Mapping[str, float], reference: Mapping[str, float], budget: float) -> bool:
    return all(acc[t] >= reference[t] - budget / 100.0 for t in acc)


def prune_graph(plan: GraphPlan, weights: Mapping[str, np.ndarray], tasks: Sequence[Task],
                train: Data, val: Data, reference: Mapping[str, float],
                settings: GraphPruneSettings = GraphPruneSettings(), *, seed: int = 0,
                progress: Callable[[str], None] = print) -> GraphPruneResult:
    """Prune a graph plan jointly until the accuracy budget (see the module docstring)."""
    plan, weights, dropped = drop_unread_class_groups(plan, weights)
    if dropped:
        progress(f"  dropped {len(dropped)} class group(s) nothing reads: {', '.join(dropped)}")
    weights, acc = _recover(plan, weights, tasks, train, val, reference, settings, seed,
                            progress)
    history = [{"step": 0, "flops": plan.cost(plan.tasks).flops, "accuracy": acc}]
    progress(f"  step 0: {history[0]['flops']} FLOPs, accuracy {_fmt(acc)}")
    if not _inside(acc, reference, settings.budget):
        return GraphPruneResult(plan, weights, acc, "unpruned_outside_budget", history,
                                settings.criterion)
    for step in range(1, settings.max_prune_steps + 1):
        fraction, outcome = settings.step_fraction, None
        for attempt in range(settings.backtracks + 1):
            outcome = _attempt(plan, weights, tasks, train, val, reference, settings,
                               fraction, seed + step + 1000 * attempt)
            if outcome is None:
                return _finish(plan, weights, tasks, train, val, settings, seed, acc,
                               "exhausted", history)
            new_plan, new_w, new_acc, removed = outcome
            history.append({"step": step, "attempt": attempt, "removed": removed,
                            "flops": new_plan.cost(new_plan.tasks).flops,
                            "accuracy": new_acc})
            progress(f"  step {step}" + (f" retry {attempt}" if attempt else "") +
                     f": -{removed} channels, {history[-1]['flops']} FLOPs, accuracy "
                     f"{_fmt(new_acc)}")
            if _inside(new_acc, reference, settings.budget):
                break
            fraction /= 2
        else:
            return _finish(plan, weights, tasks, train, val, settings, seed, acc, "budget",
                           history)
        plan, weights, acc = new_plan, new_w, new_acc
    return _finish(plan, weights, tasks, train, val, settings, seed, acc, "max_steps", history)


def _recover(plan, weights, tasks, train, val, reference, settings, seed, progress):
    """The initial fine-tune, repeated up to `recovery_rounds` more times while the unpruned
    network is outside the budget (as the chain loop does): a merged start is not
    function-preserving (measured: PAM's merged mobilenetv2_small on composite starts at chance
    and was still 22 points below digit's reference after one round of 200 mini-batches)."""
    weights = graph_finetune(plan, dict(weights), tasks, train,
                             steps=settings.initial_finetune_steps,
                             batch_size=settings.batch_size, lr=settings.lr, seed=seed)
    acc = graph_evaluate(plan, weights, tasks, val)
    for r in range(1, settings.recovery_rounds + 1):
        if settings.initial_finetune_steps == 0 or _inside(acc, reference, settings.budget):
            break
        progress(f"  step 0: outside the budget ({_fmt(acc)}); recovery round "
                 f"{r}/{settings.recovery_rounds} ({settings.initial_finetune_steps} more "
                 "mini-batches)")
        weights = graph_finetune(plan, weights, tasks, train,
                                 steps=settings.initial_finetune_steps,
                                 batch_size=settings.batch_size, lr=settings.lr,
                                 seed=seed + RECOVERY_SEED_OFFSET * r)
        acc = graph_evaluate(plan, weights, tasks, val)
    return weights, acc


def _attempt(plan, weights, tasks, train, val, reference, settings, fraction, seed):
    """Remove `fraction` of the prunable channels, fine-tune (again, up to `step_recovery`
    times, while outside the budget), evaluate; None when nothing can be removed (every group
    at one channel, or the removal would starve a reader)."""
    scores = _scores(plan, weights, tasks, train, settings, seed)
    keep, removed = _removal_keep(plan, scores, fraction, settings.flops_aware)
    if removed == 0:
        return None
    try:
        new_plan, new_w = remove_class_channels(plan, weights, keep)
    except PlanError:
        return None
    new_w = graph_finetune(new_plan, new_w, tasks, train, steps=settings.finetune_steps,
                           batch_size=settings.batch_size, lr=settings.lr, seed=seed)
    acc = graph_evaluate(new_plan, new_w, tasks, val)
    for r in range(1, settings.step_recovery + 1):
        if _inside(acc, reference, settings.budget):
            break
        new_w = graph_finetune(new_plan, new_w, tasks, train, steps=settings.finetune_steps,
                               batch_size=settings.batch_size, lr=settings.lr,
                               seed=seed + STEP_RECOVERY_SEED_OFFSET * r)
        acc = graph_evaluate(new_plan, new_w, tasks, val)
    return new_plan, new_w, acc, removed


def _finish(plan, weights, tasks, train, val, settings, seed, acc, reason, history
            ) -> GraphPruneResult:
    """The final fine-tune (kept only if it does not lower any task's accuracy)."""
    if settings.final_finetune_steps > 0:
        tuned = graph_finetune(plan, weights, tasks, train, steps=settings.final_finetune_steps,
                               batch_size=settings.batch_size, lr=settings.lr,
                               seed=seed + 10_000)
        tuned_acc = graph_evaluate(plan, tuned, tasks, val)
        if all(tuned_acc[t] >= acc[t] for t in acc):
            weights, acc = tuned, tuned_acc
    return GraphPruneResult(plan, weights, acc, reason, history, settings.criterion)


def _fmt(acc: Mapping[str, float]) -> str:
    return ", ".join(f"{t} {100 * v:.2f}" for t, v in acc.items())


def combine_graph_plans(plans: Sequence[GraphPlan], method: str = "none") -> GraphPlan:
    """B1 after pruning: one-task graph plans side by side as one no-merge plan (plan i's
    channels come from model i; weight names are unchanged)."""
    graph = plans[0].graph
    tasks = [p.tasks[0] for p in plans]
    classes = tuple(canonical_order(tasks, [Group(g.owners, tuple((i, n) for _, n in g.sources))
                                            for i, p in enumerate(plans) for g in p.classes[c]])
                    for c in range(len(graph.class_names)))
    heads = tuple(Head(p.heads[0].task, p.heads[0].units, p.heads[0].activation, i)
                  for i, p in enumerate(plans))
    return GraphPlan(method, tuple(tasks), graph, classes, heads)


def prune_graph_per_task(plan: GraphPlan, weights: Mapping[str, np.ndarray],
                         tasks: Sequence[Task], train: Data, val: Data,
                         reference: Mapping[str, float],
                         settings: GraphPruneSettings = GraphPruneSettings(), *, seed: int = 0,
                         progress: Callable[[str], None] = print
                         ) -> tuple[GraphPruneResult, list[GraphPruneResult]]:
    """B1: prune each task's own network alone to its own budget, then recombine."""
    results = []
    for part in graph_split_by_task(plan):
        t = part.tasks[0]
        progress(f" network of task {t}:")
        sub = {k: v for k, v in weights.items()
               if k.split("/")[0].endswith(f"__{t}") or k.split("/")[0] == t}
        results.append(prune_graph(part, sub, tasks, train, val, {t: reference[t]}, settings,
                                   seed=seed, progress=progress))
    combined = combine_graph_plans([r.plan for r in results], plan.method)
    merged_w = {k: v for r in results for k, v in r.weights.items()}
    acc = {t: a for r in results for t, a in r.accuracy.items()}
    return GraphPruneResult(combined, merged_w, acc, ",".join(r.reason for r in results),
                            criterion=settings.criterion), results
