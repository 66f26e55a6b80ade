"""Graph plans (plan format version 2): groups per coupling class instead of per layer.

A chain plan (:mod:`pam_tf.plan`, version 1) holds groups per hidden neuron layer. In a graph
the unit that is grouped is a **coupling class** (:mod:`pam_tf.graph.trace`): every node whose
output is in class K (the Conv2Ds that write it, the depthwise convolutions, adds, activations
and pads that carry it) is split into K's groups, with the same owners and the same neurons.
The read rules carry over from method.md §2 unchanged:

- a Conv2D/Dense group owned by T reads the groups of its input class owned by supersets of T;
- a channel-wise node (depthwise, add, activation, pad, pooling) computes group g of its class
  from group g of its input(s), so it always reads what it needs;
- head t reads the groups of its input class whose owners contain t.

Version-1 plan files keep loading through :func:`load_any_plan`, which returns a chain plan for
them and a :class:`GraphPlan` for version 2.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

from pam_tf import io
from pam_tf.cost import Cost, neuron_layer_cost, total
from pam_tf.graph.trace import HEAD_CLASS, INPUT_CLASS, Graph, Node
from pam_tf.plan import (METHOD_NAME, Group, Head, Plan, PlanError, TaskCombinations,
                         canonical_order)
from pam_tf.tasks import TASK_NAME

GRAPH_PLAN_VERSION = 2


@dataclass(frozen=True)
class GraphPlan(TaskCombinations):
    """A multitask architecture over a traced graph: groups per hidden coupling class."""

    method: str
    tasks: tuple[str, ...]
    graph: Graph
    classes: tuple[tuple[Group, ...], ...]  # one entry per hidden class id
    heads: tuple[Head, ...]
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        validate_graph_plan(self)

    # ----- structure ---------------------------------------------------------------------------
    def groups_of(self, cls: int) -> tuple[Group, ...]:
        """Groups of a class; the input is one fixed group every task owns."""
        if cls == INPUT_CLASS:
            width = self.graph.class_width(INPUT_CLASS)
            return (Group(self.tasks, tuple((0, j) for j in range(width))),)
        if cls == HEAD_CLASS:
            raise PlanError("the head class has no groups (one head per task)")
        return self.classes[cls]

    def group_name(self, node: Node, group: Group) -> str:
        """Layer name of one group of one node in the built model."""
        return f"{node.name}__{group.key}" if node.cls != INPUT_CLASS else node.name

    def class_group_name(self, cls: int, group: Group) -> str:
        """Name of a class's group for keep masks and reports, e.g. 'conv1__a.b'."""
        return f"{self.graph.class_names[cls]}__{group.key}"

    def readable(self, node: Node, group: Group) -> list[int]:
        """Groups of `node`'s input class that its group `group` reads."""
        below = self.groups_of(self.graph.input_class(node))
        if node.kind in ("conv", "dense"):
            own = set(group.owners)
            return [i for i, g in enumerate(below) if own <= set(g.owners)]
        return [self.groups_of(node.cls).index(group)]

    def head_inputs(self, task: str) -> list[int]:
        cls = self.graph.input_class(self.graph.head)
        return [i for i, g in enumerate(self.groups_of(cls)) if task in g.owners]

    def in_channels(self, node: Node, group: Group) -> int:
        below = self.groups_of(self.graph.input_class(node))
        return sum(below[i].width for i in self.readable(node, group))

    def needed(self, combination: Iterable[str]) -> dict[str, list[int]]:
        """Per node, the indices of the groups (of its class) that executing `combination`
        computes: those on a path to its heads, found from the head down."""
        combo = self.normalise_combination(combination)
        graph = self.graph
        need: dict[str, set[int]] = {n.name: set() for n in graph.nodes}
        head_src = graph.head.inputs[0]
        need[head_src] = {i for t in combo for i in self.head_inputs(t)}
        for node in reversed(graph.hidden):
            groups = self.groups_of(node.cls)
            wanted = need[node.name]
            for src in node.inputs:
                if src == "input":
                    continue
                for gi in wanted:  # an Add's inputs share its class: same indices
                    need[src].update(self.readable(node, groups[gi]))
        return {n.name: sorted(need[n.name]) for n in graph.hidden}

    @property
    def layers(self) -> tuple[tuple[Group, ...], ...]:
        """The groups per class: a class plays the role of a chain plan's layer (reports)."""
        return self.classes

    def unit_names(self) -> list[str]:
        """Names of the grouped units (the classes), in order."""
        return list(self.graph.class_names)

    def widths(self) -> list[int]:
        """Total width of each class."""
        return [sum(g.width for g in groups) for groups in self.classes]

    # ----- cost --------------------------------------------------------------------------------
    def group_cost(self, node: Node, gi: int) -> Cost:
        """Cost of one group of one node: convs and Dense by method.md §9, a depthwise group
        (2·k_h·k_w − 1)·H·W·width FLOPs (each output reads one channel), other nodes nothing."""
        group = self.groups_of(node.cls)[gi]
        if node.kind in ("conv", "dense"):
            return neuron_layer_cost(node.fan_in, self.in_channels(node, group),
                                     node.out_positions, group.width)
        if node.kind == "depthwise":
            return neuron_layer_cost(node.fan_in, 1, node.out_positions, group.width)
        return Cost()

    def head_cost(self, task: str) -> Cost:
        head = self.heads[self.tasks.index(task)]
        below = self.groups_of(self.graph.input_class(self.graph.head))
        cin = sum(below[i].width for i in self.head_inputs(task))
        return neuron_layer_cost(self.graph.head.fan_in, cin, 1, head.units)

    def cost(self, combination: Iterable[str]) -> Cost:
        """cost(C): every needed group of every node, plus the heads of C (method.md §2)."""
        combo = self.normalise_combination(combination)
        nodes = {n.name: n for n in self.graph.hidden}
        return total([self.group_cost(nodes[name], gi)
                      for name, idx in self.needed(combo).items() for gi in idx] +
                     [self.head_cost(t) for t in combo])

    def attribution(self, combination: Iterable[str]) -> dict[str, int]:
        """Where a combination's FLOPs come from: owner set → FLOPs of its groups in every
        node, plus "heads". Sums to ``cost(combination).flops``."""
        combo = self.normalise_combination(combination)
        nodes = {n.name: n for n in self.graph.hidden}
        out: dict[str, int] = {}
        for name, idx in self.needed(combo).items():
            for gi in idx:
                group = self.groups_of(nodes[name].cls)[gi]
                if nodes[name].cls < 0:
                    continue
                key = "+".join(group.owners)
                out[key] = out.get(key, 0) + self.group_cost(nodes[name], gi).flops
        out["heads"] = sum(self.head_cost(t).flops for t in combo)
        return out

    # ----- serialisation -----------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "version": GRAPH_PLAN_VERSION, "method": self.method, "tasks": list(self.tasks),
            "graph": self.graph.to_json(),
            "classes": [{"name": self.graph.class_names[c],
                         "groups": [{"owners": list(g.owners),
                                     "sources": [list(s) for s in g.sources]} for g in groups]}
                        for c, groups in enumerate(self.classes)],
            "heads": [{"task": h.task, "units": h.units, "activation": h.activation,
                       "source": h.source} for h in self.heads],
            "meta": self.meta,
        }

    @staticmethod
    def from_json(d: dict, where: str = "plan") -> "GraphPlan":
        if not isinstance(d, dict) or d.get("version") != GRAPH_PLAN_VERSION:
            raise PlanError(f"{where}: expected a graph plan (version {GRAPH_PLAN_VERSION}), got "
                            f"version {d.get('version') if isinstance(d, dict) else None!r}")
        try:
            graph = Graph.from_json(d["graph"])
            classes = tuple(tuple(Group(tuple(g["owners"]),
                                        tuple((int(m), int(i)) for m, i in g["sources"]))
                                  for g in c["groups"]) for c in d["classes"])
            heads = tuple(Head(h["task"], int(h["units"]), h["activation"], int(h["source"]))
                          for h in d["heads"])
            if [c["name"] for c in d["classes"]] != list(graph.class_names):
                raise PlanError(f"{where}: class names do not match the graph's")
            return GraphPlan(d["method"], tuple(d["tasks"]), graph, classes, heads,
                             dict(d.get("meta", {})))
        except PlanError as e:
            raise PlanError(f"{where}: {e}") from None
        except (KeyError, TypeError, ValueError) as e:
            raise PlanError(f"{where}: malformed graph plan ({type(e).__name__}: {e})") from e

    def save(self, path: str) -> None:
        io.write_json(path, self.to_json())

    def with_classes(self, classes: Sequence[Sequence[Group]], **meta) -> "GraphPlan":
        """A copy with new groups per class (empty groups dropped, canonical order)."""
        ordered = tuple(canonical_order(self.tasks, [g for g in groups if g.width])
                        for groups in classes)
        return replace(self, classes=ordered, meta={**self.meta, **meta})


