"""Merge methods as objects: each produces a plan before pruning and says how it is pruned.

The pipeline, the report and the experiments loop only iterate over :data:`METHODS`; no module
tests a method's name. A method is:

- ``produce(inputs)``: the plan of the merged network before pruning; ``start(inputs)`` adds its
  weights (by default inherited from the single-task nets by
  :func:`pam_tf.build.inherit_weights`; a method that computes its own weights, like MTZ, or
  that starts from another method's pruned network, overrides ``start``);
- ``prune(plan, weights, prune_one)``: how that network is pruned: jointly (one loop over the
  merged net, the default), or task by task (B1: each network alone, then side by side);
- three facts the stages need: whether it needs the information table (``uses_information``),
  whether its starting network is a merge that must first recover by fine-tuning (``merged``:
  inherited block-diagonal weights are not function-preserving, method.md §6), and whether its
  combinations run separate single-task files (``separate_files``); and, optionally, what more
  it needs: the single-task models and the training half (``uses_data``), the pruned network
  of another method of the same run (``starts_from``: that method runs first), and the config
  sections its start reads besides those (``config_sections``, e.g. MTZ's ``"mtz"``: they join
  its merge stage's resume key).

Registering another method is one subclass and one entry in :data:`METHODS` (MTZ, B2, is one:
:class:`MtzMethod`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np

from pam_tf.artifacts import Network
from pam_tf.chain import TracedModel
from pam_tf.config import MergeConfig, MtzConfig
from pam_tf.networks import (check_same_network, combine_single_task_plans_for, head_of,
                             inherit_weights_for, is_graph_traced, no_merge_plan_for,
                             refuse_graph, shared_plan_for, split_by_task_for,
                             weight_shapes_for)
from pam_tf.plan import Plan
from pam_tf.tasks import Task


@dataclass
class MergeInputs:
    """What a method may use to produce its plan."""

    traced: Sequence[TracedModel]
    tasks: Sequence[Task]
    information: object | None = None  # pam_tf.merge.InformationTable when uses_information
    merge: MergeConfig = field(default_factory=MergeConfig)
    progress: Callable[[str], None] = print
    models: Sequence | None = None      # the tf_keras single-task models, when uses_data
    train: tuple | None = None          # (x, {task: y}) of the training half, when uses_data
    parent: Network | None = None       # the pruned network of `starts_from`, when set
    seed: int = 0
    mtz: MtzConfig = field(default_factory=MtzConfig)   # MTZ's settings (B2)

    def plan_args(self) -> tuple:
        """(chain or graph, task names, head units, head activations): what every producer
        needs."""
        network = check_same_network(self.traced)
        return (network, [t.name for t in self.tasks], [t.n_outputs for t in self.tasks],
                [head_of(tr).activation for tr in self.traced])


@dataclass
class PrunedNet:
    """A method's pruned network and its pruning summary (prune_history.json)."""

    plan: Plan
    weights: dict[str, np.ndarray]
    summary: dict


class PruneOne(Protocol):
    """Prunes one network: ``(plan, weights, tasks, checkpoint subfolder, label) → PruneResult``."""

    def __call__(self, plan: Plan, weights: Mapping[str, np.ndarray], tasks: Sequence[Task],
                 subfolder: str, label: str): ...


