"""What to retry when a step leaves the accuracy budget (budget mode, ``backtracks`` > 0).

A step whose fine-tuned network leaves the budget does not end pruning at once. The last state
inside the budget is restored and the step is retried with a smaller removal, taken from the same
ranking (not recomputed): half as many of the lowest-ranked neurons as the failed attempt
removed; FLOPs-aware, at most half the all-task FLOPs the failed attempt removed, taking neurons
in ranking order but skipping any whose removal would exceed that share, up to half as many
neurons (at least one: a failed attempt that removed one expensive conv channel is retried with
one cheaper neuron; with ``retry_fill``, with as many cheaper neurons as fit in that FLOPs
share, up to 10 % of the remaining neurons). When no smaller removal exists, no retry is made.
A retry inside the budget becomes the new state and pruning goes on with the schedule: the next
step again aims at the schedule's sparsity, so it also removes what the retry left out (see
:mod:`.schedule` for the guard against plateaus). Only when ``backtracks`` retries of one step (or every retry that can
still remove fewer neurons) have left the budget does pruning stop with reason ``"budget"``.
Every attempt is one history entry (``retry`` = 0 for the first) and one progress line.
``backtracks=0`` is the plain budget rule, bit for bit.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np

from pam_tf.plan import Plan
from pam_tf.prune.schedule import TARGET_FALLBACK_FRACTION
from pam_tf.prune.selection import Keep, Selector, all_flops, narrowed, removed_count
from pam_tf.prune.state import Attempt

__all__ = ["retry_keep", "fill_count", "budget_message"]


def fill_count(plan: Plan) -> int:
    """Most neurons a filled retry may take: as many as a step past the schedule removes."""
    return max(1, int(math.ceil(TARGET_FALLBACK_FRACTION * sum(plan.widths()))))


def retry_keep(failed: Attempt, plan: Plan, ranking: Callable[[], Mapping[str, np.ndarray]],
               selector: Selector, fill: bool = False) -> Keep | None:
    """Keep masks for the next retry of `failed`'s step from the restored state `plan`, smaller
    than the failed attempt (module docstring); None when there is none. `ranking` gives the
    step's ranking (only asked for when a retry may exist).

    `fill` (FLOPs-aware only) lifts the neuron cap from half the failed removal to
    :func:`fill_count` of `plan`. Why: when the failed attempt removed one expensive conv
    channel, halving its count leaves one cheap neuron per retry, and the next step, whose
    ranking again starts with that channel, fails the same way; measured on fashion2 (PAM),
    20 of 40 steps each removed a single dense neuron that way until max_prune_steps ended
    pruning with every task inside the budget. The retry stays smaller where it matters: at
    most half the failed attempt's FLOPs."""
    n_prev = failed.removed
    if not selector.flops_aware:
        if n_prev // 2 < 1:
            return None
        keep, _ = selector.select(plan, ranking(), n_prev // 2, None)
        return keep if 0 < removed_count(keep) < n_prev else None
    rank = ranking()
    f_now = all_flops(plan)
    share = (f_now - failed.flops) / 2.0  # the FLOPs this retry may remove
    cap = max(1, n_prev // 2, fill_count(plan) if fill else 0)
    chosen: list[tuple[str, int]] = []
    for cand in selector.removal(plan, rank, sum(plan.widths())):
        if len(chosen) >= cap:
            break
        trial = chosen + [cand]
        if f_now - selector.flops_after(plan, rank, trial) <= share:
            chosen = trial
    if not chosen:
        return None
    keep = selector.keep_without(plan, rank, chosen)
    return keep if all_flops(narrowed(plan, keep)) < f_now else None


def budget_message(history: Sequence[Attempt], refs: str, *, budget: float, backtracks: int,
                   ok_step: int, ok_retry: int) -> str:
    """Why pruning stopped at the budget: the last step's attempts and what is returned.
    `refs` lists the last attempt's accuracies against their references."""
    last = history[-1]
    tried = last.retry
    if tried == 0 and backtracks == 0:
        return (f"step {last.step} left the {budget}-point budget ({refs}); "
                f"returning step {ok_step}")
    sizes = [e.removed for e in history if e.step == last.step]
    why = "" if tried == backtracks else "; no retry with fewer neurons was possible"
    return (f"step {last.step} left the {budget}-point budget with each of "
            f"{tried + 1} attempt(s) ({tried} of at most {backtracks} retries; "
            f"removing {', '.join(map(str, sizes))} neurons{why}); last attempt "
            f"{refs}; returning step {ok_step}" + (f" (retry {ok_retry})" if ok_retry else ""))
