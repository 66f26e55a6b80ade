"""The plan: the one data structure that flows through pam-tf's stages.

A plan says, for every hidden neuron layer of the shared chain, which **groups** of neurons exist,
which set of tasks owns each group, and where each neuron came from; plus one head per task. It
fully determines the multitask architecture (method.md §2):

- executing a task combination C computes every group whose owners meet C, and the heads of C;
- a group owned by T reads the previous layer's groups owned by supersets of T (so its inputs are
  always computed when it is); head t reads the last hidden groups whose owners contain t.

Every merge method is a producer of plans (PAM, no merging = B1, fully shared, later MTZ), the
pruner turns a plan into a smaller plan, and one builder (:mod:`pam_tf.build`) turns any plan plus
weights into a Keras model. Costs of every combination follow from the plan alone.

Groups are kept in one canonical order per layer: larger owner sets first, then by task order.
That order is also the input order of every group that reads them (method.md §6).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

from pam_tf.chain import Chain, TraceError
from pam_tf.cost import Cost, total
from pam_tf import io
from pam_tf.tasks import TASK_NAME

PLAN_VERSION = 1
METHOD_NAME = TASK_NAME  # same rule: both name files; which methods exist: pam_tf.methods


class PlanError(ValueError):
    """A plan (or plan file) is inconsistent; the message says where and what was expected."""


@dataclass(frozen=True)
class Group:
    """Neurons of one layer owned by one set of tasks.

    `sources` holds, per neuron, (model index, neuron index) in the original single-task
    networks: provenance, and how inherited weights are sliced. Its length is the group's width.
    """

    owners: tuple[str, ...]
    sources: tuple[tuple[int, int], ...]

    @property
    def width(self) -> int:
        return len(self.sources)

    @property
    def key(self) -> str:
        """Name of the group in layer names and weight keys, e.g. 'a.b'."""
        return ".".join(self.owners)


@dataclass(frozen=True)
class Head:
    """The output layer of one task."""

    task: str
    units: int
    activation: str
    source: int  # index of the single-task model whose head initialises it


class TaskCombinations:
    """Task combinations of a plan with a ``tasks`` tuple (chain and graph plans alike)."""

    tasks: tuple[str, ...]

    def normalise_combination(self, combination: Iterable[str]) -> tuple[str, ...]:
        """Tasks of a combination in plan order; error on unknown or empty."""
        combo = set(combination)
        unknown = combo - set(self.tasks)
        if unknown:
            raise PlanError(f"unknown task(s) {sorted(unknown)}; the plan's tasks are "
                            f"{list(self.tasks)}")
        if not combo:
            raise PlanError("a task combination must name at least one task")
        return tuple(t for t in self.tasks if t in combo)

    def combinations(self) -> list[tuple[str, ...]]:
        """All 2^n − 1 non-empty task combinations, by size then task order."""
        return [c for k in range(1, len(self.tasks) + 1)
                for c in itertools.combinations(self.tasks, k)]


@dataclass(frozen=True)
class Plan(TaskCombinations):
    """A multitask architecture over the shared chain (see module docstring)."""

    method: str
    tasks: tuple[str, ...]
    chain: Chain
    layers: tuple[tuple[Group, ...], ...]
    heads: tuple[Head, ...]
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        validate(self)

    # ----- structure ---------------------------------------------------------------------------
    def task_index(self, task: str) -> int:
        return self.tasks.index(task)

    def readable(self, layer: int, group: Group) -> list[int]:
        """Indices of the groups of layer-1 that `group` (of `layer`) reads."""
        if layer == 0:
            return []
        own = set(group.owners)
        return [i for i, g in enumerate(self.layers[layer - 1]) if own <= set(g.owners)]

    def head_inputs(self, task: str) -> list[int]:
        """Indices of the last hidden layer's groups that head `task` reads."""
        return [i for i, g in enumerate(self.layers[-1]) if task in g.owners]

    def needed(self, combination: Iterable[str]) -> list[list[int]]:
        """Per layer, the indices of the groups executing `combination` computes: those on a
        path to its heads, from the last layer down (the groups its heads read, then what they
        read). This is every group whose owners meet the combination, except one that only
        groups of other tasks read (e.g. a {digit, parity} group below a lone {digit} reader):
        nothing of the combination needs it, and an exported file does not compute it."""
        combo = set(self.normalise_combination(combination))
        last = [i for i, g in enumerate(self.layers[-1]) if combo & set(g.owners)]
        out = [last]
        for l in range(len(self.layers) - 1, 0, -1):
            read = {j for i in out[0] for j in self.readable(l, self.layers[l][i])}
            out.insert(0, sorted(read))
        return out

    def in_channels(self, layer: int, group: Group) -> int:
        """Input channels of a group (features per position for a dense layer)."""
        if layer == 0:
            return self.chain.hidden[0].in_channels
        return sum(self.layers[layer - 1][i].width for i in self.readable(layer, group))

    def unit_names(self) -> list[str]:
        """Names of the grouped units (the hidden layers), in order."""
        return [layer.name for layer in self.chain.hidden]

    def widths(self) -> list[int]:
        """Total width of each hidden layer."""
        return [sum(g.width for g in groups) for groups in self.layers]

    # ----- cost --------------------------------------------------------------------------------
    def group_cost(self, layer: int, index: int) -> Cost:
        group = self.layers[layer][index]
        return self.chain.hidden[layer].cost(self.in_channels(layer, group), group.width)

    def head_cost(self, task: str) -> Cost:
        head = self.heads[self.task_index(task)]
        cin = sum(self.layers[-1][i].width for i in self.head_inputs(task))
        return self.chain.head.cost(cin, head.units)

    def cost(self, combination: Iterable[str]) -> Cost:
        """cost(C) = Σ_l Σ_{T∩C≠∅} cost(G_l[T]) + Σ_{t∈C} cost(head_t)   (method.md §2)."""
        combo = self.normalise_combination(combination)
        needed = self.needed(combo)
        return total([self.group_cost(l, i) for l, idx in enumerate(needed) for i in idx] +
                     [self.head_cost(t) for t in combo])

    def attribution(self, combination: Iterable[str]) -> dict[str, int]:
        """Where a combination's FLOPs come from: owner set ("a+b", ...) → FLOPs of its groups
        in every layer, plus "heads". Sums to ``cost(combination).flops``."""
        combo = self.normalise_combination(combination)
        out: dict[str, int] = {}
        for l, idx in enumerate(self.needed(combo)):
            for i in idx:
                key = "+".join(self.layers[l][i].owners)
                out[key] = out.get(key, 0) + self.group_cost(l, i).flops
        out["heads"] = sum(self.head_cost(t).flops for t in combo)
        return out

    # ----- serialisation -----------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "version": PLAN_VERSION,
            "method": self.method,
            "tasks": list(self.tasks),
            "chain": self.chain.to_json(),
            "layers": [{"name": self.chain.hidden[l].name,
                        "groups": [{"owners": list(g.owners),
                                    "sources": [list(s) for s in g.sources]} for g in groups]}
                       for l, groups in enumerate(self.layers)],
            "heads": [{"task": h.task, "units": h.units, "activation": h.activation,
                       "source": h.source} for h in self.heads],
            "meta": self.meta,
        }

    @staticmethod
    def from_json(d: dict, where: str = "plan") -> "Plan":
        """Parse and validate; errors say which field of which layer is wrong."""
        if not isinstance(d, dict):
            raise PlanError(f"{where}: expected a JSON object")
        version = d.get("version")
        if version != PLAN_VERSION:
            hint = (" (a graph plan of a residual/depthwise net: read it with "
                    "pam_tf.graph.plan.load_any_plan)") if version == 2 else ""
            raise PlanError(f"{where}: plan version {version!r} is not supported (expected "
                            f"{PLAN_VERSION}){hint}")
        for key in ("method", "tasks", "chain", "layers", "heads"):
            if key not in d:
                raise PlanError(f"{where}: missing field '{key}'")
        try:
            chain = Chain.from_json(d["chain"])
            layers = []
            for l, layer in enumerate(d["layers"]):
                layers.append(tuple(
                    Group(owners=tuple(g["owners"]),
                          sources=tuple((int(m), int(i)) for m, i in g["sources"]))
                    for g in layer["groups"]))
            heads = tuple(Head(task=h["task"], units=int(h["units"]),
                               activation=h["activation"], source=int(h["source"]))
                          for h in d["heads"])
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, PlanError):
                raise
            raise PlanError(f"{where}: malformed plan ({type(e).__name__}: {e})") from e
        if [x.get("name") for x in d["layers"]] != [x.name for x in chain.hidden]:
            raise PlanError(f"{where}: layer names {[x.get('name') for x in d['layers']]} do not "
                            f"match the chain's hidden layers {[x.name for x in chain.hidden]}")
        try:
            return Plan(method=d["method"], tasks=tuple(d["tasks"]), chain=chain,
                        layers=tuple(layers), heads=heads, meta=dict(d.get("meta", {})))
        except PlanError as e:
            raise PlanError(f"{where}: {e}") from None

    def save(self, path: str) -> None:
        io.write_json(path, self.to_json())

    @staticmethod
    def load(path: str) -> "Plan":
        return Plan.from_json(io.read_json(path, PlanError, "plan file"), where=path)

    def with_layers(self, layers: Sequence[Sequence[Group]], **meta) -> "Plan":
        """A copy with new groups (e.g. after pruning), groups put in canonical order."""
        ordered = tuple(canonical_order(self.tasks, [g for g in groups if g.width])
                        for groups in layers)
        return replace(self, layers=ordered, meta={**self.meta, **meta})