@dataclass(frozen=True)
class Method:
    """Base class: a joint-pruned merged network. Subclasses define :meth:`produce`."""

    name: str        # plan.method, the prefix of the exported files
    label: str       # folder under baselines/ and prefix of its stages
    title: str       # how the report names it
    uses_information: bool = False
    merged: bool = True
    separate_files: bool = False
    uses_data: bool = False
    starts_from: str | None = None
    config_sections: tuple[str, ...] = ()  # more RunConfig sections its start reads (e.g. "mtz")
    multi_signature: bool = True  # also export one file holding every combination
    graphs: bool = True  # takes graph networks (residual/depthwise, pam_tf.graph) too

    def produce(self, inputs: MergeInputs) -> Plan:
        raise NotImplementedError

    def check_graph_config(self, config, graph) -> None:
        """Raise ValueError, naming the flag, for a setting of `config` (the RunConfig) this
        method cannot honour on `graph` (a traced graph network): the main job calls it before
        any stage runs, so a long run does not fail late. Nothing by default."""

    def start(self, inputs: MergeInputs) -> Network:
        """The network pruning starts from: the plan of :meth:`produce` with inherited weights."""
        plan = self.produce(inputs)
        return Network(plan, inherit_weights_for(plan, inputs.traced))

    def prune(self, plan: Plan, weights: Mapping[str, np.ndarray], tasks: Sequence[Task],
              prune_one: PruneOne) -> PrunedNet:
        """Prune the merged network as one, on the joint loss of all its tasks."""
        res = prune_one(plan, weights, tasks, "", self.label.upper())
        return PrunedNet(res.plan, res.weights, {
            "reason": res.reason, "message": res.message, "step": res.step,
            "accuracy": res.accuracy, "flops_fraction": res.flops_fraction,
            "history": res.history})


@dataclass(frozen=True)
class PamMethod(Method):
    """Pruning-Aware Merging (method.md §5), from the information table."""

    def produce(self, inputs: MergeInputs) -> Plan:
        from pam_tf.graph.merge import pam_graph_plan_from_information
        from pam_tf.merge import pam_plan_from_information

        if inputs.information is None:
            raise ValueError("PAM needs the information table (run the information stage)")
        produce = pam_graph_plan_from_information if is_graph_traced(inputs.traced[0]) else \
            pam_plan_from_information
        return produce(inputs.traced, inputs.tasks, inputs.information, inputs.merge,
                       inputs.progress)


@dataclass(frozen=True)
class NoMerge(Method):
    """B1: every task keeps its own network, pruned alone with the same pruner and budget."""

    def produce(self, inputs: MergeInputs) -> Plan:
        return no_merge_plan_for(*inputs.plan_args())

    def prune(self, plan: Plan, weights: Mapping[str, np.ndarray], tasks: Sequence[Task],
              prune_one: PruneOne) -> PrunedNet:
        """Split into one-task plans, prune each to its own budget, put them side by side."""
        singles = {p.tasks[0]: p for p in split_by_task_for(plan)}

        def network_of(task: Task) -> Network:
            single = singles[task.name]
            return Network(single, {k: weights[k] for k in weight_shapes_for(single)})
        return _prune_each_task(self, tasks, prune_one, network_of)


@dataclass(frozen=True)
class Specialised(Method):
    """PAM-S: each task's sub-network of the pruned merged net, cut out and pruned further for
    that task alone (:mod:`pam_tf.specialise`). Its combinations run one file per task; it is
    reported beside PAM, never as PAM, because it gives up the one shared multi-task file."""

    def start(self, inputs: MergeInputs) -> Network:
        if inputs.parent is None:
            raise ValueError(f"{self.title} starts from the pruned '{self.starts_from}' network")
        return inputs.parent

    def prune(self, plan: Plan, weights: Mapping[str, np.ndarray], tasks: Sequence[Task],
              prune_one: PruneOne) -> PrunedNet:
        from pam_tf.specialise import cut_task

        refuse_graph(plan, f"{self.title}")
        return _prune_each_task(self, tasks, prune_one,
                                lambda task: cut_task(Network(plan, dict(weights)), task.name))


def _prune_each_task(method: Method, tasks: Sequence[Task], prune_one: PruneOne,
                     network_of: Callable[[Task], Network]) -> PrunedNet:
    """Prune one one-task network per task to its own budget; put them side by side."""
    plans, pruned, history, summaries = [], {}, {}, []
    for task in tasks:
        own = network_of(task)
        res = prune_one(own.plan, own.weights, [task], task.name,
                        f"{method.label.upper()}/{task.name}")
        plans.append(res.plan)
        pruned.update(res.weights)
        history[task.name] = res.history
        summaries.append(f"{task.name}: {res.message}")
    return PrunedNet(combine_single_task_plans_for(plans, method=method.name), pruned, {
        "reason": "per-task", "message": "; ".join(summaries), "history": history})


