"""What a pruning run remembers: its attempts, its current state, its checkpoints.

Checkpoints: after every completed attempt, ``checkpoint_dir/step_XXX/{plan.json, weights.npz}``
(retry r > 0 of step s: ``step_XXX_retry_R/``) and then ``state.json`` (step, retry, last state
inside the budget, seed, history, fingerprint of the arguments) are written atomically. A rerun
with the same arguments resumes after the last completed attempt; because step s always starts
with ``set_seed(seed + s)`` (the ranking), retry r of it fine-tunes after
``set_seed(seed + s + 1000·r)``, and batches come in a fixed seeded order, a resumed run ends with
the same plan and weights as an uninterrupted one, also when it stopped during or after a retry
(the ranking a retry reuses is recomputed from the restored state with the step's seed). A
finished run is returned from its checkpoint without recomputation.

The JSON keys of an :class:`Attempt` are those of ``state.json`` and ``prune_history.json``,
which the pipeline and the report read.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from pam_tf import io
from pam_tf.build import check_weights
from pam_tf.compat import keras, set_seed
from pam_tf.plan import Plan

__all__ = ["Attempt", "RunState", "PruneResult", "Checkpoints", "Resumed", "fingerprint",
           "begin", "CHECKPOINT_FORMAT", "FINAL_SEED_OFFSET", "RETRY_SEED_OFFSET",
           "STEP_RECOVERY_SEED_OFFSET"]

CHECKPOINT_FORMAT = 1
FINAL_SEED_OFFSET = 1_000_003
RETRY_SEED_OFFSET = 1000  # retry r of step s fine-tunes with seed + s + RETRY_SEED_OFFSET·r
RECOVERY_SEED_OFFSET = 2_000_003  # recovery round r of step 0 fine-tunes with seed + r·this
# step recovery round k of an attempt fine-tunes with that attempt's seed + k·this
STEP_RECOVERY_SEED_OFFSET = 3_000_017


def begin(seed: int) -> None:
    """Same starting point for a step whether or not the run was resumed."""
    keras.backend.clear_session()
    set_seed(seed)


@dataclass(frozen=True)
class Attempt:
    """One completed attempt of a pruning step (``retry`` = 0 for the first), as the history
    records it: the network's size and cost after it, what it removed, and its accuracy.

    `within_budget` is None when there is no budget (fixed-target mode without references).
    `recovery` counts the extra fine-tunes (``step_recovery``) the attempt got before it was
    judged; 0 in runs without them, and absent from their JSON, which stays as it was.
    """

    step: int
    retry: int
    neurons: int
    neurons_fraction: float
    removed: int
    flops: int
    flops_fraction: float
    removed_flops: int
    widths: list[int]
    schedule_sparsity: float
    accuracy: dict[str, float]
    reference: dict[str, float]
    within_budget: bool | None
    recovery: int = 0

    def to_json(self) -> dict:
        """The history entry's dict (a shallow copy of the fields, in this order)."""
        return {"step": self.step, "retry": self.retry, "neurons": self.neurons,
                "neurons_fraction": self.neurons_fraction, "removed": self.removed,
                "flops": self.flops, "flops_fraction": self.flops_fraction,
                "removed_flops": self.removed_flops, "widths": list(self.widths),
                "schedule_sparsity": self.schedule_sparsity, "accuracy": dict(self.accuracy),
                "reference": dict(self.reference), "within_budget": self.within_budget,
                **({"recovery": self.recovery} if self.recovery else {})}

    @staticmethod
    def from_json(d: Mapping) -> "Attempt":
        return Attempt(step=int(d["step"]), retry=int(d["retry"]), neurons=int(d["neurons"]),
                       neurons_fraction=d["neurons_fraction"], removed=int(d["removed"]),
                       flops=int(d["flops"]), flops_fraction=d["flops_fraction"],
                       removed_flops=int(d["removed_flops"]), widths=list(d["widths"]),
                       schedule_sparsity=d["schedule_sparsity"], accuracy=dict(d["accuracy"]),
                       reference=dict(d["reference"]), within_budget=d["within_budget"],
                       recovery=int(d.get("recovery", 0)))

    def progress_line(self, n0: int, backtracks: int) -> str:
        """The one progress line of this attempt (`n0`: neurons of the starting plan)."""
        head = f"step {self.step:3d}: neurons"
        if self.retry:
            head = (f"step {self.step:3d} retry {self.retry}/{backtracks}: removing "
                    f"{self.removed} neuron(s) -> neurons")
        line = (f"{head} {self.neurons}/{n0} ({100 * self.neurons_fraction:.1f}%), FLOPs "
                f"{100 * self.flops_fraction:.1f}% of start (all tasks)")
        if self.recovery:
            line += f", judged after {self.recovery} extra fine-tune(s)"
        accs = []
        for t, a in self.accuracy.items():
            ref = self.reference.get(t)
            if ref is None:
                accs.append(f"{t} {100 * a:.2f}%")
            else:
                accs.append(f"{t} {100 * a:.2f}% (ref {100 * ref:.2f}, {100 * (a - ref):+.2f} pt)")
        return line + " | " + ", ".join(accs) + ("" if self.within_budget in (None, True)
                                                 else " | OUTSIDE budget")


