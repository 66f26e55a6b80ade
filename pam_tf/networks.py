"""The two kinds of network pam-tf takes, behind one set of functions.

- **Chains** (:mod:`pam_tf.chain`, :mod:`pam_tf.plan`, plan format 1): Conv2D/Dense layers with
  pooling, flatten and activations between them — LeNet-5, VGG;
- **graphs** (:mod:`pam_tf.graph`, plan format 2): residual adds, depthwise convolutions,
  ReLU6, zero padding, global average pooling — ResNet, MobileNetV2.

The stages (pipeline, methods, export, report) call these functions and never test the kind
themselves; a chain model is traced, planned, built and pruned exactly as before (its plan bytes
do not change), a graph model takes the graph path.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from pam_tf.build import build_model, check_weights, inherit_weights, weight_shapes
from pam_tf.chain import TracedModel, TraceError, check_same_chain, trace_model
from pam_tf.graph.build import build_graph_model, check_graph_weights, inherit_graph_weights
from pam_tf.graph.build import weight_shapes as graph_weight_shapes
from pam_tf.graph.plan import (GraphPlan, graph_no_merge_plan, graph_shared_plan,
                               graph_split_by_task)
from pam_tf.graph.trace import Graph, TracedGraph, check_same_graph, trace_graph
from pam_tf.plan import combine_single_task_plans, no_merge_plan, shared_plan, split_by_task

__all__ = ["is_graph_plan", "is_graph_traced", "trace_network", "check_same_network",
           "head_of", "input_shape_of", "build_for", "check_weights_for", "weight_shapes_for",
           "inherit_weights_for", "no_merge_plan_for", "shared_plan_for", "split_by_task_for",
           "combine_single_task_plans_for", "refuse_graph"]

_GRAPH_LAYERS = ("Add", "DepthwiseConv2D", "ZeroPadding2D")


def is_graph_plan(plan) -> bool:
    return isinstance(plan, GraphPlan)


def is_graph_traced(traced) -> bool:
    return isinstance(traced, TracedGraph)


def trace_network(model, name: str | None = None) -> "TracedModel | TracedGraph":
    """A chain when the model is one (unchanged behaviour), else a graph.

    When neither tracer takes the model, the error of the tracer it was meant for is raised
    (the graph tracer's for a model with residual adds, depthwise convs or padding), naming the
    model and the layer."""
    try:
        return trace_model(model, name=name)
    except TraceError as chain_error:
        try:
            return trace_graph(model, name=name)
        except TraceError as graph_error:
            if any(type(l).__name__ in _GRAPH_LAYERS for l in getattr(model, "layers", [])):
                raise graph_error from None
            raise chain_error from None


def check_same_network(traced: Sequence) -> object:
    """The shared chain or graph of the n traced models (all of one kind)."""
    kinds = {is_graph_traced(t) for t in traced}
    if len(kinds) > 1:
        graphs = [t.name for t in traced if is_graph_traced(t)]
        raise TraceError(f"models {graphs} are graph networks (residual/depthwise), the others "
                         "plain chains: all models must share one architecture")
    return check_same_graph(traced) if kinds == {True} else check_same_chain(traced)


def head_of(traced):
    """The traced head (width, activation) of a chain or graph network."""
    return traced.graph.head if is_graph_traced(traced) else traced.chain.head


def input_shape_of(plan) -> tuple[int, ...]:
    """The model input's shape (H, W, C)."""
    return tuple(plan.graph.input_shape if is_graph_plan(plan) else plan.chain.input_shape)


def build_for(plan, weights: dict[str, np.ndarray] | None,
              combination: Iterable[str] | None = None, name: str | None = None):
    """The plan's (combination) model from the plan kind's own builder."""
    if is_graph_plan(plan):
        return build_graph_model(plan, weights, combination, name=name)
    return build_model(plan, weights, combination, name=name)


def check_weights_for(plan, weights: dict[str, np.ndarray], where: str = "weights") -> None:
    if is_graph_plan(plan):
        check_graph_weights(plan, weights, where=where)
    else:
        check_weights(plan, weights, where=where)


def weight_shapes_for(plan) -> dict[str, tuple[int, ...]]:
    return graph_weight_shapes(plan) if is_graph_plan(plan) else weight_shapes(plan)


def inherit_weights_for(plan, traced: Sequence) -> dict[str, np.ndarray]:
    """Initial weights of a plan from the n traced networks (method.md §6)."""
    return inherit_graph_weights(plan, traced) if is_graph_plan(plan) else \
        inherit_weights(plan, traced)


def no_merge_plan_for(network, tasks: Sequence[str], head_units: Sequence[int],
                      head_activations: Sequence[str]):
    """B1's plan over a chain or a graph (`network`: what :func:`check_same_network` gave)."""
    make = graph_no_merge_plan if isinstance(network, Graph) else no_merge_plan
    return make(network, tasks, head_units, head_activations)


def shared_plan_for(network, tasks: Sequence[str], head_units: Sequence[int],
                    head_activations: Sequence[str]):
    """The fully shared plan over a chain or a graph."""
    make = graph_shared_plan if isinstance(network, Graph) else shared_plan
    return make(network, tasks, head_units, head_activations)


def split_by_task_for(plan) -> list:
    return graph_split_by_task(plan) if is_graph_plan(plan) else split_by_task(plan)


def combine_single_task_plans_for(plans: Sequence, method: str = "none"):
    if plans and is_graph_plan(plans[0]):
        from pam_tf.graph.prune import combine_graph_plans
        return combine_graph_plans(plans, method)
    return combine_single_task_plans(plans, method=method)


def refuse_graph(traced_or_plan, what: str) -> None:
    """A clear refusal for a stage or method not (yet) written for graph networks."""
    graph = is_graph_plan(traced_or_plan) or is_graph_traced(traced_or_plan)
    if graph:
        raise ValueError(f"{what} is not implemented for graph networks (residual adds, "
                         "depthwise convolutions): pam-tf merges, prunes and exports them with "
                         "PAM, B1 (no merging), B2 (MTZ) and the fully shared start")
