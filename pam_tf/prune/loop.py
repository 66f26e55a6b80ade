"""The pruning loop: rank neurons, remove the lowest, fine-tune, evaluate, repeat (method.md §7).

One loop serves every plan (single-task, PAM-merged, no-merge, shared) and every criterion of
:mod:`pam_tf.prune.importance`:

- **Step 0** drops groups nothing reads (a merge can leave e.g. an exclusive conv1 group with no
  matching conv2 group: pure cost, no effect on any output), fine-tunes the starting network on
  the joint loss (a merged net is not function-preserving, method.md §6) and evaluates it.
- **Step s ≥ 1** takes the neurons the schedule asks for (:mod:`.schedule`) from the
  lowest-ranked ones (:mod:`.selection`); then surgery (:func:`remove_neurons`), fine-tuning,
  evaluation.
- **Budget mode** (default): continue while every task's validation accuracy stays within
  ``budget`` percentage points of its reference (its unpruned single-task net); return the
  last state inside the budget. If already step 0 is outside the budget, the unpruned network is
  returned with reason ``"unpruned_outside_budget"`` (no exception: it is a result). With
  ``backtracks`` > 0 a step that leaves the budget is first retried with smaller removals
  (:mod:`.backtrack`; ``retry_fill`` lets a FLOPs-aware retry take many cheap neurons where
  the failed attempt took one expensive one; ``retry_tabu`` leaves a failed first attempt's
  neurons out of the next steps' rankings once a smaller retry passed); with
  ``step_recovery`` > 0 an attempt outside
  the budget is first fine-tuned again (up to that many more rounds) and judged anew: near the
  budget's edge one fine-tune's noise, not what was removed, often decides a step, and a big removal (a conv
  channel of a merged net, which every task reads) may need more recovery than a small one.
- **Fixed-target mode** (``target_flops=X``): prune until the all-task combination costs
  at most X of the starting plan's FLOPs, ignoring the budget (accuracy is still reported).

Every attempt is checkpointed and a rerun resumes bit for bit (:mod:`.state`).
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable, Mapping, Sequence

import numpy as np

from pam_tf.build import check_weights
from pam_tf.config import PruneSettings
from pam_tf.plan import Plan
from pam_tf.prune.backtrack import budget_message, retry_keep
from pam_tf.prune.finetune import Data, check_data, evaluate, finetune, select_tasks
from pam_tf.prune.importance import Importance, make_importance
from pam_tf.prune.schedule import (default_schedule, next_step, prunes_after, schedule_config,
                                   schedule_table)
from pam_tf.prune.selection import (Keep, Ranker, Selector, all_flops, choose_removal,
                                    removed_count, usage_of)
from pam_tf.prune.state import (CHECKPOINT_FORMAT, FINAL_SEED_OFFSET, RECOVERY_SEED_OFFSET,
                                RETRY_SEED_OFFSET, STEP_RECOVERY_SEED_OFFSET,
                                Attempt, Checkpoints, PruneResult, RunState, begin, fingerprint)
from pam_tf.prune.surgery import drop_unread_groups, remove_neurons
from pam_tf.tasks import Task

__all__ = ["prune", "PruneResult", "default_schedule", "choose_removal", "REASONS",
           "CHECKPOINT_FORMAT"]

REASONS = {
    "budget": "the next pruning step (and each retry of it with fewer neurons) left the "
              "accuracy budget; returned the last state inside it",
    "unpruned_outside_budget": "even the unpruned network is outside the accuracy budget",
    "target_reached": "the FLOPs target was reached",
    "schedule_end": "the pruning schedule ended with every task inside the budget",
    "max_steps": "max_prune_steps was reached",
    "exhausted": "every group is at its minimum width; nothing left to prune",
}


def prune(plan: Plan, weights: Mapping[str, np.ndarray], tasks: Sequence[Task],
          train_data: Data, val_data: Data, settings: PruneSettings = PruneSettings(), *,
          importance: Importance | None = None,
          reference_accuracy: Mapping[str, float] | None = None,
          schedule=None, checkpoint_dir: str | None = None, seed: int = 0,
          teacher: Mapping[str, np.ndarray] | None = None,
          progress: Callable[[str], None] | None = print) -> PruneResult:
    """Prune `plan` with `weights` structurally until the accuracy budget or a FLOPs target.

    `tasks` are the :class:`pam_tf.tasks.Task` objects of the plan's tasks; `train_data` and
    `val_data` are ``(x, {task: labels})``. `settings` are the loop's settings (fine-tuning
    lengths left None are resolved here: a plan with a group owned by several tasks counts as
    merged). `importance` replaces the criterion named by ``settings.criterion`` (e.g. a
    configured :class:`TaylorImportance`). `reference_accuracy` (fractions, e.g. 0.975) is
    required in budget mode. `schedule` is any tfmot ``PruningSchedule`` (default
    :func:`default_schedule`), evaluated at steps 1..``max_prune_steps`` (mind tfmot's default
    ``frequency=100``: pass ``frequency=1`` to prune at every step). `checkpoint_dir` makes the
    run resumable; `progress` gets one line per attempt. See the module docstring for the rest.
    """
    tasks = select_tasks(plan, tasks)
    train = check_data(train_data, tasks, "train_data")
    val = check_data(val_data, tasks, "val_data")
    weights = {k: np.asarray(v, np.float32) for k, v in weights.items()}
    check_weights(plan, weights)
    merged = any(len(g.owners) > 1 for groups in plan.layers for g in groups)
    settings = _checked(settings.resolved(merged=merged, n_tasks=len(tasks)))
    reference = _references(settings, tasks, reference_accuracy)
    importance = importance if importance is not None else make_importance(settings.criterion)
    if settings.distill and teacher is None:
        raise ValueError("distill > 0 needs the teacher outputs (the unpruned single-task nets "
                         "on the training data)")
    run = _Run(plan, weights, tasks, train, val, settings, importance, reference,
               schedule if schedule is not None else default_schedule(),
               checkpoint_dir, seed, progress or (lambda _line: None),
               teacher if settings.distill else None)
    return run.go(plan, weights)


def _checked(settings: PruneSettings) -> PruneSettings:
    """What the settings' bounds cannot say: an open interval and an integer count."""
    target = settings.target_flops
    if target is not None and not 0.0 < float(target) <= 1.0:
        raise ValueError(f"target_flops must be in (0, 1], got {target}")
    b = settings.backtracks
    if isinstance(b, bool) or int(b) != b or b < 0:
        raise ValueError(f"backtracks must be an integer >= 0, got {b!r}")
    return dataclasses.replace(settings, backtracks=int(b))