def canonical_order(tasks: Sequence[str], groups: Iterable[Group]) -> tuple[Group, ...]:
    """Larger owner sets first, then task order: the one input order used everywhere."""
    pos = {t: i for i, t in enumerate(tasks)}
    return tuple(sorted(groups, key=lambda g: (-len(g.owners), [pos[t] for t in g.owners])))


def validate(plan: Plan) -> None:
    """Raise PlanError unless the plan is self-consistent and buildable."""
    if not isinstance(plan.method, str) or not METHOD_NAME.match(plan.method):
        raise PlanError(f"method {plan.method!r} must match {METHOD_NAME.pattern} (it names the "
                        "exported files)")
    tasks = plan.tasks
    if not tasks:
        raise PlanError("a plan needs at least one task")
    for t in tasks:
        if not isinstance(t, str) or not TASK_NAME.match(t):
            raise PlanError(f"task name {t!r} must match {TASK_NAME.pattern} (it names files, "
                            "layers and outputs)")
    if len(set(tasks)) != len(tasks):
        raise PlanError(f"task names must be unique: {list(tasks)}")
    hidden = plan.chain.hidden
    if len(plan.layers) != len(hidden):
        raise PlanError(f"the plan has {len(plan.layers)} layers, the chain {len(hidden)} "
                        "hidden neuron layers")
    n_models = len(plan.heads)
    pos = {t: i for i, t in enumerate(tasks)}
    for l, groups in enumerate(plan.layers):
        name = hidden[l].name
        if not groups:
            raise PlanError(f"layer '{name}': no groups (every neuron was removed)")
        seen_owners, seen_sources = set(), set()
        for g in groups:
            if not g.owners:
                raise PlanError(f"layer '{name}': a group has no owners")
            bad = [t for t in g.owners if t not in pos]
            if bad:
                raise PlanError(f"layer '{name}' group '{g.key}': unknown owner task(s) {bad}")
            if list(g.owners) != sorted(set(g.owners), key=pos.get):
                raise PlanError(f"layer '{name}' group '{g.key}': owners must be unique and in "
                                f"task order {list(tasks)}")
            if g.owners in seen_owners:
                raise PlanError(f"layer '{name}': two groups owned by '{g.key}'")
            seen_owners.add(g.owners)
            if g.width < 1:
                raise PlanError(f"layer '{name}' group '{g.key}': empty group")
            for m, i in g.sources:
                if not (0 <= m < n_models) or not (0 <= i < hidden[l].width):
                    raise PlanError(f"layer '{name}' group '{g.key}': source neuron ({m}, {i}) "
                                    f"is outside {n_models} models × {hidden[l].width} neurons")
                if (m, i) in seen_sources:
                    raise PlanError(f"layer '{name}': source neuron ({m}, {i}) appears twice")
                seen_sources.add((m, i))
            if l > 0 and plan.in_channels(l, g) == 0:
                raise PlanError(f"layer '{name}' group '{g.key}': reads nothing (no group of "
                                f"layer '{hidden[l - 1].name}' is owned by a superset of "
                                f"{{{', '.join(g.owners)}}})")
        if tuple(groups) != canonical_order(tasks, groups):
            raise PlanError(f"layer '{name}': groups are not in canonical order "
                            f"(larger owner sets first, then task order)")
    if [h.task for h in plan.heads] != list(tasks):
        raise PlanError(f"heads {[h.task for h in plan.heads]} must be one per task, in task "
                        f"order {list(tasks)}")
    for h in plan.heads:
        if h.units < 1:
            raise PlanError(f"head '{h.task}': units must be >= 1")
        if not plan.head_inputs(h.task):
            raise PlanError(f"head '{h.task}': no group of the last hidden layer "
                            f"'{hidden[-1].name}' is owned by '{h.task}'")


