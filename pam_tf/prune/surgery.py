"""Surgery: physically remove neurons from a plan and its weights (narrower groups).

tfmot only zeroes weights inside dense tensors, so FLOPs of an exported model never drop
(stack.md); pam-tf removes neurons itself. Removing neuron j of group G of layer l means:

- G's kernel loses column j and its bias entry j, and G's ``sources`` lose entry j;
- every reader of G (the groups of layer l+1 that read G, or the heads when l is the last hidden
  layer) loses the kernel input rows fed by neuron j. A reader's input is the concatenation of
  its readable groups in canonical order; for a conv reader that is channels, for a dense reader
  after Flatten each group is flattened on its own, so group G's block holds rows p·w_G + k
  (p = spatial position, k = neuron within G) and neuron j owns rows {p·w_G + j}.

Because the hidden activation of a removed neuron would have been multiplied by a zero gate, the
narrower model computes exactly what the masked model computes (up to float summation order).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from pam_tf.build import check_weights, group_layer_name
from pam_tf.plan import Group, Plan, PlanError

__all__ = ["remove_neurons", "round_keep", "full_keep", "unread_groups", "drop_unread_groups"]


def full_keep(plan: Plan) -> dict[str, np.ndarray]:
    """A keep mask of all True for every hidden group."""
    return {group_layer_name(layer, g): np.ones(g.width, bool)
            for layer, groups in zip(plan.chain.hidden, plan.layers) for g in groups}


def _masks(plan: Plan, keep: Mapping[str, np.ndarray]) -> list[list[np.ndarray]]:
    known = full_keep(plan)
    unknown = sorted(set(keep) - set(known))
    if unknown:
        raise PlanError(f"keep mask for unknown group layer(s) {unknown}; the plan's group "
                        f"layers are {sorted(known)} (heads cannot be pruned)")
    out = []
    for layer, groups in zip(plan.chain.hidden, plan.layers):
        row = []
        for g in groups:
            name = group_layer_name(layer, g)
            row.append(keep_mask(keep, known, name, g.width))
        out.append(row)
    return out


def keep_mask(keep: Mapping[str, np.ndarray], known: Mapping[str, np.ndarray], name: str,
              width: int) -> np.ndarray:
    """The keep mask of group `name` (all True where `keep` does not name it), checked to be a
    bool array of the group's width (chain and graph surgery alike)."""
    m = np.asarray(keep.get(name, known[name]))
    if m.shape != (width,) or m.dtype != bool:
        raise PlanError(f"keep mask of '{name}' must be a bool array of shape ({width},), got "
                        f"{m.dtype} {m.shape}")
    return m


def surviving_rows(masks_below: Sequence[np.ndarray], readable: Sequence[int],
                   reps: int) -> np.ndarray:
    """Bool over a reader's input rows: which survive. A dense reader of a flattened conv
    output has `reps` positions per channel; np.tile repeats the group's mask once per
    position (rows p·w_g + k)."""
    return np.concatenate([np.tile(masks_below[gi], reps) for gi in readable])


def _reader_rows(plan: Plan, reader_layer: int, readable: list[int],
                 masks_below: list[np.ndarray]) -> np.ndarray:
    """Bool over a reader's input rows (conv: input channels): which rows survive."""
    nl = plan.chain.layers[reader_layer]
    return surviving_rows(masks_below, readable, nl.fan_in if nl.kind == "dense" else 1)


def _slice_rows(kernel: np.ndarray, rows: np.ndarray, conv: bool) -> np.ndarray:
    return kernel[:, :, rows, :] if conv else kernel[rows]