def load_any_plan(path: str) -> "Plan | GraphPlan":
    """A plan file of either format: version 1 (chain) or version 2 (graph)."""
    d = io.read_json(path, PlanError, "plan file")
    if isinstance(d, dict) and d.get("version") == GRAPH_PLAN_VERSION:
        return GraphPlan.from_json(d, where=path)
    return Plan.from_json(d, where=path)


def validate_graph_plan(plan: GraphPlan) -> None:
    """Raise PlanError unless the plan is self-consistent and buildable."""
    if not isinstance(plan.method, str) or not METHOD_NAME.match(plan.method):
        raise PlanError(f"method {plan.method!r} must match {METHOD_NAME.pattern}")
    tasks = plan.tasks
    if not tasks or len(set(tasks)) != len(tasks) or \
            not all(isinstance(t, str) and TASK_NAME.match(t) for t in tasks):
        raise PlanError(f"tasks {list(tasks)} must be unique names matching {TASK_NAME.pattern}")
    graph = plan.graph
    if len(plan.classes) != len(graph.class_names):
        raise PlanError(f"the plan has {len(plan.classes)} classes, the graph "
                        f"{len(graph.class_names)}")
    pos = {t: i for i, t in enumerate(tasks)}
    for c, groups in enumerate(plan.classes):
        name, width = graph.class_names[c], graph.class_width(c)
        if not groups:
            raise PlanError(f"class '{name}': no groups (every channel was removed)")
        seen_owners, seen_sources = set(), set()
        for g in groups:
            if not g.owners or any(t not in pos for t in g.owners) or \
                    list(g.owners) != sorted(set(g.owners), key=pos.get):
                raise PlanError(f"class '{name}' group '{g.key}': owners must be known tasks, "
                                f"unique, in task order {list(tasks)}")
            if g.owners in seen_owners or g.width < 1:
                raise PlanError(f"class '{name}': group '{g.key}' is empty or appears twice")
            seen_owners.add(g.owners)
            for m, i in g.sources:
                if not (0 <= m < len(plan.heads)) or not (0 <= i < width) or \
                        (m, i) in seen_sources:
                    raise PlanError(f"class '{name}' group '{g.key}': source ({m}, {i}) is "
                                    f"outside {len(plan.heads)} models × {width} channels or "
                                    "repeated")
                seen_sources.add((m, i))
        if tuple(groups) != canonical_order(tasks, groups):
            raise PlanError(f"class '{name}': groups are not in canonical order")
    for node in graph.hidden:
        if node.kind in ("conv", "dense") and node.cls >= 0:
            for g in plan.classes[node.cls]:
                if plan.in_channels(node, g) == 0:
                    raise PlanError(f"node '{node.name}' group '{g.key}': reads nothing (no "
                                    f"group of its input is owned by a superset of "
                                    f"{{{', '.join(g.owners)}}})")
    if [h.task for h in plan.heads] != list(tasks):
        raise PlanError(f"heads {[h.task for h in plan.heads]} must be one per task, in task "
                        f"order {list(tasks)}")
    for h in plan.heads:
        if h.units < 1 or not plan.head_inputs(h.task):
            raise PlanError(f"head '{h.task}': needs units >= 1 and a group of its input owned "
                            f"by '{h.task}'")


