"""What a pruning step removes: the ranking, the removal, keep masks and cost look-ahead.

- The **ranking** of a step is the criterion's scores of the state the step starts from, computed
  under ``set_seed(seed + s)``; the retries of a step reuse it (it is not recomputed).
- The missing neurons are taken from the lowest-ranked ones (globally across layers, or the same
  fraction from each layer), every group keeps at least ``min_group_width`` neurons (so every
  reader stays fed and no head loses its input; with ``empty_groups`` a group may vanish when
  all its readers read another group too), widths may be rounded up to a multiple of
  ``round_to``.
- **FLOPs-aware ranking** divides a neuron's (non-negative) importance by the FLOPs it costs: its
  own row in its group plus the input column it feeds in every reader, each weighted by the number
  of task combinations that compute it (a group owned by T runs in 2^n − 2^(n−|T|) of them).
  Because that ranking puts expensive neurons first, a FLOPs-aware step additionally stops before
  the all-task FLOPs fall below (1 − sparsity(s)) of the start: the schedule then bounds the
  fraction of FLOPs removed as well as the fraction of neurons (at least one neuron per step).
- In **fixed-target mode** the step that crosses the FLOPs target removes only as many
  (lowest-ranked) neurons as needed.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np

from pam_tf.build import group_layer_name
from pam_tf.cost import input_channel_cost
from pam_tf.plan import Group, Plan
from pam_tf.prune.finetune import Data
from pam_tf.prune.importance import Importance, ImportanceContext, group_layer_names
from pam_tf.prune.state import begin
from pam_tf.prune.surgery import round_keep
from pam_tf.tasks import Task

__all__ = ["neuron_flops", "usage_of", "choose_removal", "keep_from", "narrowed", "all_flops",
           "removed_count", "Ranker", "Selector"]

Keep = dict[str, np.ndarray]  # group layer name -> bool mask of the neurons that stay


# ----- costs ------------------------------------------------------------------------------------
Usage = Callable[[tuple[str, ...]], float]


def usage_of(tasks: Sequence[str], spec: str = "uniform", strict: bool = False) -> Usage:
    """How often a group owned by a task set runs, under a usage mix of combinations: the summed
    weight of the combinations that meet its owners. ``uniform``: every combination once (a
    group owned by k of n tasks runs in 2^n − 2^(n−k)); ``singles``: one task at a time;
    ``"a=3,b=1,a+b=1"``: those weights, every other combination 0 (with `strict`, a task
    not in `tasks` is an error; else it is ignored: one task's net of a run, as in B1)."""
    tasks = tuple(tasks)
    n = len(tasks)
    if spec == "uniform":
        return lambda owners: float(2 ** n - 2 ** (n - len(owners)))
    if spec == "singles":
        return lambda owners: float(len(owners))
    weights: dict[frozenset, float] = {}
    for item in spec.split(","):
        combo, sep, value = item.strip().partition("=")
        names = frozenset(t for t in combo.split("+") if t)
        bad = sorted(names - set(tasks)) if strict else []
        if not sep or not names or bad:
            raise ValueError(f"--combination_weights: {item.strip()!r} is not TASKS=WEIGHT with "
                             f"tasks of {', '.join(tasks)}" + (f" (unknown: {bad})" if bad else ""))
        try:
            weights[names] = float(value)
        except ValueError:
            raise ValueError(f"--combination_weights: weight {value!r} of {combo!r} is not a "
                             "number") from None
    return lambda owners: sum(w for c, w in weights.items() if c & set(owners))


def _fed_flops(plan: Plan, l: int, g: Group, usage: Usage) -> float:
    """FLOPs of the input column one neuron of group g (layer l) feeds in every reader (group of
    layer l+1 or head), × how often that reader runs."""
    hidden = plan.chain.hidden
    if l + 1 < len(hidden):
        nxt, gi = hidden[l + 1], plan.layers[l].index(g)
        return sum(input_channel_cost(nxt.fan_in, plan.in_channels(l + 1, r), nxt.out_positions,
                                      r.width).flops * usage(r.owners)
                   for r in plan.layers[l + 1] if gi in plan.readable(l + 1, r))
    head = plan.chain.head
    return sum(input_channel_cost(head.fan_in, sum(plan.layers[l][i].width
                                                   for i in plan.head_inputs(h.task)),
                                  head.out_positions, h.units).flops * usage((h.task,))
               for h in plan.heads if h.task in g.owners)


def neuron_flops(plan: Plan, usage: Usage | None = None) -> dict[str, np.ndarray]:
    """Per hidden neuron, the FLOPs it costs summed over the task combinations (module doc): its
    own row in its group (the group's cost at width 1) plus its columns in its readers
    (:func:`pam_tf.cost.input_channel_cost`), each × how often it runs (`usage`, default
    :func:`usage_of` uniform: once per combination)."""
    usage = usage or usage_of(plan.tasks)
    out = {}
    for l, (layer, groups) in enumerate(zip(plan.chain.hidden, plan.layers)):
        for g in groups:
            own = layer.cost(plan.in_channels(l, g), 1).flops * usage(g.owners)
            out[group_layer_name(layer, g)] = np.full(
                g.width, float(max(own + _fed_flops(plan, l, g, usage), 1)))
    return out


def all_flops(plan: Plan) -> int:
    """FLOPs of the all-task combination: what the FLOPs fractions and the target refer to."""
    return plan.cost(plan.tasks).flops


# ----- the removal ------------------------------------------------------------------------------
class _Room:
    """How many neurons each group may still lose, and which groups a removal has emptied."""

    def __init__(self, plan: Plan, min_group_width: int, empty_groups: bool,
                 frozen: frozenset[str] = frozenset(), shared_only: bool = False):
        self.plan, self.min_group_width, self.empty_groups = plan, min_group_width, empty_groups
        self.room: dict[str, int] = {}
        self.where: dict[str, tuple[int, int]] = {}
        self.fixed: set[str] = set()  # groups of frozen tasks: nothing may go
        for l, (layer, groups) in enumerate(zip(plan.chain.hidden, plan.layers)):
            for gi, g in enumerate(groups):
                name = group_layer_name(layer, g)
                self.room[name] = max(0, g.width - min_group_width)
                self.where[name] = (l, gi)
                if frozen & set(g.owners) or (shared_only and len(g.owners) == 1):
                    self.room[name] = 0
                    self.fixed.add(name)
        self.emptied: set[tuple[int, int]] = set()

    def can_empty(self, name: str) -> bool:
        """Whether the group's last neuron may go: every group and head reading it still reads
        a group that is not (being) emptied."""
        if not self.empty_groups or self.min_group_width > 1 or self.room[name] != 0 or \
                name in self.fixed:
            return False
        l, gi = self.where[name]  # room 0 with min_group_width 1: this is the group's last neuron
        if (l, gi) in self.emptied:
            return False
        plan = self.plan
        owners = set(plan.layers[l][gi].owners)
        if l + 1 < len(plan.layers):
            readers = [plan.readable(l + 1, r) for r in plan.layers[l + 1]
                       if set(r.owners) <= owners]
        else:
            readers = [plan.head_inputs(t) for t in plan.layers[l][gi].owners]
        return all(any(j != gi and (l, j) not in self.emptied for j in inputs)
                   for inputs in readers)

    def take(self, candidates, quota: int) -> list:
        """Up to `quota` of `candidates` (in order) whose groups have room (or may be emptied)."""
        picked = []
        for e in candidates:
            if len(picked) >= quota:
                break
            name = e[4]
            if self.room[name] > 0:
                self.room[name] -= 1
                picked.append(e)
            elif self.can_empty(name):
                self.emptied.add(self.where[name])
                self.room[name] = -1
                picked.append(e)
        return picked


def _layer_quotas(widths: Sequence[int], n_remove: int) -> list[int]:
    """`n_remove` split over layers in proportion to their widths (largest remainders)."""
    total = sum(widths)
    raw = [n_remove * w / total for w in widths]
    quota = [int(math.floor(r)) for r in raw]
    for l in sorted(range(len(raw)), key=lambda i: (-(raw[i] - quota[i]), i)):
        if sum(quota) >= n_remove:
            break
        quota[l] += 1
    return quota


def choose_removal(plan: Plan, scores: Mapping[str, np.ndarray], n_remove: int, *,
                   ranking: str = "global", min_group_width: int = 1,
                   empty_groups: bool = False,
                   frozen: frozenset[str] = frozenset(),
                   shared_only: bool = False,
                   protected: frozenset[tuple[int, int, int]] = frozenset()
                   ) -> list[tuple[str, int]]:
    """The (group layer name, neuron index) pairs to remove, lowest score first.

    ``"global"`` ranks all hidden neurons together; ``"per_layer"`` removes from each layer a
    share of `n_remove` proportional to its width (largest remainders), ranked within the layer.
    No group drops below `min_group_width`, except that with `empty_groups` a group may lose its
    last neuron (and disappear) when every group and head reading it still reads another group:
    a merged layer then need not keep one neuron per owner set (PAM's exclusive conv1 channels
    would otherwise cost as much as the whole of a pruned single-task conv1). Ties break by
    layer, group and neuron order, so the choice is deterministic; every prefix of the returned
    list leaves a valid plan. Groups owned by a task in `frozen` (its budget has bound) lose
    nothing, nor, with `shared_only` (the paper's official procedure), exclusive groups. A
    neuron in `protected` ((layer, model, neuron) of its source) is never taken.
    """
    entries = []  # (score, layer, group, neuron, name)
    for l, (layer, groups) in enumerate(zip(plan.chain.hidden, plan.layers)):
        for gi, g in enumerate(groups):
            name = group_layer_name(layer, g)
            s = np.asarray(scores[name], np.float64)
            entries.extend((float(s[j]), l, gi, j, name) for j in range(g.width)
                           if (l, *g.sources[j]) not in protected)
    entries.sort(key=lambda e: e[:4])
    room = _Room(plan, min_group_width, empty_groups, frozenset(frozen), shared_only)
    n_remove = max(0, int(n_remove))
    if ranking == "global":
        picked = room.take(entries, n_remove)
    elif ranking == "per_layer":
        picked = []
        for l, q in enumerate(_layer_quotas(plan.widths(), n_remove)):
            picked.extend(room.take([e for e in entries if e[1] == l], q))
        picked.sort(key=lambda e: e[:4])
    else:
        raise ValueError(f"ranking must be 'global' or 'per_layer', got {ranking!r}")
    return [(e[4], e[3]) for e in picked]


def keep_from(plan: Plan, removal: Sequence[tuple[str, int]]) -> Keep:
    """Keep masks of every group of `plan` without the (group layer name, neuron) pairs."""
    keep = {group_layer_name(layer, g): np.ones(g.width, bool)
            for layer, groups in zip(plan.chain.hidden, plan.layers) for g in groups}
    for name, j in removal:
        keep[name][j] = False
    return keep


def narrowed(plan: Plan, keep: Mapping[str, np.ndarray]) -> Plan:
    """The plan after surgery, without touching weights (for cost look-ahead)."""
    layers = []
    for layer, groups in zip(plan.chain.hidden, plan.layers):
        row = []
        for g in groups:
            m = keep[group_layer_name(layer, g)]
            row.append(Group(g.owners, tuple(s for s, k in zip(g.sources, m) if k)))
        layers.append(row)
    return plan.with_layers(layers)


def removed_count(keep: Mapping[str, np.ndarray]) -> int:
    """Neurons the keep masks remove."""
    return int(sum((~m).sum() for m in keep.values()))


# ----- ranking ----------------------------------------------------------------------------------
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


class Ranker:
    """The criterion's ranking of the state a step starts from, remembered for that step only:
    its retries start from the same state and reuse it; after a resume it is recomputed,
    identically, because it runs under ``set_seed(seed + step)``."""

    def __init__(self, importance: Importance, tasks: Sequence[Task], train: Data, seed: int,
                 flops_aware: bool, usage: Usage | None = None):
        self.importance, self.tasks, self.train = importance, tasks, train
        self.seed, self.flops_aware, self.usage = seed, flops_aware, usage
        self._cached: dict[int, dict[str, np.ndarray]] = {}

    def forget(self) -> None:
        """A new step starts: its ranking is computed afresh."""
        self._cached.clear()

    def rank(self, step: int, plan: Plan, weights: Mapping[str, np.ndarray]
             ) -> dict[str, np.ndarray]:
        """Scores per group layer name (lower goes first) of state (plan, weights) for `step`."""
        if step in self._cached:
            return self._cached[step]
        begin(self.seed + step)
        ctx = ImportanceContext(plan, weights, self.tasks, self.train[0], self.train[1],
                                seed=self.seed + step)
        scores = self.importance(ctx)
        _check_scores(plan, scores, self.importance.name)
        names = set(group_layer_names(plan))
        rank = {k: np.asarray(v, np.float64) for k, v in scores.items() if k in names}
        if self.flops_aware:
            cost = neuron_flops(plan, self.usage)
            rank = {k: v / cost[k] for k, v in self.importance.to_positive(rank).items()}
        self._cached = {step: rank}
        return rank


# ----- a step's keep masks ----------------------------------------------------------------------
def _largest_prefix(ok: Callable[[int], bool], lo: int, hi: int) -> int:
    """The largest k in [lo, hi] with ok(k), given ok(lo) and ok monotone decreasing."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _smallest_prefix(ok: Callable[[int], bool], lo: int, hi: int) -> int:
    """The smallest k in [lo, hi] with ok(k), given ok(hi) and ok monotone increasing."""
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


class Selector:
    """Turns a ranking into keep masks under the settings that shape a removal."""

    def __init__(self, *, ranking: str, min_group_width: int, empty_groups: bool, round_to: int,
                 flops_aware: bool, target_flops: float | None, shared_only: bool = False):
        self.ranking, self.min_group_width, self.shared_only = ranking, min_group_width, \
            shared_only
        self.empty_groups, self.round_to = empty_groups, round_to
        self.flops_aware, self.target_flops = flops_aware, target_flops
        self.frozen: frozenset[str] = frozenset()  # tasks whose groups may no longer shrink
        self.protected: frozenset[tuple[int, int, int]] = frozenset()  # neurons that stay

    def removal(self, plan: Plan, rank: Mapping[str, np.ndarray],
                n_remove: int) -> list[tuple[str, int]]:
        """Up to `n_remove` lowest-ranked neurons (:func:`choose_removal`)."""
        return choose_removal(plan, rank, n_remove, ranking=self.ranking,
                              min_group_width=self.min_group_width,
                              empty_groups=self.empty_groups, frozen=self.frozen,
                              shared_only=self.shared_only, protected=self.protected)

    def keep_without(self, plan: Plan, rank: Mapping[str, np.ndarray],
                     removal: Sequence[tuple[str, int]]) -> Keep:
        """Keep masks without `removal`, widths rounded up to a multiple of round_to."""
        keep = keep_from(plan, removal)
        if self.round_to > 1:
            keep = round_keep(keep, rank, self.round_to, self.min_group_width)
        return keep

    def flops_after(self, plan: Plan, rank: Mapping[str, np.ndarray],
                    removal: Sequence[tuple[str, int]]) -> int:
        return all_flops(narrowed(plan, self.keep_without(plan, rank, removal)))

    def select(self, plan: Plan, rank: Mapping[str, np.ndarray], n_remove: int,
               flops_floor: float | None) -> tuple[Keep, int]:
        """Keep masks removing up to n_remove lowest-ranked neurons (FLOPs-aware: only the
        largest prefix, >= 1 neuron, that keeps >= flops_floor; target mode: only as many as
        needed to reach the target); also the number of neurons the ranking offered."""
        removal = self.removal(plan, rank, n_remove)

        def flops(k: int) -> int:
            return self.flops_after(plan, rank, removal[:k])

        limit = len(removal)
        if self.flops_aware and flops_floor is not None and removal and \
                flops(limit) < flops_floor:
            # FLOPs-aware ranking puts expensive neurons first, so a step is also capped at the
            # schedule's fraction of the starting FLOPs: the largest prefix (>= 1 neuron) that
            # keeps at least flops_floor. Without it one step can remove most conv channels.
            limit = _largest_prefix(lambda k: flops(k) >= flops_floor, 1, limit)
        keep = self.keep_without(plan, rank, removal[:limit])
        target = self.target_flops
        if target is not None and removal and all_flops(narrowed(plan, keep)) <= target:
            # smallest prefix that reaches the target
            keep = self.keep_without(plan, rank, removal[:_smallest_prefix(
                lambda k: flops(k) <= target, 0, limit)])
        return keep, len(removal)