def remove_neurons(plan: Plan, weights: Mapping[str, np.ndarray],
                   keep: Mapping[str, np.ndarray], *,
                   meta: dict | None = None) -> tuple[Plan, dict[str, np.ndarray]]:
    """Drop every neuron whose keep flag is False; return the narrower plan and its weights.

    `keep` maps hidden group layer names to bool arrays (one per neuron); groups not named keep
    all their neurons. A group whose mask is all False disappears (its readers lose its rows; the
    new plan is re-validated, so a reader left with no input is refused with a PlanError). Heads
    are never narrowed. `meta` is merged into the new plan's meta.
    """
    check_weights(plan, dict(weights))
    masks = _masks(plan, keep)
    new_weights: dict[str, np.ndarray] = {}
    new_layers: list[list[Group]] = []
    for l, (layer, groups) in enumerate(zip(plan.chain.hidden, plan.layers)):
        conv = layer.kind == "conv"
        kept_groups = []
        for gi, g in enumerate(groups):
            m = masks[l][gi]
            if not m.any():
                continue
            name = group_layer_name(layer, g)
            kernel = np.asarray(weights[f"{name}/kernel"])[..., m]
            if l > 0:
                kernel = _slice_rows(kernel, _reader_rows(plan, l, plan.readable(l, g),
                                                          masks[l - 1]), conv)
            new_weights[f"{name}/kernel"] = np.ascontiguousarray(kernel, np.float32)
            new_weights[f"{name}/bias"] = np.asarray(weights[f"{name}/bias"], np.float32)[m]
            kept_groups.append(Group(g.owners, tuple(s for s, k in zip(g.sources, m) if k)))
        new_layers.append(kept_groups)
    last = len(plan.layers)
    for h in plan.heads:
        rows = _reader_rows(plan, last, plan.head_inputs(h.task), masks[-1])
        new_weights[f"{h.task}/kernel"] = np.ascontiguousarray(
            np.asarray(weights[f"{h.task}/kernel"])[rows], np.float32)
        new_weights[f"{h.task}/bias"] = np.asarray(weights[f"{h.task}/bias"], np.float32)
    new_plan = plan.with_layers(new_layers, **(meta or {}))
    check_weights(new_plan, new_weights, where="weights after surgery")
    return new_plan, new_weights


def round_keep(keep: Mapping[str, np.ndarray], scores: Mapping[str, np.ndarray],
               round_to: int, min_width: int = 1) -> dict[str, np.ndarray]:
    """Round every group's kept width **up** to a multiple of `round_to` (capped at its width).

    Hardware kernels run fastest on channel counts that are multiples of 4 or 8; rounding up
    (putting back the best-scored removed neurons) never costs accuracy. A group keeps at least
    `min_width` neurons; a group whose current width is below the next multiple keeps them all.
    """
    if round_to < 1:
        raise ValueError(f"round_to must be >= 1, got {round_to}")
    out = {}
    for name, m in keep.items():
        m = np.asarray(m, bool)
        width = len(m)
        target = max(int(m.sum()), min(min_width, width))
        target = min(width, int(math.ceil(target / round_to)) * round_to)
        if target == int(m.sum()) and target >= min(min_width, width):
            out[name] = m.copy()
            continue
        s = np.asarray(scores[name], np.float64)
        # kept neurons first, then by score, then by index: kept stays kept when rounding up
        order = np.lexsort((np.arange(width), -s, ~m))
        new = np.zeros(width, bool)
        new[order[:target]] = True
        out[name] = new
    return out


def unread_groups(plan: Plan) -> list[str]:
    """Hidden group layers whose output nobody reads (no group of the next layer may read them).

    A merge can leave such a group, e.g. conv1 has an exclusive group {a} but conv2 has none
    owned by {a}: its neurons cost FLOPs and affect nothing. (Heads read every last-layer group
    whose owners contain their task, so last-layer groups are always read.)
    """
    out = []
    for l in range(len(plan.layers) - 1):
        read = {gi for r in plan.layers[l + 1] for gi in plan.readable(l + 1, r)}
        out.extend(group_layer_name(plan.chain.hidden[l], g)
                   for gi, g in enumerate(plan.layers[l]) if gi not in read)
    return out


def drop_unread_groups(plan: Plan, weights: Mapping[str, np.ndarray]
                       ) -> tuple[Plan, dict[str, np.ndarray], list[str]]:
    """Remove every unread group (repeatedly: removing one can orphan a group below it).

    Exact: the model's outputs do not change. Keras also leaves such layers out of a functional
    model (they are not on a path to an output), so their weights could not be trained or read
    back; removing them first keeps plan, weights and model consistent.
    """
    dropped: list[str] = []
    weights = dict(weights)
    while True:
        names = unread_groups(plan)
        if not names:
            return plan, weights, dropped
        widths = {group_layer_name(layer, g): g.width
                  for layer, groups in zip(plan.chain.hidden, plan.layers) for g in groups}
        plan, weights = remove_neurons(plan, weights,
                                       {n: np.zeros(widths[n], bool) for n in names})
        dropped.extend(names)
