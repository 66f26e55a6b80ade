"""Merge: producers of plans from n traced single-task networks.

``pam`` runs Pruning-Aware Merging (method.md §4-§5): per hidden layer, pool the neurons of all n
networks, measure on one held-out batch labelled for every task how much each set of neurons
tells about each task, and let :func:`pam_tf.regroup.regroup_layer` decide which tasks own which
neurons. ``none`` (B1: every task keeps its own network) and ``shared`` (one all-task trunk) are the
trivial producers. Every producer returns a :class:`~pam_tf.plan.Plan`, so everything downstream
(build, prune, export) is the same for all methods.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from pam_tf.chain import TracedModel, check_same_chain, layer_activation_model
from pam_tf.information import pairwise_sq_dists, reduce_conv
from pam_tf.plan import Plan, no_merge_plan, plan_from_owners, shared_plan
from pam_tf.regroup import regroup_layer
from pam_tf.tasks import Task

MERGE_METHODS = ("pam", "none", "shared")


@dataclass(frozen=True)
class PamConfig:
    """Settings of the PAM regrouping.

    alpha_conv / alpha_dense: α per layer kind. With ``relative=True`` (default) α is a fraction of
    the layer's whole information about the task (α_t = alpha · I(all neurons; Y_t)); the default
    0.05 follows the feasibility run in method.md §11, where 0.02-0.2 gave similar groupings and
    absolute α values meant different things in different layers (the KDE bound saturates).

    sigma2_scale: ``"absolute"`` uses σ² as given (the paper's 0.1). ``"layer"`` (default) uses
    σ²_l = sigma2 · median squared distance between the layer's samples, so the noise scale
    follows the activation scale: with ReLU activations in the tens, an absolute σ² = 0.1 makes
    every sample isolated, the bound saturates at the labels' entropy for *any* label, and every
    neuron looks informative about every task (on `composite`, dense layers then end up almost
    all in the all-task group; with "layer" they split into digit+parity and garment+category,
    and on fashion2 the pruned PAM network's a+b cost drops from 0.50 to 0.30 MFLOPs).
    """

    mode: str = "paper"
    sigma2_scale: str = "layer"
    alpha_conv: float = 0.05
    alpha_dense: float = 0.05
    relative: bool = True
    sigma2: float = 0.1
    reduce: str = "max"
    samples: int = 128

    def to_json(self) -> dict:
        return asdict(self)


def layer_sigma2(acts: np.ndarray, sigma2: float, scale: str) -> float:
    """σ² for one layer: as given, or relative to the layer's median squared sample distance."""
    if scale == "absolute":
        return float(sigma2)
    if scale != "layer":
        raise ValueError(f"sigma2_scale must be 'absolute' or 'layer', got {scale!r}")
    d = pairwise_sq_dists(acts)
    median = float(np.median(d[np.triu_indices(len(d), 1)]))
    return float(sigma2) * median if median > 0 else float(sigma2)


def pooled_activations(models: Sequence, traced: Sequence[TracedModel], x: np.ndarray,
                       reduce: str = "max") -> list[np.ndarray]:
    """Per hidden layer, (N, n·d_l) post-activation values of all n networks, model-major.

    Conv neurons are reduced to one number per sample (spatial max by default, method.md §4).
    Column m·d_l + i is neuron i of model m: the pooled index plan_from_owners expects.
    """
    chain = traced[0].chain
    per_model = []
    for model in models:
        acts = layer_activation_model(model, chain).predict(x, verbose=0, batch_size=256)
        acts = acts if isinstance(acts, list) else [acts]
        per_model.append([reduce_conv(np.asarray(a), reduce) for a in acts])
    return [np.concatenate([pm[l] for pm in per_model], axis=1).astype(np.float64)
            for l in range(len(chain.hidden))]


def pam_plan(models: Sequence, traced: Sequence[TracedModel], tasks: Sequence[Task],
             x_info: np.ndarray, y_info: dict[str, np.ndarray], config: PamConfig = PamConfig(),
             progress: Callable[[str], None] = print) -> Plan:
    """Regroup every hidden layer with PAM and return the plan (model t is task t's network)."""
    acts = pooled_activations(models, traced, x_info, config.reduce)
    return pam_plan_from_activations(traced, tasks, acts, y_info, config, progress)


def pam_plan_from_activations(traced: Sequence[TracedModel], tasks: Sequence[Task],
                              acts: Sequence[np.ndarray], y_info: dict[str, np.ndarray],
                              config: PamConfig = PamConfig(),
                              progress: Callable[[str], None] = print) -> Plan:
    """PAM from pooled activations (see :func:`pooled_activations`) and the batch's labels."""
    chain = check_same_chain(traced)
    task_labels = [t.information_labels(y_info[t.name]) for t in tasks]
    owners, layer_meta = [], []
    for l, layer in enumerate(chain.hidden):
        start = time.perf_counter()
        alpha = config.alpha_conv if layer.kind == "conv" else config.alpha_dense
        sigma2 = layer_sigma2(acts[l], config.sigma2, config.sigma2_scale)
        grouping = regroup_layer(acts[l], task_labels, alpha, mode=config.mode,
                                 sigma2=sigma2, relative=config.relative)
        owners.append(grouping.owners)
        sizes = {"+".join(tasks[i].name for i in sorted(k)): len(v)
                 for k, v in grouping.groups().items()}
        layer_meta.append({"layer": layer.name, "alpha": grouping.alpha_used, "sigma2": sigma2,
                           "information": grouping.layer_information,
                           "dropped": len(grouping.dropped()), "groups": sizes,
                           "seconds": round(time.perf_counter() - start, 3)})
        progress(f"  regroup {layer.name:>8}: {acts[l].shape[1]} neurons -> "
                 + ", ".join(f"{k}: {v}" for k, v in sizes.items())
                 + f", dropped {len(grouping.dropped())}"
                 f" ({layer_meta[-1]['seconds']:.1f} s)")
    return plan_from_owners(
        chain, [t.name for t in tasks], [t.n_outputs for t in tasks],
        [traced[i].chain.head.activation for i in range(len(tasks))], owners, method="pam",
        meta={"pam": config.to_json(), "layers": layer_meta,
              "info_samples": int(len(acts[0]))})


def trivial_plan(method: str, traced: Sequence[TracedModel], tasks: Sequence[Task]) -> Plan:
    """The ``none`` (B1) or ``shared`` plan of the traced networks."""
    chain = check_same_chain(traced)
    args = (chain, [t.name for t in tasks], [t.n_outputs for t in tasks],
            [tr.chain.head.activation for tr in traced])
    if method == "none":
        return no_merge_plan(*args)
    if method == "shared":
        return shared_plan(*args)
    raise ValueError(f"unknown merge method {method!r}; one of {', '.join(MERGE_METHODS)}")


def check_heads_match_tasks(traced: Sequence[TracedModel], tasks: Sequence[Task],
                            names: Sequence[str] | None = None) -> None:
    """Each model's head must fit its task (units and activation), or the merge is meaningless."""
    if len(traced) != len(tasks):
        raise ValueError(f"{len(traced)} models for {len(tasks)} tasks "
                         f"({', '.join(t.name for t in tasks)}): give one model per task")
    for i, (tr, task) in enumerate(zip(traced, tasks)):
        head = tr.chain.head
        label = names[i] if names else tr.name
        if head.width != task.n_outputs or head.activation != task.head_activation:
            raise ValueError(
                f"model '{label}' does not fit task '{task.name}': its head has {head.width} "
                f"{head.activation} outputs, the task needs {task.n_outputs} "
                f"{task.head_activation} outputs")