# ----- trivial producers ---------------------------------------------------------------------
def _heads(tasks: Sequence[str], head_units: Sequence[int],
           head_activations: Sequence[str]) -> tuple[Head, ...]:
    return tuple(Head(t, int(u), a, i) for i, (t, u, a) in
                 enumerate(zip(tasks, head_units, head_activations)))


def no_merge_plan(chain: Chain, tasks: Sequence[str], head_units: Sequence[int],
                  head_activations: Sequence[str]) -> Plan:
    """B1: each task owns exactly its own network's neurons; nothing is shared."""
    layers = []
    for layer in chain.hidden:
        layers.append(canonical_order(tasks, [
            Group((t,), tuple((m, i) for i in range(layer.width))) for m, t in enumerate(tasks)]))
    return Plan("none", tuple(tasks), chain, tuple(layers),
                _heads(tasks, head_units, head_activations))


def shared_plan(chain: Chain, tasks: Sequence[str], head_units: Sequence[int],
                head_activations: Sequence[str]) -> Plan:
    """Fully shared: all n networks' neurons in one all-task group per layer (block-diagonal)."""
    layers = tuple((Group(tuple(tasks), tuple((m, i) for m in range(len(tasks))
                                              for i in range(layer.width))),)
                   for layer in chain.hidden)
    return Plan("shared", tuple(tasks), chain, layers,
                _heads(tasks, head_units, head_activations))