@dataclass
class PruneResult:
    """Outcome of :func:`pam_tf.prune.prune`.

    `reason` is one key of :data:`pam_tf.prune.REASONS`; `message` says the same in a sentence
    with numbers. `step` is the pruning step whose network is returned, `accuracy` its per-task
    validation accuracy (after the optional final fine-tune / unstructured stage),
    `flops_fraction` its all-task FLOPs relative to the starting plan. `history` has one JSON
    dict per completed attempt (:meth:`Attempt.to_json`; typed: :attr:`attempts`), as it is
    written to ``prune_history.json``.
    """

    plan: Plan
    weights: dict[str, np.ndarray]
    history: list[dict]
    reason: str
    message: str = ""
    step: int = 0
    accuracy: dict[str, float] = field(default_factory=dict)
    flops_fraction: float = 1.0

    @property
    def attempts(self) -> list[Attempt]:
        return [Attempt.from_json(e) for e in self.history]


@dataclass
class RunState:
    """The state a pruning run advances: the current network, the attempts so far, and the last
    state inside the budget (`ok`, from attempt (`ok_step`, `ok_retry`); None while there is
    none), which a retry starts from and a budget stop returns."""

    plan: Plan
    weights: dict[str, np.ndarray]
    history: list[Attempt]
    step: int = 0
    ok_step: int | None = None
    ok_retry: int = 0
    ok: tuple[Plan, dict[str, np.ndarray]] | None = None
    frozen: tuple[str, ...] = ()            # tasks whose budget bound (per_task_budget)
    frozen_at: tuple[int, int] | None = None  # the failed attempt (step, retry) after which
    #                                           pruning went on from `ok` (tasks frozen or
    #                                           neurons protected)
    protected: tuple[tuple[int, int, int], ...] = ()  # (layer, model, neuron) that must stay
    protections: int = 0                    # how many failed steps protected neurons
    # (layer, model, neuron, from_step, until_step): left out of steps from_step+1..until_step
    # (retry_tabu: the failed first attempt of a step that a smaller retry then passed)
    tabu: tuple[tuple[int, int, int, int, int], ...] = ()

    def tabu_at(self, step: int) -> frozenset[tuple[int, int, int]]:
        """The neurons `tabu` leaves out of step `step`'s ranking."""
        return frozenset((l, m, n) for l, m, n, since, until in self.tabu
                         if since < step <= until)

    def add(self, attempt: Attempt, plan: Plan, weights: dict[str, np.ndarray]) -> None:
        """Make (plan, weights) after `attempt` the current state (and the last good one when it
        is not outside the budget)."""
        self.plan, self.weights, self.step = plan, weights, attempt.step
        self.history.append(attempt)
        if attempt.within_budget is not False:
            self.ok_step, self.ok_retry, self.ok = attempt.step, attempt.retry, (plan, weights)

    def ok_attempt(self) -> Attempt:
        return next(e for e in reversed(self.history)
                    if (e.step, e.retry) == (self.ok_step, self.ok_retry))


@dataclass(frozen=True)
class Resumed:
    """What ``state.json`` says: a running state to continue, or a finished result."""

    state: RunState | None = None
    result: PruneResult | None = None


def fingerprint(config: Mapping, plan: Plan, weights: Mapping[str, np.ndarray],
                train: tuple, val: tuple) -> str:
    """Hash of everything that determines a run: a checkpoint made with other arguments, another
    starting network or other data must not be resumed."""
    h = hashlib.sha256()
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    h.update(json.dumps(plan.to_json(), sort_keys=True).encode())
    for k in sorted(weights):
        h.update(k.encode())
        h.update(np.ascontiguousarray(weights[k], np.float32).tobytes())
    for x, ys in (train, val):
        h.update(np.ascontiguousarray(x).tobytes())
        for k in sorted(ys):
            h.update(k.encode())
            h.update(np.ascontiguousarray(ys[k]).tobytes())
    return h.hexdigest()