def _references(settings: PruneSettings, tasks: Sequence[Task],
                reference_accuracy: Mapping[str, float] | None) -> dict[str, float]:
    reference = {k: float(v) for k, v in (reference_accuracy or {}).items()}
    if settings.target_flops is None:
        missing = [t.name for t in tasks if t.name not in reference]
        if missing:
            raise ValueError(f"budget mode needs reference_accuracy for every task; missing "
                             f"{missing} (or give target_flops)")
    bad = {k: v for k, v in reference.items() if not 0.0 <= v <= 1.0}
    if bad:
        raise ValueError(f"reference_accuracy must be fractions in [0, 1] (as Task.accuracy "
                         f"returns), got {bad}")
    return reference


def _teacher_hash(teacher: Mapping[str, np.ndarray] | None) -> str | None:
    """Part of the checkpoint fingerprint: other teacher outputs make another run."""
    if teacher is None:
        return None
    h = hashlib.sha256()
    for k in sorted(teacher):
        h.update(k.encode())
        h.update(np.ascontiguousarray(teacher[k], np.float32).tobytes())
    return h.hexdigest()[:16]


class _Run:
    """One pruning run: what stays fixed (settings, data, criterion, references, checkpoints)
    and the :class:`RunState` it advances, one attempt at a time."""

    def __init__(self, plan: Plan, weights: Mapping[str, np.ndarray], tasks: Sequence[Task],
                 train: Data, val: Data, settings: PruneSettings, importance: Importance,
                 reference: dict[str, float], schedule, checkpoint_dir: str | None, seed: int,
                 say: Callable[[str], None], teacher: Mapping[str, np.ndarray] | None = None):
        self.teacher = teacher
        self.tasks, self.train, self.val, self.settings = tasks, train, val, settings
        self.importance, self.reference, self.seed, self.say = importance, reference, seed, say
        self.table = schedule_table(schedule, settings.max_prune_steps)
        self.target_mode = settings.target_flops is not None
        self.start_method = plan.method
        self.n0, self.f0 = sum(plan.widths()), all_flops(plan)
        self.target_flops = float(settings.target_flops) * self.f0 if self.target_mode else None
        self.ranker = Ranker(importance, tasks, train, seed, settings.flops_aware,
                             usage_of([t.name for t in tasks], settings.combination_weights))
        self.selector = Selector(ranking=settings.ranking, min_group_width=settings.min_group_width,
                                 empty_groups=settings.empty_groups, round_to=settings.round_to,
                                 flops_aware=settings.flops_aware, target_flops=self.target_flops,
                                 shared_only=settings.prune_only_shared and len(tasks) > 1)
        self.checkpoint_dir, self.ckpt = checkpoint_dir, None
        if checkpoint_dir is not None:
            config = {**settings.key_json(), "criterion": importance.config(),
                      "reference": reference, "schedule": schedule_config(schedule),
                      "seed": seed, "tasks": [t.name for t in tasks],
                      "teacher": _teacher_hash(teacher)}
            self.ckpt = Checkpoints(checkpoint_dir,
                                    fingerprint(config, plan, weights, train, val), seed)
        self.floor = 0
        self.state: RunState | None = None

    def go(self, plan: Plan, weights: dict[str, np.ndarray]) -> PruneResult:
        started = self._start(plan, weights)
        if isinstance(started, PruneResult):
            return started
        self.state = started
        result = None
        while result is None:
            result = self._step()
        return result

    # ----- attempts ------------------------------------------------------------------------------
    def _record(self, step: int, plan: Plan, acc: dict[str, float], removed: int,
                sparsity: float, retry: int = 0, removed_flops: int = 0) -> Attempt:
        n, f = sum(plan.widths()), all_flops(plan)
        ref = self.reference
        within = None if not ref else all(
            acc[t] >= ref[t] - self.settings.budget / 100.0 - 1e-12 for t in ref if t in acc)
        return Attempt(step=step, retry=retry, neurons=n, neurons_fraction=n / self.n0,
                       removed=removed, flops=f, flops_fraction=f / self.f0,
                       removed_flops=removed_flops, widths=plan.widths(),
                       schedule_sparsity=sparsity, accuracy=acc,
                       reference={t: ref[t] for t in acc if t in ref}, within_budget=within)

    def _finetune(self, plan: Plan, weights: dict[str, np.ndarray], steps: int,
                  seed: int) -> dict[str, np.ndarray]:
        s = self.settings
        return finetune(plan, weights, self.tasks, self.train, steps=steps,
                        teacher=self.teacher, distill=self.settings.distill,
                        batch_size=s.batch_size, lr=s.lr, lr_decay=s.lr_decay, seed=seed)

    def _added(self) -> None:
        """Checkpoint and report the attempt just added to the state."""
        if self.ckpt is not None:
            self.ckpt.save_attempt(self.state)
        self.say(self.state.history[-1].progress_line(self.n0, self.settings.backtracks))

    def _recover(self, plan: Plan, weights: dict[str, np.ndarray]
                 ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Step 0's fine-tune, repeated (up to ``recovery_rounds`` more times, budget mode) while
        the unpruned network is outside the budget: a merged start is not function-preserving,
        and giving up on it after one round would end the run before any pruning."""
        s = self.settings
        begin(self.seed)
        weights = self._finetune(plan, weights, s.initial_finetune_steps, self.seed)
        acc = evaluate(plan, weights, self.tasks, self.val)
        for r in range(1, s.recovery_rounds + 1):
            if self.target_mode or s.initial_finetune_steps == 0 or \
                    self._record(0, plan, acc, 0, 0.0).within_budget is not False:
                break
            self.say(f"step   0: outside the budget after the first fine-tune; recovery round "
                     f"{r}/{s.recovery_rounds} ({s.initial_finetune_steps} more mini-batches)")
            begin(self.seed + RECOVERY_SEED_OFFSET * r)
            weights = self._finetune(plan, weights, s.initial_finetune_steps,
                                     self.seed + RECOVERY_SEED_OFFSET * r)
            acc = evaluate(plan, weights, self.tasks, self.val)
        return weights, acc

    def _start(self, plan: Plan, weights: dict[str, np.ndarray]) -> RunState | PruneResult:
        """Step 0, or the state (or finished result) a checkpoint holds."""
        plan, weights, unread = drop_unread_groups(plan, weights)
        if unread:
            self.say(f"removed {self.n0 - sum(plan.widths())} neuron(s) in group(s) nothing "
                     f"reads ({', '.join(unread)}): they cost FLOPs and change no output")
        mgw = self.settings.min_group_width
        self.floor = sum(min(mgw, g.width) for groups in plan.layers for g in groups)
        resumed = self.ckpt.load() if self.ckpt is not None else None
        if resumed is not None and resumed.result is not None:
            r = resumed.result
            self.say(f"pruning already finished in {self.checkpoint_dir} ({r.reason}): "
                     f"{r.message}")
            return r
        if resumed is not None:
            st = resumed.state
            self.selector.frozen = frozenset(st.frozen)
            self.selector.protected = frozenset(st.protected)
            retry = st.history[-1].retry
            self.say(f"resuming from {self.checkpoint_dir}: step {st.step}"
                     + (f" retry {retry}" if retry else "")
                     + f" completed ({sum(st.plan.widths())}/{self.n0} neurons left)")
            return st
        weights, acc = self._recover(plan, weights)
        self.state = RunState(plan, weights, [])
        self.state.add(self._record(0, plan, acc, 0, 0.0), plan, weights)
        self._added()
        return self.state

    def _attempt(self, s: int, r: int, keep: Keep, sparsity: float) -> None:
        """Remove, fine-tune and evaluate one attempt of step s (retry r) from the current state;
        record and checkpoint it; it becomes the current state."""
        st = self.state
        seed = self.seed + s + RETRY_SEED_OFFSET * r
        if r > 0:  # a first attempt runs on from its ranking's set_seed(seed + s)
            begin(seed)
        f_before = all_flops(st.plan)
        plan, weights = remove_neurons(st.plan, st.weights, keep, meta={
            "pruned_from": self.start_method, "prune_criterion": self.importance.name,
            "prune_step": s})
        # emptying a group (empty_groups) can leave a group below it unread; Keras would leave
        # that layer out of the model and fine-tuning would miss its weights: drop it too
        plan, weights, _ = drop_unread_groups(plan, weights)
        weights = self._finetune(plan, weights, self.settings.finetune_steps, seed)
        acc = evaluate(plan, weights, self.tasks, self.val)
        removed, removed_flops = removed_count(keep), f_before - all_flops(plan)
        rounds = 0
        while (rounds < self.settings.step_recovery and not self.target_mode
               and self._record(s, plan, acc, removed, sparsity, r).within_budget is False):
            rounds += 1  # outside after one fine-tune: fine-tune on before judging it
            begin(seed + STEP_RECOVERY_SEED_OFFSET * rounds)
            weights = self._finetune(plan, weights, self.settings.finetune_steps,
                                     seed + STEP_RECOVERY_SEED_OFFSET * rounds)
            acc = evaluate(plan, weights, self.tasks, self.val)
        attempt = self._record(s, plan, acc, removed, sparsity, r, removed_flops)
        st.add(dataclasses.replace(attempt, recovery=rounds), plan, weights)
        self._added()

    # ----- one decision per loop turn ----------------------------------------------------------
    def _step(self) -> PruneResult | None:
        """Stop (the result), or make the next attempt (None)."""
        st = self.state
        last = st.history[-1]
        if st.frozen_at == (last.step, last.retry):  # tasks frozen after it: go on from ok
            last = st.ok_attempt()
        elif not self.target_mode and last.within_budget is False:
            return self._outside_budget(last)
        if self.target_mode and last.flops <= self.target_flops:
            msg = (f"all-task FLOPs {100 * last.flops_fraction:.1f}% of start <= target "
                   f"{100 * float(self.settings.target_flops):.1f}%")
            return self._finish("target_reached", msg, last.step, st.plan, st.weights,
                                last.accuracy)
        max_steps, left = self.settings.max_prune_steps, sum(st.plan.widths())
        nxt = next_step(self.table, last, st.step, n0=self.n0, f0=self.f0, neurons_left=left,
                        max_steps=max_steps, target_mode=self.target_mode,
                        past_schedule=self.settings.past_schedule)
        if nxt is None:  # would the schedule still prune after max_steps?
            more = prunes_after(self.table, max_steps, max_steps + 1, self.n0, self.n0 - left)
            go_on = self.target_mode or self.settings.past_schedule
            reason = "max_steps" if (go_on or more) else "schedule_end"
            msg = (f"{REASONS[reason]} after step {st.step}"
                   + ("" if self.target_mode else "; every task stayed inside the budget"))
            return self._finish(reason, msg, self._returned_step(), st.plan, st.weights,
                                last.accuracy)
        if left <= self.floor:
            return self._finish("exhausted", REASONS["exhausted"], self._returned_step(),
                                st.plan, st.weights, last.accuracy)
        self.ranker.forget()
        self.selector.protected = frozenset(st.protected) | st.tabu_at(nxt.step)
        keep, offered = self.selector.select(
            st.plan, self.ranker.rank(nxt.step, st.plan, st.weights), nxt.n_remove,
            nxt.flops_floor)
        if removed_count(keep) == 0:
            if not offered:
                return self._finish("exhausted", REASONS["exhausted"], self._returned_step(),
                                    st.plan, st.weights, last.accuracy)
            st.step = nxt.step  # rounding put every chosen neuron back: nothing changes here
            return None
        self._attempt(nxt.step, 0, keep, nxt.sparsity)
        return None

    def _outside_budget(self, last: Attempt) -> PruneResult | None:
        """The last attempt left the budget: retry it smaller from the last state inside it
        (None), or stop there."""
        st, budget, backtracks = self.state, self.settings.budget, self.settings.backtracks
        refs = ", ".join(f"{t} {100 * last.accuracy[t]:.2f}% vs reference "
                         f"{100 * self.reference[t]:.2f}%" for t in self.reference)
        if last.step == 0:
            msg = (f"the unpruned network (step 0, after the first fine-tune) is already "
                   f"more than {budget} point(s) below a reference ({refs}); "
                   f"returning it unpruned")
            return self._finish("unpruned_outside_budget", msg, 0, st.plan, st.weights,
                                last.accuracy)
        p, w = st.ok
        keep = None
        self.selector.protected = frozenset(st.protected) | st.tabu_at(last.step)
        if last.retry < backtracks:
            keep = retry_keep(last, p, lambda: self.ranker.rank(last.step, p, w), self.selector,
                              fill=self.settings.retry_fill)
        if keep is not None:
            if last.retry == 0 and self.settings.retry_tabu:
                st.tabu = st.tabu + tuple(
                    (*n, last.step, last.step + self.settings.retry_tabu)
                    for n in sorted(_removed_sources(p, st.plan)))
            st.plan, st.weights = p, w
            self._attempt(last.step, last.retry + 1, keep, last.schedule_sparsity)
            return None
        if self._freeze(last) or self._protect(last):
            return None
        msg = budget_message(st.history, refs, budget=budget, backtracks=backtracks,
                             ok_step=st.ok_step, ok_retry=st.ok_retry)
        return self._finish("budget", msg, st.ok_step, p, w, st.ok_attempt().accuracy)

    def _returned_step(self) -> int:
        """The step whose network the current state holds (after freezing: the last inside)."""
        st = self.state
        last = st.history[-1]
        return st.ok_step if st.frozen_at == (last.step, last.retry) else st.step

    def _freeze(self, last: Attempt) -> bool:
        """per_task_budget: the tasks `last` put outside their budget stop shrinking; pruning
        goes on from the last state inside the budget in the groups owned only by the other
        tasks. False (stop) when no task is newly frozen or none would be left to prune."""
        st = self.state
        if not self.settings.per_task_budget or len(self.tasks) < 2:
            return False
        floor = self.settings.budget / 100.0 + 1e-12
        failing = {t for t, a in last.accuracy.items()
                   if t in self.reference and a < self.reference[t] - floor}
        frozen = set(st.frozen) | failing
        names = [t.name for t in self.tasks]
        if frozen == set(st.frozen) or frozen >= set(names):
            return False
        st.frozen = tuple(t for t in names if t in frozen)
        st.frozen_at = (last.step, last.retry)
        st.plan, st.weights = st.ok
        self.selector.frozen = frozenset(st.frozen)
        if self.ckpt is not None:
            self.ckpt.save_state(st)
        rest = [t for t in names if t not in frozen]
        self.say(f"step {last.step:3d}: {', '.join(sorted(failing))} reached the budget; "
                 f"pruning goes on in the groups owned only by {', '.join(rest)} "
                 f"(from step {st.ok_step})")
        return True

    def _protect(self, last: Attempt) -> bool:
        """protect_failed: even the smallest removal of `last`'s step left the budget. Keep the
        neurons it removed for good and go on from the last state inside the budget, pruning
        among the others: the ranking's cheapest failure (often one expensive conv channel)
        says nothing about the many cheaper neurons left. False (stop) when the protections
        are used up or the failed attempt removed nothing that can be named."""
        st = self.state
        if st.protections >= self.settings.protect_failed:
            return False
        p, w = st.ok
        removed = _removed_sources(p, st.plan)
        if not removed:
            return False
        st.protected = st.protected + tuple(sorted(removed))
        st.protections += 1
        st.frozen_at = (last.step, last.retry)
        st.plan, st.weights = p, w
        self.selector.protected = frozenset(st.protected)
        if self.ckpt is not None:
            self.ckpt.save_state(st)
        self.say(f"step {last.step:3d}: removing {_neuron_names(p, removed)} left the budget "
                 f"even as the smallest retry; keeping {'it' if len(removed) == 1 else 'them'} "
                 f"and pruning on among the other neurons (protection {st.protections}/"
                 f"{self.settings.protect_failed}, from step {st.ok_step})")
        return True

    # ----- the end -----------------------------------------------------------------------------
    def _final_stage(self, plan: Plan, weights: dict[str, np.ndarray], message: str,
                     acc: dict[str, float]) -> tuple[dict[str, np.ndarray], str, dict[str, float]]:
        """The returned network's extra fine-tuning and optional unstructured sparsity."""
        s = self.settings
        if not (s.final_finetune_steps > 0 or s.unstructured_sparsity):
            return weights, message, acc
        seed = self.seed + FINAL_SEED_OFFSET
        begin(seed)
        if s.final_finetune_steps > 0:
            before = weights
            weights = self._finetune(plan, weights, s.final_finetune_steps, seed)
            weights, message = self._kept_inside(plan, before, weights, acc, message)
        if s.unstructured_sparsity:
            from pam_tf.prune.unstructured import sparsify, zero_fraction
            weights = sparsify(plan, weights, self.tasks, self.train,
                               sparsity=float(s.unstructured_sparsity),
                               steps=s.unstructured_steps, batch_size=s.batch_size, lr=s.lr,
                               seed=seed)
            message += (f"; unstructured sparsity {zero_fraction(plan, weights):.2f} of hidden "
                        "kernels")
        return weights, message, evaluate(plan, weights, self.tasks, self.val)

    def _kept_inside(self, plan: Plan, before: dict[str, np.ndarray],
                     after: dict[str, np.ndarray], acc: dict[str, float], message: str
                     ) -> tuple[dict[str, np.ndarray], str]:
        """The final fine-tune's weights, unless (budget mode) they put a task outside the
        budget that the network was inside before it: then the weights before it. The returned
        network is inside the budget whenever the state it came from was, so what is derived
        from it (PAM-S's cuts) starts inside too."""
        if self.target_mode or self._record(0, plan, acc, 0, 0.0).within_budget is False:
            return after, message
        acc_after = evaluate(plan, after, self.tasks, self.val)
        if self._record(0, plan, acc_after, 0, 0.0).within_budget is not False:
            return after, message
        worse = ", ".join(f"{t} {100 * acc[t]:.2f}% -> {100 * acc_after[t]:.2f}%"
                          for t in self.reference if acc_after[t] < acc[t])
        return before, message + (f"; the final fine-tune left the budget ({worse}): kept the "
                                  "weights before it")

    def _finish(self, reason: str, message: str, step: int, plan: Plan,
                weights: dict[str, np.ndarray], acc: dict[str, float]) -> PruneResult:
        if reason != "unpruned_outside_budget":
            weights, message, acc = self._final_stage(plan, weights, message, acc)
        result = PruneResult(plan, weights, [e.to_json() for e in self.state.history], reason,
                             message, step, acc, all_flops(plan) / self.f0)
        if self.ckpt is not None:
            self.ckpt.save_result(result)
        accs = ", ".join(f"{t} {100 * a:.2f}%" for t, a in acc.items())
        self.say(f"pruning done ({reason}): {message} | returned step {step}: neurons "
                 f"{sum(plan.widths())}/{self.n0}, FLOPs {100 * result.flops_fraction:.1f}% "
                 f"of start | {accs}")
        return result


def _removed_sources(before: Plan, after: Plan) -> set[tuple[int, int, int]]:
    """(layer, model, neuron) of the neurons `before` has and `after` lacks."""
    out = set()
    for l, (b, a) in enumerate(zip(before.layers, after.layers)):
        kept = {src for g in a for src in g.sources}
        out |= {(l, *src) for g in b for src in g.sources if src not in kept}
    return out


def _neuron_names(plan: Plan, neurons: set[tuple[int, int, int]]) -> str:
    """'2 neuron(s) of fc3, 1 of conv1': where protected neurons sit, for the progress line."""
    counts: dict[str, int] = {}
    for l, _, _ in neurons:
        name = plan.chain.hidden[l].name
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{n} neuron(s) of {layer}" for layer, n in sorted(counts.items()))