@dataclass(frozen=True)
class FullyShared(Method):
    """All n networks' neurons in one all-task group per layer (block-diagonal start)."""

    def produce(self, inputs: MergeInputs) -> Plan:
        return shared_plan_for(*inputs.plan_args())


@dataclass(frozen=True)
class MtzMethod(Method):
    """B2: Multi-Task Zipping (method.md §8), then the same pruning. Its start is its own:
    layer-by-layer zipping with Hessian-weighted merged weights and short retraining
    (:mod:`pam_tf.mtz`; class by class for graph networks, :mod:`pam_tf.graph.mtz`), from the
    single-task nets and the training half."""

    def produce(self, inputs: MergeInputs) -> Plan:
        return self.start(inputs).plan

    def start(self, inputs: MergeInputs) -> Network:
        from pam_tf.graph.mtz import zip_graph_networks
        from pam_tf.mtz import zip_networks

        if inputs.train is None:
            raise ValueError("MTZ needs the training half (Hessians and retraining): its "
                             "method must declare uses_data")
        zip_all = zip_graph_networks if is_graph_traced(inputs.traced[0]) else zip_networks
        return zip_all(inputs.traced, inputs.tasks, inputs.train, inputs.mtz,
                       models=inputs.models, seed=inputs.seed, progress=inputs.progress)

    def check_graph_config(self, config, graph) -> None:
        """Graph networks are zipped with one --mtz_merge degree for every coupling class."""
        from pam_tf.graph.mtz import graph_merge_degree

        graph_merge_degree(config.mtz, graph)


METHODS: dict[str, Method] = {m.name: m for m in (
    PamMethod("pam", "pam", "PAM", uses_information=True),
    NoMerge("none", "b1", "B1 (no merging)", merged=False, separate_files=True),
    MtzMethod("mtz", "b2", "B2 (MTZ)", uses_data=True, config_sections=("mtz",)),
    FullyShared("shared", "shared", "fully shared"),
)}

#: PAM-S, which ``--specialise`` adds after the primary PAM run (it starts from PAM's result).
#: No multi-signature file: a task's cut that pruning left as it was shares layers with the other
#: cuts weight for weight, which the converter computes once in one file, so that file would not
#: cost what the separately run files cost (its MAC check fails, rightly).
SPECIALISED = Specialised("pam_spec", "pam_spec", "PAM-S (PAM, then each task's sub-network "
                          "pruned alone)", merged=False, separate_files=True, starts_from="pam",
                          multi_signature=False, graphs=False)

#: The methods ``--compare`` adds to a run for the report (in this order), unless primary.
BASELINES: tuple[str, ...] = ("none", "mtz")


def get_method(name: str) -> Method:
    """The registered method called `name` (ValueError listing the known ones)."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown merge method {name!r}; one of {', '.join(METHODS)}") from None


def methods_of_run(primary: str, compare: bool, specialise: bool = False,
                   baselines: Sequence[str] = BASELINES) -> list[Method]:
    """The primary method first, then the `baselines` --compare adds (less the primary), then
    PAM-S (--specialise). An unknown or repeated baseline is a ValueError naming it."""
    out = [get_method(primary)]
    if compare:
        for name in baselines:
            if name not in METHODS:
                raise ValueError(f"--baselines: unknown method {name!r}; one of "
                                 f"{', '.join(METHODS)}")
        if len(set(baselines)) != len(baselines):
            raise ValueError(f"--baselines={','.join(baselines)}: a method is named twice")
        out += [METHODS[b] for b in baselines if b != primary]
    if specialise:
        if primary != SPECIALISED.starts_from:
            raise ValueError(f"--specialise cuts the sub-networks out of a pruned "
                             f"'{SPECIALISED.starts_from}' network: use it with "
                             f"--method={SPECIALISED.starts_from}, not --method={primary}")
        out.append(SPECIALISED)
    return out