class Checkpoints:
    """step_XXX[_retry_R]/{plan.json, weights.npz}, final/{...} and state.json; state.json is
    written last, so it only ever names attempts whose files are complete."""

    def __init__(self, folder: str, fingerprint: str, seed: int):
        self.folder, self.fingerprint, self.seed = folder, fingerprint, seed
        self.state_path = os.path.join(folder, "state.json")

    def _dir(self, step: int | str, retry: int = 0) -> str:
        if isinstance(step, str):
            return os.path.join(self.folder, step)
        return os.path.join(self.folder, f"step_{step:03d}" + (f"_retry_{retry}" if retry else ""))

    def save_net(self, step: int | str, plan: Plan, weights: Mapping[str, np.ndarray],
                 retry: int = 0) -> None:
        d = self._dir(step, retry)
        io.save_npz(os.path.join(d, "weights.npz"), dict(weights))
        plan.save(os.path.join(d, "plan.json"))

    def load_net(self, step: int | str, retry: int = 0) -> tuple[Plan, dict[str, np.ndarray]]:
        d = self._dir(step, retry)
        plan = Plan.load(os.path.join(d, "plan.json"))
        weights = io.load_npz(os.path.join(d, "weights.npz"))
        check_weights(plan, weights, where=os.path.join(d, "weights.npz"))
        return plan, weights

    def _write(self, **state) -> None:
        io.write_json(self.state_path, {"format": CHECKPOINT_FORMAT,
                                        "fingerprint": self.fingerprint, "seed": self.seed,
                                        **state})

    def save_attempt(self, state: RunState) -> None:
        """The network after the last attempt, then state.json naming it."""
        last = state.history[-1]
        self.save_net(last.step, state.plan, state.weights, retry=last.retry)
        self.save_state(state)

    def save_state(self, state: RunState) -> None:
        """state.json for the attempts whose networks are saved (e.g. after freezing tasks)."""
        last = state.history[-1]
        self._write(step=last.step, retry=last.retry, last_ok_step=state.ok_step,
                    last_ok_retry=state.ok_retry, history=[e.to_json() for e in state.history],
                    frozen=list(state.frozen),
                    frozen_at=list(state.frozen_at) if state.frozen_at else None,
                    protected=[list(p) for p in state.protected],
                    protections=state.protections,
                    **({"tabu": [list(t) for t in state.tabu]} if state.tabu else {}),
                    status="running")

    def save_result(self, result: PruneResult) -> None:
        """The returned network under final/, then state.json marking the run done."""
        self.save_net("final", result.plan, result.weights)
        self._write(step=result.history[-1]["step"], history=result.history, status="done",
                    result={"reason": result.reason, "message": result.message,
                            "step": result.step, "accuracy": result.accuracy,
                            "flops_fraction": result.flops_fraction})

    def load(self) -> Resumed | None:
        """The run state.json records (None without one); refuses another run's checkpoint."""
        if not os.path.exists(self.state_path):
            return None
        with open(self.state_path, encoding="utf-8") as f:
            saved = json.load(f)
        if saved.get("format") != CHECKPOINT_FORMAT or saved.get("fingerprint") != \
                self.fingerprint:
            raise ValueError(f"{self.folder}: holds a pruning run with different arguments, "
                             "starting network or data; use a new checkpoint_dir (or delete "
                             "this one) to start afresh")
        if saved["status"] == "done":
            plan, weights = self.load_net("final")
            r = saved["result"]
            return Resumed(result=PruneResult(plan, weights, saved["history"], r["reason"],
                                              r["message"], r["step"], r["accuracy"],
                                              r["flops_fraction"]))
        step, retry = int(saved["step"]), int(saved["retry"])
        plan, weights = self.load_net(step, retry)
        ok_step, ok_retry = saved["last_ok_step"], int(saved["last_ok_retry"])
        ok = (plan, weights) if (ok_step, ok_retry) == (step, retry) else \
            (self.load_net(ok_step, ok_retry) if ok_step is not None else None)
        history = [Attempt.from_json(e) for e in saved["history"]]
        frozen_at = tuple(saved["frozen_at"]) if saved.get("frozen_at") else None
        if frozen_at == (step, retry):  # frozen after this failed attempt: go on from ok
            plan, weights = ok
        protected = tuple(tuple(int(v) for v in p) for p in saved.get("protected", ()))
        tabu = tuple(tuple(int(v) for v in t) for t in saved.get("tabu", ()))
        return Resumed(state=RunState(plan, weights, history, step, ok_step, ok_retry, ok,
                                      tuple(saved.get("frozen", ())), frozen_at, protected,
                                      int(saved.get("protections", 0)), tabu))