def graph_no_merge_plan(graph: Graph, tasks: Sequence[str], head_units: Sequence[int],
                        head_activations: Sequence[str]) -> GraphPlan:
    """B1 over a graph: each task owns exactly its own network's channels in every class."""
    classes = tuple(canonical_order(tasks, [
        Group((t,), tuple((m, i) for i in range(graph.class_width(c))))
        for m, t in enumerate(tasks)]) for c in range(len(graph.class_names)))
    heads = tuple(Head(t, int(u), a, i) for i, (t, u, a) in
                  enumerate(zip(tasks, head_units, head_activations)))
    return GraphPlan("none", tuple(tasks), graph, classes, heads)


def graph_shared_plan(graph: Graph, tasks: Sequence[str], head_units: Sequence[int],
                      head_activations: Sequence[str]) -> GraphPlan:
    """Fully shared over a graph: per class one all-task group holding all n networks'
    channels (weights block-diagonal, so it still computes every network exactly)."""
    classes = tuple((Group(tuple(tasks), tuple((m, i) for m in range(len(tasks))
                                               for i in range(graph.class_width(c)))),)
                    for c in range(len(graph.class_names)))
    heads = tuple(Head(t, int(u), a, i) for i, (t, u, a) in
                  enumerate(zip(tasks, head_units, head_activations)))
    return GraphPlan("shared", tuple(tasks), graph, classes, heads)


def graph_split_by_task(plan: GraphPlan) -> list[GraphPlan]:
    """B1's per-task split: a plan without shared groups as one one-task plan per task, each
    task's channels renumbered as coming from model 0; weight names are unchanged."""
    shared = [g.key for groups in plan.classes for g in groups if len(g.owners) != 1]
    if shared:
        raise PlanError(f"plan of method '{plan.method}' shares group(s) {shared[:3]}: only a "
                        "plan without shared groups splits into one plan per task")
    return [GraphPlan(plan.method, (h.task,), plan.graph,
                      tuple(tuple(Group(g.owners, tuple((0, n) for _, n in g.sources))
                                  for g in groups if g.owners == (h.task,))
                            for groups in plan.classes),
                      (Head(h.task, h.units, h.activation, 0),))
            for h in plan.heads]


__all__ = ["GraphPlan", "GRAPH_PLAN_VERSION", "load_any_plan", "validate_graph_plan",
           "graph_no_merge_plan", "graph_shared_plan", "graph_split_by_task"]
