"""What export needs from a plan, for both plan kinds: chain plans (:mod:`pam_tf.plan`) and
graph plans (:mod:`pam_tf.graph.plan`, residual and depthwise nets).

Export, parity and the flatbuffer recount only need a plan's costs, its combinations, its
input shape, its weights' shapes and a builder; this module is the one place that picks the
builder, so the rest of :mod:`pam_tf.export` treats both kinds alike.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from pam_tf.build import build_model, check_weights, weight_shapes
from pam_tf.graph.build import build_graph_model, check_graph_weights
from pam_tf.graph.build import weight_shapes as graph_weight_shapes
from pam_tf.graph.plan import GraphPlan

__all__ = ["is_graph_plan", "input_shape_of", "build_for", "check_weights_for",
           "weight_shapes_for"]


def is_graph_plan(plan) -> bool:
    return isinstance(plan, GraphPlan)


def input_shape_of(plan) -> tuple[int, ...]:
    """The model input's shape (H, W, C)."""
    return tuple(plan.graph.input_shape if is_graph_plan(plan) else plan.chain.input_shape)


def build_for(plan, weights: dict[str, np.ndarray] | None,
              combination: Iterable[str] | None = None, name: str | None = None):
    """The plan's (combination) model from the plan kind's own builder."""
    if is_graph_plan(plan):
        return build_graph_model(plan, weights, combination, name=name)
    return build_model(plan, weights, combination, name=name)


def check_weights_for(plan, weights: dict[str, np.ndarray]) -> None:
    if is_graph_plan(plan):
        check_graph_weights(plan, weights)
    else:
        check_weights(plan, weights)


def weight_shapes_for(plan) -> dict[str, tuple[int, ...]]:
    return graph_weight_shapes(plan) if is_graph_plan(plan) else weight_shapes(plan)
