"""When to prune and how much: the tfmot schedule read as a table, and the next step it asks for.

Step s ≥ 1 asks the tfmot ``PruningSchedule`` ``schedule(s) → (should_prune, sparsity)``;
sparsity is the fraction of the *starting* plan's hidden neurons that must be gone by step s.
In fixed-target mode, if the schedule ends before the target is reached, each further step
removes 10 % of the remaining neurons; so does budget mode with ``past_schedule`` (the default of
the main job), so that the budget, not the schedule, ends pruning. As a guard against schedules that plateau, the first
pruning step after a successful retry removes at least as many neurons (and, FLOPs-aware, as
large a FLOPs share) as that retry did, even when the state already meets the schedule's
sparsity.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pam_tf.compat import tf
from pam_tf.prune.state import Attempt

__all__ = ["default_schedule", "schedule_table", "schedule_config", "NextStep", "next_step",
           "prunes_after", "TARGET_FALLBACK_FRACTION"]

TARGET_FALLBACK_FRACTION = 0.10


def default_schedule(end_step: int = 20):
    """PolynomialDecay 10 % → 95 % of the starting neurons over steps 1..end_step, power 3.

    Power 3 removes large fractions early and ever smaller ones later: close to the paper's
    "remove ~10 % of what is left per iteration", expressed as a tfmot schedule.
    """
    import tensorflow_model_optimization as tfmot
    return tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.10, final_sparsity=0.95,
                                                begin_step=1, end_step=end_step, power=3,
                                                frequency=1)


def schedule_table(schedule, max_steps: int) -> list[tuple[bool, float]]:
    """(should_prune, sparsity) for steps 0..max_steps + 1, evaluated once up front (the step
    after the last says whether the schedule would still have pruned)."""
    out = []
    for s in range(max_steps + 2):
        should, sparsity = schedule(tf.constant(s, tf.int64))
        sp = float(np.asarray(sparsity))
        if not 0.0 <= sp <= 1.0 or not math.isfinite(sp):
            raise ValueError(f"pruning schedule returned sparsity {sp} at step {s}; it must be "
                             "a fraction in [0, 1]")
        out.append((bool(np.asarray(should)), sp))
    return out


def schedule_config(schedule) -> object:
    """What identifies a schedule in the checkpoint fingerprint."""
    try:
        return {"class": type(schedule).__name__, "config": schedule.get_config()}
    except Exception:  # noqa: BLE001 - any PruningSchedule subclass is allowed
        return {"class": type(schedule).__name__, "repr": repr(schedule)}


@dataclass(frozen=True)
class NextStep:
    """The next pruning step: remove up to `n_remove` neurons at schedule `sparsity`; a
    FLOPs-aware step stops removing before the all-task FLOPs fall below `flops_floor`."""

    step: int
    n_remove: int
    sparsity: float
    flops_floor: float


def next_step(table: list[tuple[bool, float]], last: Attempt, step: int, *, n0: int, f0: float,
              neurons_left: int, max_steps: int, target_mode: bool,
              past_schedule: bool = False) -> NextStep | None:
    """The first step after `step` (<= max_steps) that removes neurons; None when none does.

    `last` is the latest attempt, inside the budget (or in target mode); `n0`, `f0` the starting
    plan's neurons and FLOPs; `neurons_left` the current plan's neurons. Once the schedule asks
    for nothing more, target mode (and budget mode with `past_schedule`) goes on removing
    TARGET_FALLBACK_FRACTION of the remaining neurons per step."""
    # after a successful retry, the next pruning step removes at least what it did
    min_n = last.removed if not target_mode and last.retry else 0
    min_f = float(last.removed_flops) if min_n else 0.0
    removed_so_far = n0 - neurons_left
    for s in range(step + 1, max_steps + 1):
        should, sparsity = table[s]
        n_remove = int(round(sparsity * n0)) - removed_so_far if should else 0
        if should and min_n:
            n_remove = max(n_remove, min_n)
        if n_remove > 0:
            flops_floor = (1.0 - sparsity) * f0
            if min_n:
                flops_floor = min(flops_floor, last.flops - min_f)
            return NextStep(s, n_remove, sparsity, flops_floor)
        if (target_mode or past_schedule) and \
                not prunes_after(table, s - 1, max_steps, n0, removed_so_far):
            n_remove = max(1, int(math.ceil(TARGET_FALLBACK_FRACTION * neurons_left)))
            return NextStep(s, n_remove, sparsity,
                            (1.0 - TARGET_FALLBACK_FRACTION) * last.flops)
    return None


def prunes_after(table: list[tuple[bool, float]], step: int, last_step: int, n0: int,
                 removed: int) -> bool:
    """Whether the schedule still asks for more than `removed` neurons at some step in
    step+1..last_step."""
    return any(sh and round(sp * n0) > removed for sh, sp in table[step + 1:last_step + 1])