def plan_from_owners(chain: Chain, tasks: Sequence[str], head_units: Sequence[int],
                     head_activations: Sequence[str],
                     owners: Sequence[Sequence[frozenset[int]]], method: str = "pam",
                     meta: dict | None = None) -> Plan:
    """Turn per-layer owner sets of the pooled neurons into a plan.

    owners[l][m·d_l + i] is the set of task indices owning neuron i of model m in layer l (empty:
    dropped). A group that would read nothing (no superset group below it survived) carries no
    information about the input and is dropped too; `meta['dropped_unreadable']` counts them.
    A group that nothing above reads is dropped as well (`meta['dropped_unread']`).
    """
    layers: list[tuple[Group, ...]] = []
    dropped = 0
    for l, layer in enumerate(chain.hidden):
        d = layer.width
        if len(owners[l]) != len(tasks) * d:
            raise PlanError(f"layer '{layer.name}': {len(owners[l])} owner sets for "
                            f"{len(tasks)} models × {d} neurons")
        by_owner: dict[tuple[str, ...], list[tuple[int, int]]] = {}
        for k, own in enumerate(owners[l]):
            if own:
                key = tuple(tasks[t] for t in sorted(own))
                by_owner.setdefault(key, []).append((k // d, k % d))
        groups = canonical_order(tasks, [Group(o, tuple(s)) for o, s in by_owner.items()])
        if l > 0:
            below = layers[-1]
            keep = [g for g in groups if any(set(g.owners) <= set(b.owners) for b in below)]
            dropped += sum(g.width for g in groups) - sum(g.width for g in keep)
            groups = tuple(keep)
        layers.append(groups)
    # A group that no group of the next layer reads (none is owned by a subset of its owners)
    # costs FLOPs and changes no output: drop it, from the top down.
    unread = 0
    for l in range(len(layers) - 2, -1, -1):
        above = layers[l + 1]
        keep = [g for g in layers[l] if any(set(a.owners) <= set(g.owners) for a in above)]
        unread += sum(g.width for g in layers[l]) - sum(g.width for g in keep)
        layers[l] = tuple(keep)
    return Plan(method, tuple(tasks), chain, tuple(layers),
                _heads(tasks, head_units, head_activations),
                meta={**(meta or {}), "dropped_unreadable": dropped, "dropped_unread": unread})


__all__ = ["Plan", "Group", "Head", "PlanError", "TraceError", "PLAN_VERSION", "no_merge_plan",
           "shared_plan", "plan_from_owners", "canonical_order", "validate", "split_by_task",
           "combine_single_task_plans"]


def combine_single_task_plans(plans: Sequence[Plan], method: str = "none") -> Plan:
    """B1 after pruning: n one-task plans (each pruned alone) side by side as one no-merge plan.

    Plan i's neurons come from model 0 of its own plan; here they come from model i. Weight
    names do not change (a group of task t is named after t in both), so the weights of the
    single-task plans simply merge into one dict.
    """
    if not plans:
        raise PlanError("no plans to combine")
    chain = plans[0].chain
    tasks = []
    for p in plans:
        if len(p.tasks) != 1:
            raise PlanError(f"expected one-task plans, got tasks {list(p.tasks)}")
        if p.chain.hidden != chain.hidden or p.chain.input_shape != chain.input_shape:
            raise PlanError(f"plan of task '{p.tasks[0]}' has another chain than "
                            f"'{plans[0].tasks[0]}'")
        tasks.append(p.tasks[0])
    layers = []
    for l in range(len(chain.hidden)):
        layers.append(canonical_order(tasks, [
            Group(g.owners, tuple((i, n) for _, n in g.sources))
            for i, p in enumerate(plans) for g in p.layers[l]]))
    heads = tuple(Head(p.heads[0].task, p.heads[0].units, p.heads[0].activation, i)
                  for i, p in enumerate(plans))
    return Plan(method, tuple(tasks), chain, tuple(layers), heads,
                meta={"combined_from": [p.meta for p in plans]})


def split_by_task(plan: Plan) -> list[Plan]:
    """The inverse of :func:`combine_single_task_plans`: a plan in which nothing is shared (every
    group has one owner) as one one-task plan per task, each reading only its own groups.

    Plan t's neurons come from model 0 (its own network), as in :func:`no_merge_plan` of that
    network alone; group and weight names are unchanged, so each plan's weights are the subset
    of the whole plan's weights that its layers name."""
    shared = [g.key for groups in plan.layers for g in groups if len(g.owners) != 1]
    if shared:
        raise PlanError(f"plan of method '{plan.method}' shares group(s) {shared[:3]} between "
                        "tasks: only a plan without shared groups splits into one plan per task")
    out = []
    for h in plan.heads:
        layers = tuple(tuple(Group(g.owners, tuple((0, n) for _, n in g.sources))
                             for g in groups if g.owners == (h.task,))
                       for groups in plan.layers)
        out.append(Plan(plan.method, (h.task,), plan.chain, layers,
                        (Head(h.task, h.units, h.activation, 0),)))
    return out
