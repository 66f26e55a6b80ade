"""The pruning loop: rank neurons, remove the lowest, fine-tune, evaluate, repeat (method.md §7).

One loop serves every plan (single-task, PAM-merged, no-merge, shared) and every criterion of
:mod:`pam_tf.prune.importance`:

- **Step 0** drops groups nothing reads (a merge can leave e.g. an exclusive conv1 group with no
  matching conv2 group: pure cost, no effect on any output), fine-tunes the starting network on
  the joint loss (a merged net is not function-preserving, method.md §6) and evaluates it.
- **Step s ≥ 1** asks the tfmot ``PruningSchedule`` ``schedule(s) → (should_prune, sparsity)``;
  sparsity is the fraction of the *starting* plan's hidden neurons that must be gone by step s.
  The missing neurons are taken from the lowest-ranked ones (globally across layers, or the same
  fraction from each layer), every group keeps at least ``min_group_width`` neurons (so every
  reader stays fed and no head loses its input; with ``empty_groups`` a group may vanish when
  all its readers read another group too), widths may be rounded up to a multiple of
  ``round_to``; then surgery (:func:`remove_neurons`), fine-tuning, evaluation.
- **Budget mode** (default): continue while every task's validation accuracy stays within
  ``budget_points`` percentage points of its reference (its unpruned single-task net); return the
  last state inside the budget. If already step 0 is outside the budget, the unpruned network is
  returned with reason ``"unpruned_outside_budget"`` (no exception: it is a result).
- **Backtracking** (budget mode, ``backtracks`` > 0): a step whose fine-tuned network leaves the
  budget does not end pruning at once. The last state inside the budget is restored and the step
  is retried with a smaller removal, taken from the same ranking (not recomputed): half as many
  of the lowest-ranked neurons as the failed attempt removed; FLOPs-aware, at most half the
  all-task FLOPs the failed attempt removed, taking neurons in ranking order but skipping any
  whose removal would exceed that share, up to half as many neurons (at least one: a failed
  attempt that removed one expensive conv channel is retried with one cheaper neuron). When no
  smaller removal exists, no retry is made. A retry inside the budget becomes the new state and
  pruning goes on with the schedule: the next step again aims at the schedule's sparsity, so it
  also removes what the retry left out. As a guard against schedules that plateau, the first
  pruning step after a successful retry removes at least as many neurons (and, FLOPs-aware, as
  large a FLOPs share) as that retry did, even when the state already meets the schedule's
  sparsity. Only when ``backtracks`` retries of one step (or every retry that can still remove
  fewer neurons) have left the budget does pruning stop with reason ``"budget"``. Every attempt
  is one history entry (``retry`` = 0 for the first) and one progress line.
  ``backtracks=0`` is the plain rule above, bit for bit.
- **Fixed-target mode** (``target_flops_fraction=X``): prune until the all-task combination costs
  at most X of the starting plan's FLOPs, ignoring the budget (accuracy is still reported). The
  step that crosses the target removes only as many (lowest-ranked) neurons as needed. If the
  schedule ends first, each further step removes 10 % of the remaining neurons.
- **FLOPs-aware ranking** divides a neuron's (non-negative) importance by the FLOPs it costs: its
  own row in its group plus the input column it feeds in every reader, each weighted by the number
  of task combinations that compute it (a group owned by T runs in 2^n − 2^(n−|T|) of them).
  Because that ranking puts expensive neurons first, a FLOPs-aware step additionally stops before
  the all-task FLOPs fall below (1 − sparsity(s)) of the start: the schedule then bounds the
  fraction of FLOPs removed as well as the fraction of neurons (at least one neuron per step).

Checkpoints: after every completed attempt, ``checkpoint_dir/step_XXX/{plan.json, weights.npz}``
(retry r > 0 of step s: ``step_XXX_retry_R/``) and then ``state.json`` (step, retry, last state
inside the budget, seed, history, fingerprint of the arguments) are written atomically. A rerun
with the same arguments resumes after the last completed attempt; because step s always starts
with ``set_seed(seed + s)`` (the ranking), retry r of it fine-tunes after
``set_seed(seed + s + 1000·r)``, and batches come in a fixed seeded order, a resumed run ends with
the same plan and weights as an uninterrupted one, also when it stopped during or after a retry
(the ranking a retry reuses is recomputed from the restored state with the step's seed). A
finished run is returned from its checkpoint without recomputation.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from pam_tf import io
from pam_tf.build import check_weights, group_layer_name
from pam_tf.compat import keras, set_seed, tf
from pam_tf.plan import Group, Plan
from pam_tf.prune.finetune import (Data, check_data, evaluate, finetune, select_tasks,
                                   steps_for_epochs)
from pam_tf.prune.importance import (Importance, ImportanceContext, group_layer_names,
                                     make_importance)
from pam_tf.prune.surgery import drop_unread_groups, remove_neurons, round_keep
from pam_tf.tasks import Task

__all__ = ["prune", "PruneResult", "default_schedule", "neuron_flops", "choose_removal",
           "REASONS", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = 1
FINAL_SEED_OFFSET = 1_000_003
RETRY_SEED_OFFSET = 1000  # retry r of step s fine-tunes with seed + s + RETRY_SEED_OFFSET·r
TARGET_FALLBACK_FRACTION = 0.10

REASONS = {
    "budget": "the next pruning step (and each retry of it with fewer neurons) left the "
              "accuracy budget; returned the last state inside it",
    "unpruned_outside_budget": "even the unpruned network is outside the accuracy budget",
    "target_reached": "the FLOPs target was reached",
    "schedule_end": "the pruning schedule ended with every task inside the budget",
    "max_steps": "max_steps was reached",
    "exhausted": "every group is at its minimum width; nothing left to prune",
}


@dataclass
class PruneResult:
    """Outcome of :func:`prune`.

    `reason` is one key of :data:`REASONS`; `message` says the same in a sentence with numbers.
    `step` is the pruning step whose network is returned, `accuracy` its per-task validation
    accuracy (after the optional final fine-tune / unstructured stage), `flops_fraction` its
    all-task FLOPs relative to the starting plan. `history` has one dict per completed step.
    """

    plan: Plan
    weights: dict[str, np.ndarray]
    history: list[dict]
    reason: str
    message: str = ""
    step: int = 0
    accuracy: dict[str, float] = field(default_factory=dict)
    flops_fraction: float = 1.0


def default_schedule(end_step: int = 20):
    """PolynomialDecay 10 % → 95 % of the starting neurons over steps 1..end_step, power 3.

    Power 3 removes large fractions early and ever smaller ones later: close to the paper's
    "remove ~10 % of what is left per iteration", expressed as a tfmot schedule.
    """
    import tensorflow_model_optimization as tfmot
    return tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.10, final_sparsity=0.95,
                                                begin_step=1, end_step=end_step, power=3,
                                                frequency=1)


def _schedule_table(schedule, max_steps: int) -> list[tuple[bool, float]]:
    """(should_prune, sparsity) for steps 0..max_steps + 1, evaluated once up front."""
    out = []
    for s in range(max_steps + 2):
        should, sparsity = schedule(tf.constant(s, tf.int64))
        sp = float(np.asarray(sparsity))
        if not 0.0 <= sp <= 1.0 or not math.isfinite(sp):
            raise ValueError(f"pruning schedule returned sparsity {sp} at step {s}; it must be "
                             "a fraction in [0, 1]")
        out.append((bool(np.asarray(should)), sp))
    return out


def _schedule_config(schedule) -> object:
    try:
        return {"class": type(schedule).__name__, "config": schedule.get_config()}
    except Exception:  # noqa: BLE001 - any PruningSchedule subclass is allowed
        return {"class": type(schedule).__name__, "repr": repr(schedule)}


# ----- costs and ranking ------------------------------------------------------------------------
def _combos(n: int, owners: int) -> int:
    """Task combinations that compute a group owned by `owners` of n tasks."""
    return 2 ** n - 2 ** (n - owners)


def neuron_flops(plan: Plan) -> dict[str, np.ndarray]:
    """Per hidden neuron, the FLOPs it costs summed over all task combinations (see module doc).

    Own row: (2·fan_in·C_in − 1)·positions of its group, × combinations computing the group.
    Fed columns: 2·fan_in·positions·width of every reader (next-layer group or head) that reads
    its group, × combinations computing that reader.
    """
    n = len(plan.tasks)
    hidden = plan.chain.hidden
    out = {}
    for l, (layer, groups) in enumerate(zip(hidden, plan.layers)):
        for g in groups:
            own = layer.cost(plan.in_channels(l, g), 1).flops * _combos(n, len(g.owners))
            fed = 0
            if l + 1 < len(hidden):
                nxt = hidden[l + 1]
                gi = plan.layers[l].index(g)
                for r in plan.layers[l + 1]:
                    if gi in plan.readable(l + 1, r):
                        fed += 2 * nxt.fan_in * nxt.out_positions * r.width * \
                            _combos(n, len(r.owners))
            else:
                head = plan.chain.head
                for h in plan.heads:
                    if h.task in g.owners:
                        fed += 2 * head.fan_in * h.units * _combos(n, 1)
            out[group_layer_name(layer, g)] = np.full(g.width, float(max(own + fed, 1)))
    return out


def choose_removal(plan: Plan, scores: Mapping[str, np.ndarray], n_remove: int, *,
                   ranking: str = "global", min_group_width: int = 1,
                   empty_groups: bool = False) -> list[tuple[str, int]]:
    """The (group layer name, neuron index) pairs to remove, lowest score first.

    ``"global"`` ranks all hidden neurons together; ``"per_layer"`` removes from each layer a
    share of `n_remove` proportional to its width (largest remainders), ranked within the layer.
    No group drops below `min_group_width`, except that with `empty_groups` a group may lose its
    last neuron (and disappear) when every group and head reading it still reads another group:
    a merged layer then need not keep one neuron per owner set (PAM's exclusive conv1 channels
    would otherwise cost as much as the whole of a pruned single-task conv1). Ties break by
    layer, group and neuron order, so the choice is deterministic; every prefix of the returned
    list leaves a valid plan.
    """
    entries = []  # (score, layer, group, neuron, name)
    room: dict[str, int] = {}
    where: dict[str, tuple[int, int]] = {}
    widths = plan.widths()
    for l, (layer, groups) in enumerate(zip(plan.chain.hidden, plan.layers)):
        for gi, g in enumerate(groups):
            name = group_layer_name(layer, g)
            room[name] = max(0, g.width - min_group_width)
            where[name] = (l, gi)
            s = np.asarray(scores[name], np.float64)
            entries.extend((float(s[j]), l, gi, j, name) for j in range(g.width))
    entries.sort(key=lambda e: e[:4])
    emptied: set[tuple[int, int]] = set()

    def can_empty(name: str) -> bool:
        if not empty_groups or min_group_width > 1 or room[name] != 0:
            return False
        l, gi = where[name]  # room 0 with min_group_width 1: this is the group's last neuron
        if (l, gi) in emptied:
            return False
        owners = set(plan.layers[l][gi].owners)
        if l + 1 < len(plan.layers):
            readers = [plan.readable(l + 1, r) for r in plan.layers[l + 1]
                       if set(r.owners) <= owners]
        else:
            readers = [plan.head_inputs(t) for t in plan.layers[l][gi].owners]
        return all(any(j != gi and (l, j) not in emptied for j in inputs) for inputs in readers)

    def take(candidates, quota):
        picked = []
        for e in candidates:
            if len(picked) >= quota:
                break
            if room[e[4]] > 0:
                room[e[4]] -= 1
                picked.append(e)
            elif can_empty(e[4]):
                emptied.add(where[e[4]])
                room[e[4]] = -1
                picked.append(e)
        return picked

    n_remove = max(0, int(n_remove))
    if ranking == "global":
        picked = take(entries, n_remove)
    elif ranking == "per_layer":
        total = sum(widths)
        raw = [n_remove * w / total for w in widths]
        quota = [int(math.floor(r)) for r in raw]
        for l in sorted(range(len(raw)), key=lambda i: (-(raw[i] - quota[i]), i)):
            if sum(quota) >= n_remove:
                break
            quota[l] += 1
        picked = []
        for l, q in enumerate(quota):
            picked.extend(take([e for e in entries if e[1] == l], q))
        picked.sort(key=lambda e: e[:4])
    else:
        raise ValueError(f"ranking must be 'global' or 'per_layer', got {ranking!r}")
    return [(e[4], e[3]) for e in picked]


def _keep_from(plan: Plan, removal: Sequence[tuple[str, int]]) -> dict[str, np.ndarray]:
    keep = {group_layer_name(layer, g): np.ones(g.width, bool)
            for layer, groups in zip(plan.chain.hidden, plan.layers) for g in groups}
    for name, j in removal:
        keep[name][j] = False
    return keep


def _narrowed(plan: Plan, keep: Mapping[str, np.ndarray]) -> Plan:
    """The plan after surgery, without touching weights (for cost look-ahead)."""
    layers = []
    for layer, groups in zip(plan.chain.hidden, plan.layers):
        row = []
        for g in groups:
            m = keep[group_layer_name(layer, g)]
            row.append(Group(g.owners, tuple(s for s, k in zip(g.sources, m) if k)))
        layers.append(row)
    return plan.with_layers(layers)


def _all_flops(plan: Plan) -> int:
    return plan.cost(plan.tasks).flops


# ----- checkpoints -----------------------------------------------------------------------------
def _fingerprint(config: dict, plan: Plan, weights: Mapping[str, np.ndarray],
                 train: tuple, val: tuple) -> str:
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


class _Checkpoints:
    """step_XXX[_retry_R]/{plan.json, weights.npz}, final/{...} and state.json; state.json is
    written last, so it only ever names attempts whose files are complete."""

    def __init__(self, folder: str, fingerprint: str, seed: int):
        self.folder, self.fingerprint, self.seed = folder, fingerprint, seed
        self.state_path = os.path.join(folder, "state.json")

    def _dir(self, step, retry: int = 0) -> str:
        if isinstance(step, str):
            return os.path.join(self.folder, step)
        return os.path.join(self.folder, f"step_{step:03d}" + (f"_retry_{retry}" if retry else ""))

    def load_state(self) -> dict | None:
        if not os.path.exists(self.state_path):
            return None
        with open(self.state_path, encoding="utf-8") as f:
            state = json.load(f)
        if state.get("format") != CHECKPOINT_FORMAT or state.get("fingerprint") != \
                self.fingerprint:
            raise ValueError(f"{self.folder}: holds a pruning run with different arguments, "
                             "starting network or data; use a new checkpoint_dir (or delete "
                             "this one) to start afresh")
        return state

    def save_net(self, step, plan: Plan, weights: Mapping[str, np.ndarray],
                 retry: int = 0) -> None:
        d = self._dir(step, retry)
        io.save_npz(os.path.join(d, "weights.npz"), dict(weights))
        plan.save(os.path.join(d, "plan.json"))

    def load_net(self, step, retry: int = 0) -> tuple[Plan, dict[str, np.ndarray]]:
        d = self._dir(step, retry)
        plan = Plan.load(os.path.join(d, "plan.json"))
        weights = io.load_npz(os.path.join(d, "weights.npz"))
        check_weights(plan, weights, where=os.path.join(d, "weights.npz"))
        return plan, weights

    def save_state(self, **state) -> None:
        io.write_json(self.state_path, {"format": CHECKPOINT_FORMAT,
                                        "fingerprint": self.fingerprint, "seed": self.seed,
                                        **state})


# ----- the loop --------------------------------------------------------------------------------
def _begin(seed: int) -> None:
    """Same starting point for a step whether or not the run was resumed."""
    keras.backend.clear_session()
    set_seed(seed)


def _check_scores(plan: Plan, scores: Mapping[str, np.ndarray], criterion: str) -> None:
    for layer, groups in zip(plan.chain.hidden, plan.layers):
        for g in groups:
            name = group_layer_name(layer, g)
            s = scores.get(name)
            if s is None:
                raise ValueError(f"criterion '{criterion}' returned no scores for '{name}'")
            s = np.asarray(s)
            if s.shape != (g.width,) or not np.all(np.isfinite(s)):
                raise ValueError(f"criterion '{criterion}': scores of '{name}' must be "
                                 f"{g.width} finite numbers, got shape {s.shape}")


def _fmt_line(e: dict, n0: int, backtracks: int = 0) -> str:
    head = f"step {e['step']:3d}: neurons"
    if e.get("retry"):
        head = (f"step {e['step']:3d} retry {e['retry']}/{backtracks}: removing {e['removed']} "
                f"neuron(s) -> neurons")
    parts = [f"{head} {e['neurons']}/{n0} "
             f"({100 * e['neurons_fraction']:.1f}%), FLOPs {100 * e['flops_fraction']:.1f}% "
             f"of start (all tasks)"]
    accs = []
    for t, a in e["accuracy"].items():
        ref = e["reference"].get(t)
        if ref is None:
            accs.append(f"{t} {100 * a:.2f}%")
        else:
            accs.append(f"{t} {100 * a:.2f}% (ref {100 * ref:.2f}, {100 * (a - ref):+.2f} pt)")
    return parts[0] + " | " + ", ".join(accs) + ("" if e["within_budget"] in (None, True)
                                                else " | OUTSIDE budget")


def prune(plan: Plan, weights: Mapping[str, np.ndarray], tasks: Sequence[Task],
          train_data: Data, val_data: Data, *,
          criterion: str | Importance = "taylor",
          reference_accuracy: Mapping[str, float] | None = None,
          budget_points: float = 1.0,
          backtracks: int = 2,
          target_flops_fraction: float | None = None,
          schedule=None,
          max_steps: int = 40,
          finetune_steps: int = 100,
          finetune_epochs: float | None = None,
          initial_finetune_steps: int | None = None,
          final_finetune_steps: int = 0,
          batch_size: int = 64,
          lr: float = 1e-3,
          ranking: str = "global",
          flops_aware: bool = False,
          round_to: int = 1,
          min_group_width: int = 1,
          empty_groups: bool = False,
          unstructured_sparsity: float | None = None,
          unstructured_steps: int = 100,
          checkpoint_dir: str | None = None,
          seed: int = 0,
          progress: Callable[[str], None] | None = print) -> PruneResult:
    """Prune `plan` with `weights` structurally until the accuracy budget or a FLOPs target.

    `tasks` are the :class:`pam_tf.tasks.Task` objects of the plan's tasks; `train_data` and
    `val_data` are ``(x, {task: labels})``. `criterion` is 'taylor', 'vib', 'magnitude' or an
    :class:`Importance`. `reference_accuracy` (fractions, e.g. 0.975) is required in budget mode.
    `backtracks` (budget mode only): how many times a step that leaves the budget is retried from
    the last state inside it, each retry removing half as many neurons (FLOPs-aware: also at most
    half the FLOPs) as the attempt before; 0 stops at the first such step.
    `schedule` is any tfmot ``PruningSchedule`` (default :func:`default_schedule`), evaluated at
    steps 1..`max_steps` (mind tfmot's default ``frequency=100``: pass ``frequency=1`` to prune at
    every step). Fine-tuning per step: `finetune_steps` mini-batches (or
    `finetune_epochs` passes) of `batch_size` with Adam(`lr`); step 0 uses
    `initial_finetune_steps` (default: the same), the returned state gets
    `final_finetune_steps` more. `unstructured_sparsity` adds tfmot magnitude pruning of the
    hidden kernels (stripped) at the end. See the module docstring for the rest.
    """
    say = progress or (lambda _line: None)
    tasks = select_tasks(plan, tasks)
    train = check_data(train_data, tasks, "train_data")
    val = check_data(val_data, tasks, "val_data")
    weights = {k: np.asarray(v, np.float32) for k, v in weights.items()}
    check_weights(plan, weights)
    target_mode = target_flops_fraction is not None
    if target_mode and not 0.0 < float(target_flops_fraction) <= 1.0:
        raise ValueError(f"target_flops_fraction must be in (0, 1], got {target_flops_fraction}")
    reference = {k: float(v) for k, v in (reference_accuracy or {}).items()}
    if not target_mode:
        missing = [t.name for t in tasks if t.name not in reference]
        if missing:
            raise ValueError(f"budget mode needs reference_accuracy for every task; missing "
                             f"{missing} (or give target_flops_fraction)")
    bad = {k: v for k, v in reference.items() if not 0.0 <= v <= 1.0}
    if bad:
        raise ValueError(f"reference_accuracy must be fractions in [0, 1] (as Task.accuracy "
                         f"returns), got {bad}")
    if min_group_width < 1:
        raise ValueError("min_group_width must be >= 1: an empty group would starve its readers")
    if ranking not in ("global", "per_layer"):
        raise ValueError(f"ranking must be 'global' or 'per_layer', got {ranking!r}")
    if int(round_to) < 1:
        raise ValueError(f"round_to must be >= 1, got {round_to}")
    if isinstance(backtracks, bool) or int(backtracks) != backtracks or backtracks < 0:
        raise ValueError(f"backtracks must be an integer >= 0, got {backtracks!r}")
    backtracks = int(backtracks)
    importance = criterion if isinstance(criterion, Importance) else make_importance(criterion)
    schedule = schedule if schedule is not None else default_schedule()
    table = _schedule_table(schedule, max_steps)
    if finetune_epochs is not None:
        finetune_steps = steps_for_epochs(finetune_epochs, len(train[0]), batch_size)
    if initial_finetune_steps is None:
        initial_finetune_steps = finetune_steps

    start_plan = plan
    n0 = sum(plan.widths())
    f0 = _all_flops(plan)
    target_flops = None if not target_mode else float(target_flops_fraction) * f0

    config = {"criterion": importance.config(), "budget_points": float(budget_points),
              "reference": reference, "target_flops_fraction": target_flops_fraction,
              "schedule": _schedule_config(schedule), "max_steps": max_steps,
              "finetune_steps": finetune_steps, "initial_finetune_steps": initial_finetune_steps,
              "final_finetune_steps": final_finetune_steps, "batch_size": batch_size, "lr": lr,
              "ranking": ranking, "flops_aware": flops_aware, "round_to": round_to,
              "min_group_width": min_group_width, "unstructured_sparsity": unstructured_sparsity,
              "unstructured_steps": unstructured_steps, "seed": seed,
              "tasks": [t.name for t in tasks]}
    if empty_groups:  # only when set, so earlier checkpoints keep their fingerprint
        config["empty_groups"] = True
    if backtracks and not target_mode:
        # only when it matters: a backtracks=0 run keeps the fingerprint of runs made before
        # backtracking existed, so their checkpoints stay resumable
        config["backtracks"] = backtracks
    ckpt = None
    if checkpoint_dir is not None:
        ckpt = _Checkpoints(checkpoint_dir, _fingerprint(config, plan, weights, train, val), seed)

    def within(acc: dict[str, float]) -> bool | None:
        if not reference:
            return None
        return all(acc[t] >= reference[t] - budget_points / 100.0 - 1e-12 for t in reference
                   if t in acc)

    def record(step: int, p: Plan, acc: dict[str, float], removed: int, sparsity: float,
               retry: int = 0, removed_flops: int = 0) -> dict:
        n, f = sum(p.widths()), _all_flops(p)
        return {"step": step, "retry": retry, "neurons": n, "neurons_fraction": n / n0,
                "removed": removed, "flops": f, "flops_fraction": f / f0,
                "removed_flops": removed_flops, "widths": p.widths(),
                "schedule_sparsity": sparsity, "accuracy": acc,
                "reference": {t: reference[t] for t in acc if t in reference},
                "within_budget": within(acc)}

    def finish(reason: str, message: str, step: int, p: Plan, w: dict, history: list[dict],
               acc: dict[str, float]) -> PruneResult:
        if reason != "unpruned_outside_budget" and (final_finetune_steps > 0 or
                                                    unstructured_sparsity):
            _begin(seed + FINAL_SEED_OFFSET)
            if final_finetune_steps > 0:
                w = finetune(p, w, tasks, train, steps=final_finetune_steps, batch_size=batch_size,
                             lr=lr, seed=seed + FINAL_SEED_OFFSET)
            if unstructured_sparsity:
                from pam_tf.prune.unstructured import sparsify, zero_fraction
                w = sparsify(p, w, tasks, train, sparsity=float(unstructured_sparsity),
                             steps=unstructured_steps, batch_size=batch_size, lr=lr,
                             seed=seed + FINAL_SEED_OFFSET)
                message += f"; unstructured sparsity {zero_fraction(p, w):.2f} of hidden kernels"
            acc = evaluate(p, w, tasks, val)
        result = PruneResult(p, w, history, reason, message, step, acc, _all_flops(p) / f0)
        if ckpt is not None:
            ckpt.save_net("final", p, w)
            ckpt.save_state(step=history[-1]["step"], history=history, status="done",
                            result={"reason": reason, "message": message, "step": step,
                                    "accuracy": acc, "flops_fraction": result.flops_fraction})
        accs = ", ".join(f"{t} {100 * a:.2f}%" for t, a in acc.items())
        say(f"pruning done ({reason}): {message} | returned step {step}: neurons "
            f"{sum(p.widths())}/{n0}, FLOPs {100 * result.flops_fraction:.1f}% of start | {accs}")
        return result

    # ----- start or resume -------------------------------------------------------------------
    plan, weights, unread = drop_unread_groups(plan, weights)
    if unread:
        say(f"removed {n0 - sum(plan.widths())} neuron(s) in group(s) nothing reads "
            f"({', '.join(unread)}): they cost FLOPs and change no output")
    floor = sum(min(min_group_width, g.width) for groups in plan.layers for g in groups)
    state = ckpt.load_state() if ckpt is not None else None
    if state is not None and state.get("status") == "done":
        p, w = ckpt.load_net("final")
        r = state["result"]
        say(f"pruning already finished in {checkpoint_dir} ({r['reason']}): {r['message']}")
        return PruneResult(p, w, state["history"], r["reason"], r["message"], r["step"],
                           r["accuracy"], r["flops_fraction"])
    if state is not None:
        history = state["history"]
        step, retry = int(state["step"]), int(state.get("retry", 0))
        plan, weights = ckpt.load_net(step, retry)
        ok_step, ok_retry = state.get("last_ok_step"), int(state.get("last_ok_retry", 0))
        ok = (plan, weights) if (ok_step, ok_retry) == (step, retry) else \
            (ckpt.load_net(ok_step, ok_retry) if ok_step is not None else None)
        say(f"resuming from {checkpoint_dir}: step {step}"
            + (f" retry {retry}" if retry else "")
            + f" completed ({sum(plan.widths())}/{n0} neurons left)")
    else:
        _begin(seed)
        weights = finetune(plan, weights, tasks, train, steps=initial_finetune_steps,
                           batch_size=batch_size, lr=lr, seed=seed)
        acc = evaluate(plan, weights, tasks, val)
        history = [record(0, plan, acc, 0, 0.0)]
        step = 0
        ok_step, ok_retry = (0 if history[0]["within_budget"] is not False else None), 0
        ok = (plan, weights) if ok_step == 0 else None
        if ckpt is not None:
            ckpt.save_net(0, plan, weights)
            ckpt.save_state(step=0, retry=0, last_ok_step=ok_step, last_ok_retry=0,
                            history=history, status="running")
        say(_fmt_line(history[0], n0, backtracks))

    # ----- prune ------------------------------------------------------------------------------
    ranked: dict[int, dict[str, np.ndarray]] = {}  # step -> ranking of the state it started from

    def ranking_for(s: int, p: Plan, w: dict) -> dict[str, np.ndarray]:
        """The criterion's ranking of state (p, w) for step s, under set_seed(seed + s).

        A retry reuses the ranking of its step's first attempt (same state); after a resume it is
        recomputed, identically, from the restored state."""
        if s in ranked:
            return ranked[s]
        _begin(seed + s)
        ctx = ImportanceContext(p, w, tasks, train[0], train[1], seed=seed + s)
        scores = importance(ctx)
        _check_scores(p, scores, importance.name)
        rank = {k: np.asarray(v, np.float64) for k, v in scores.items()
                if k in set(group_layer_names(p))}
        if flops_aware:
            cost = neuron_flops(p)
            rank = {k: v / cost[k] for k, v in importance.to_positive(rank).items()}
        ranked.clear()
        ranked[s] = rank
        return rank

    def keep_without(p: Plan, rank: Mapping[str, np.ndarray],
                     removal: Sequence[tuple[str, int]]) -> dict[str, np.ndarray]:
        keep = _keep_from(p, removal)
        if round_to > 1:
            keep = round_keep(keep, rank, round_to, min_group_width)
        return keep

    def select(p: Plan, rank: Mapping[str, np.ndarray], n_remove: int,
               flops_floor: float | None) -> tuple[dict[str, np.ndarray], int]:
        """Keep masks removing up to n_remove lowest-ranked neurons (FLOPs-aware: only the
        largest prefix, >= 1 neuron, that keeps >= flops_floor; target mode: only as many as
        needed to reach the target); also the number of neurons the ranking offered."""
        removal = choose_removal(p, rank, n_remove, ranking=ranking,
                                 min_group_width=min_group_width, empty_groups=empty_groups)

        def keep_for(k: int) -> dict[str, np.ndarray]:
            return keep_without(p, rank, removal[:k])

        limit = len(removal)
        if flops_aware and flops_floor is not None and removal and \
                _all_flops(_narrowed(p, keep_for(limit))) < flops_floor:
            # FLOPs-aware ranking puts expensive neurons first, so a step is also capped at the
            # schedule's fraction of the starting FLOPs: the largest prefix (>= 1 neuron) that
            # keeps at least flops_floor. Without it one step can remove most conv channels.
            lo, hi = 1, limit
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if _all_flops(_narrowed(p, keep_for(mid))) >= flops_floor:
                    lo = mid
                else:
                    hi = mid - 1
            limit = lo
        keep = keep_for(limit)
        if target_mode and removal and _all_flops(_narrowed(p, keep)) <= target_flops:
            lo, hi = 0, limit  # smallest prefix that reaches the target
            while lo < hi:
                mid = (lo + hi) // 2
                if _all_flops(_narrowed(p, keep_for(mid))) <= target_flops:
                    hi = mid
                else:
                    lo = mid + 1
            keep = keep_for(lo)
        return keep, len(removal)

    def retry_keep(last: dict, p: Plan, w: dict) -> dict[str, np.ndarray] | None:
        """Keep masks for the next retry of last's step from the restored state (p, w), smaller
        than the failed attempt `last` (see the module docstring); None when there is none."""
        n_prev = int(last["removed"])
        if not flops_aware:
            if n_prev // 2 < 1:
                return None
            keep, _ = select(p, ranking_for(last["step"], p, w), n_prev // 2, None)
            n = int(sum((~m).sum() for m in keep.values()))
            return keep if 0 < n < n_prev else None
        rank = ranking_for(last["step"], p, w)
        f_now = _all_flops(p)
        share = (f_now - last["flops"]) / 2.0  # the FLOPs this retry may remove
        cap = max(1, n_prev // 2)
        chosen: list[tuple[str, int]] = []
        for cand in choose_removal(p, rank, sum(p.widths()), ranking=ranking,
                                   min_group_width=min_group_width, empty_groups=empty_groups):
            if len(chosen) >= cap:
                break
            trial = chosen + [cand]
            if f_now - _all_flops(_narrowed(p, keep_without(p, rank, trial))) <= share:
                chosen = trial
        if not chosen:
            return None
        keep = keep_without(p, rank, chosen)
        return keep if _all_flops(_narrowed(p, keep)) < f_now else None

    def attempt(s: int, r: int, keep: dict[str, np.ndarray], sparsity: float) -> None:
        """Remove, fine-tune and evaluate one attempt of step s (retry r) from (plan, weights);
        record and checkpoint it; it becomes the current state."""
        nonlocal plan, weights, step, ok_step, ok_retry, ok
        if r > 0:
            _begin(seed + s + RETRY_SEED_OFFSET * r)
        n_removed = int(sum((~m).sum() for m in keep.values()))
        f_before = _all_flops(plan)
        plan, weights = remove_neurons(plan, weights, keep, meta={
            "pruned_from": start_plan.method, "prune_criterion": importance.name,
            "prune_step": s})
        weights = finetune(plan, weights, tasks, train, steps=finetune_steps,
                           batch_size=batch_size, lr=lr, seed=seed + s + RETRY_SEED_OFFSET * r)
        acc = evaluate(plan, weights, tasks, val)
        step = s
        history.append(record(s, plan, acc, n_removed, sparsity, r,
                              f_before - _all_flops(plan)))
        if history[-1]["within_budget"] is not False:
            ok_step, ok_retry, ok = s, r, (plan, weights)
        if ckpt is not None:
            ckpt.save_net(s, plan, weights, retry=r)
            ckpt.save_state(step=s, retry=r, last_ok_step=ok_step, last_ok_retry=ok_retry,
                            history=history, status="running")
        say(_fmt_line(history[-1], n0, backtracks))

    while True:
        last = history[-1]
        if not target_mode and last["within_budget"] is False:
            refs = ", ".join(f"{t} {100 * last['accuracy'][t]:.2f}% vs reference "
                             f"{100 * reference[t]:.2f}%" for t in reference)
            if last["step"] == 0:
                msg = (f"the unpruned network (step 0, after the first fine-tune) is already "
                       f"more than {budget_points} point(s) below a reference ({refs}); "
                       f"returning it unpruned")
                return finish("unpruned_outside_budget", msg, 0, plan, weights, history,
                              last["accuracy"])
            p, w = ok
            tried = int(last.get("retry", 0))
            keep = retry_keep(last, p, w) if tried < backtracks else None
            if keep is not None:  # backtrack: retry the step from the last state inside
                plan, weights = p, w
                attempt(last["step"], tried + 1, keep, last["schedule_sparsity"])
                continue
            ok_entry = next(e for e in reversed(history)
                            if (e["step"], e.get("retry", 0)) == (ok_step, ok_retry))
            if tried == 0 and backtracks == 0:
                msg = (f"step {last['step']} left the {budget_points}-point budget ({refs}); "
                       f"returning step {ok_step}")
            else:
                sizes = [e["removed"] for e in history if e["step"] == last["step"]]
                why = "" if tried == backtracks else \
                    "; no retry with fewer neurons was possible"
                msg = (f"step {last['step']} left the {budget_points}-point budget with each of "
                       f"{tried + 1} attempt(s) ({tried} of at most {backtracks} retries; "
                       f"removing {', '.join(map(str, sizes))} neurons{why}); last attempt "
                       f"{refs}; returning step {ok_step}"
                       + (f" (retry {ok_retry})" if ok_retry else ""))
            return finish("budget", msg, ok_step, p, w, history, ok_entry["accuracy"])
        if target_mode and last["flops"] <= target_flops:
            msg = (f"all-task FLOPs {100 * last['flops_fraction']:.1f}% of start <= target "
                   f"{100 * float(target_flops_fraction):.1f}%")
            return finish("target_reached", msg, last["step"], plan, weights, history,
                          last["accuracy"])

        # after a successful retry, the next pruning step removes at least what it did
        min_n = int(last["removed"]) if not target_mode and last.get("retry", 0) else 0
        min_f = float(last.get("removed_flops", 0)) if min_n else 0.0
        removed_so_far = n0 - sum(plan.widths())
        s, n_remove, sparsity = step + 1, 0, 0.0
        flops_floor = 0.0  # FLOPs-aware steps stop removing before FLOPs fall below this
        while s <= max_steps:
            should, sparsity = table[s]
            n_remove = int(round(sparsity * n0)) - removed_so_far if should else 0
            if should and min_n:
                n_remove = max(n_remove, min_n)
            if n_remove > 0:
                flops_floor = (1.0 - sparsity) * f0
                if min_n:
                    flops_floor = min(flops_floor, last["flops"] - min_f)
                break
            if target_mode and not any(sh and round(sp * n0) > removed_so_far
                                       for sh, sp in table[s:max_steps + 1]):
                n_remove = max(1, int(math.ceil(TARGET_FALLBACK_FRACTION * sum(plan.widths()))))
                flops_floor = (1.0 - TARGET_FALLBACK_FRACTION) * last["flops"]
                break
            s += 1
        if s > max_steps:
            sh, sp = table[max_steps + 1]  # would the schedule still prune after max_steps?
            more = sh and round(sp * n0) > removed_so_far
            reason = "max_steps" if (target_mode or more) else "schedule_end"
            msg = (f"{REASONS[reason]} after step {step}"
                   + ("" if target_mode else "; every task stayed inside the budget"))
            return finish(reason, msg, step, plan, weights, history, last["accuracy"])
        if sum(plan.widths()) <= floor:
            return finish("exhausted", REASONS["exhausted"], step, plan, weights, history,
                          last["accuracy"])

        ranked.clear()
        keep, offered = select(plan, ranking_for(s, plan, weights), n_remove, flops_floor)
        n_removed = int(sum((~m).sum() for m in keep.values()))
        if n_removed == 0:
            if not offered:
                return finish("exhausted", REASONS["exhausted"], step, plan, weights, history,
                              last["accuracy"])
            # rounding put every chosen neuron back: nothing changes at this schedule step
            step = s
            continue
        attempt(s, 0, keep, sparsity)
