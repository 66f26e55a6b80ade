"""Coupled removal: physically remove channels of a coupling class everywhere it appears.

Removing channel j of group G of class K narrows every node of K at once: the Conv2D/Dense
producers of K lose output column j, the depthwise convolutions of K lose their filter j, the
adds, activations, pads and pools of K simply carry one channel less; every Conv2D/Dense reader
of K (and every head reading it) loses the input rows fed by j (for a Dense after Flatten, rows
p·w_G + j of G's block). Inside a class a channel only meets itself (every node in it is
channel-wise), so it reaches the rest of the network only through those readers: the narrow
model computes exactly what the full model computes with the readers' rows zeroed.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from pam_tf.graph.build import check_graph_weights
from pam_tf.graph.plan import GraphPlan
from pam_tf.graph.trace import INPUT_CLASS, Node
from pam_tf.plan import Group, PlanError
from pam_tf.prune.surgery import keep_mask, surviving_rows

__all__ = ["full_class_keep", "remove_class_channels", "unread_class_groups",
           "drop_unread_class_groups"]


def full_class_keep(plan: GraphPlan) -> dict[str, np.ndarray]:
    """All-True keep masks, one per group of every hidden class ('<class>__<owners>')."""
    return {plan.class_group_name(c, g): np.ones(g.width, bool)
            for c, groups in enumerate(plan.classes) for g in groups}


def _class_masks(plan: GraphPlan, keep: Mapping[str, np.ndarray]) -> list[list[np.ndarray]]:
    known = full_class_keep(plan)
    unknown = sorted(set(keep) - set(known))
    if unknown:
        raise PlanError(f"keep mask for unknown class group(s) {unknown[:3]}; the plan's are "
                        f"{sorted(known)[:6]}... (heads and the input cannot be pruned)")
    out = []
    for c, groups in enumerate(plan.classes):
        row = []
        for g in groups:
            row.append(keep_mask(keep, known, plan.class_group_name(c, g), g.width))
        out.append(row)
    return out


def _input_rows(plan: GraphPlan, node: Node, readable: list[int],
                masks: list[list[np.ndarray]]) -> np.ndarray | None:
    """Surviving input rows of a Conv2D/Dense group (None: it reads the fixed model input)."""
    cls = plan.graph.input_class(node)
    if cls == INPUT_CLASS:
        return None
    return surviving_rows(masks[cls], readable, node.fan_in if node.kind == "dense" else 1)


def remove_class_channels(plan: GraphPlan, weights: Mapping[str, np.ndarray],
                          keep: Mapping[str, np.ndarray], *, meta: dict | None = None
                          ) -> tuple[GraphPlan, dict[str, np.ndarray]]:
    """Drop every class channel whose keep flag is False, in every node of its class.

    `keep` maps class group names (:meth:`GraphPlan.class_group_name`) to bool masks; groups
    not named keep everything. A group left empty disappears; the new plan is re-validated, so
    a reader left with no input is refused with a PlanError. Heads are never narrowed.
    """
    check_graph_weights(plan, dict(weights))
    masks = _class_masks(plan, keep)
    new: dict[str, np.ndarray] = {}
    for node in plan.graph.hidden:
        if node.kind not in ("conv", "dense", "depthwise"):
            continue
        for gi, g in enumerate(plan.classes[node.cls]):
            m = masks[node.cls][gi]
            if not m.any():
                continue
            name = plan.group_name(node, g)
            kernel = np.asarray(weights[f"{name}/kernel"])
            if node.kind == "depthwise":
                kernel = kernel[:, :, m, :]
            else:
                kernel = kernel[..., m]
                rows = _input_rows(plan, node, plan.readable(node, g), masks)
                if rows is not None:
                    kernel = kernel[:, :, rows, :] if node.kind == "conv" else kernel[rows]
            new[f"{name}/kernel"] = np.ascontiguousarray(kernel, np.float32)
            new[f"{name}/bias"] = np.asarray(weights[f"{name}/bias"], np.float32)[m]
    for h in plan.heads:
        rows = _input_rows(plan, plan.graph.head, plan.head_inputs(h.task), masks)
        kernel = np.asarray(weights[f"{h.task}/kernel"])
        new[f"{h.task}/kernel"] = np.ascontiguousarray(
            kernel if rows is None else kernel[rows], np.float32)
        new[f"{h.task}/bias"] = np.asarray(weights[f"{h.task}/bias"], np.float32)
    classes = [[Group(g.owners, tuple(s for s, k in zip(g.sources, m) if k))
                for g, m in zip(groups, masks[c])] for c, groups in enumerate(plan.classes)]
    new_plan = plan.with_classes(classes, **(meta or {}))
    check_graph_weights(new_plan, new, where="weights after coupled removal")
    return new_plan, new


def unread_class_groups(plan: GraphPlan) -> list[str]:
    """Class groups that no node of their class needs for any combination: a merge can leave
    e.g. an exclusive {t} group of an expansion class whose projection has no group {t} or
    below to read it. They cost nothing in any combination and change no output."""
    needed = plan.needed(plan.tasks)
    used: dict[int, set[int]] = {}
    for node in plan.graph.hidden:
        if node.cls >= 0:
            used.setdefault(node.cls, set()).update(needed[node.name])
    return [plan.class_group_name(c, g) for c, groups in enumerate(plan.classes)
            for gi, g in enumerate(groups) if gi not in used.get(c, set())]


def drop_unread_class_groups(plan: GraphPlan, weights: Mapping[str, np.ndarray]
                             ) -> tuple[GraphPlan, dict[str, np.ndarray], list[str]]:
    """Remove every unread class group (repeatedly: removing one can orphan another). Exact:
    no output changes."""
    dropped: list[str] = []
    weights = dict(weights)
    while True:
        names = unread_class_groups(plan)
        if not names:
            return plan, weights, dropped
        widths = {k: len(m) for k, m in full_class_keep(plan).items()}
        plan, weights = remove_class_channels(plan, weights,
                                              {n: np.zeros(widths[n], bool) for n in names})
        dropped.extend(names)
