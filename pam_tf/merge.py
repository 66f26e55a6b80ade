"""Merge: information of the networks' neurons, and the PAM plan built from it.

Pruning-Aware Merging (method.md §4-§5): per hidden layer, pool the neurons of all n networks,
measure on one held-out batch labelled for every task how much each set of neurons tells about
each task, and let :func:`pam_tf.regroup.regroup_layer` decide which tasks own which neurons.

The measurement is its own artifact (:class:`InformationTable`): the main job computes it once
(information stage), reports it, and hands it to regrouping, which reuses each layer's σ² and
whole-layer information instead of computing them again. The trivial producers (no merging,
fully shared) and the method objects that call these functions live in :mod:`pam_tf.methods`.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from pam_tf import io
from pam_tf.chain import TracedModel, check_same_chain, layer_activation_model
from pam_tf.config import InfoConfig, MergeConfig
from pam_tf.information import pairwise_sq_dists, reduce_conv
from pam_tf.plan import Plan, plan_from_owners
from pam_tf.regroup import layer_task_information, regroup_layer
from pam_tf.tasks import Task


def layer_sigma2(acts: np.ndarray, sigma2: float, scale: str) -> float:
    """σ² for one layer: as given, or relative to the layer's median squared sample distance.

    With ReLU activations in the tens an absolute σ² = 0.1 isolates every sample, the KDE bound
    saturates at the labels' entropy for *any* label and every neuron looks informative about
    every task; the layer scale keeps the noise in proportion to the activations."""
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


@dataclass
class InformationTable:
    """What the information stage measured: per hidden layer the pooled activations, its σ² and
    I(all neurons; Y_t) per task, plus the batch's labels."""

    layers: list[str]
    tasks: list[str]
    acts: list[np.ndarray]
    sigma2: list[float]
    information: list[list[float]]  # [layer][task]
    labels: dict[str, np.ndarray]
    config: InfoConfig
    # graph networks: per coupling class (the "layer"), the number of tensors it covers; its
    # acts are those tensors' (N, n·d) blocks side by side (pam_tf.graph.merge)
    tensors: list[int] | None = None

    @property
    def samples(self) -> int:
        return int(len(self.acts[0]))

    def to_json(self) -> dict:
        """The human-readable part (information.json; the report prints it)."""
        rows = [{"layer": name, "neurons": int(a.shape[1]), "sigma2": s2,
                 "information": dict(zip(self.tasks, info))}
                for name, a, s2, info in zip(self.layers, self.acts, self.sigma2,
                                             self.information)]
        for row, t in zip(rows, self.tensors or []):
            row["neurons"] //= t
            row["tensors"] = t
        return {"samples": self.samples, **self.config.to_json(), "layers": rows}

    def save(self, folder: str) -> None:
        """information.npz (arrays) then information.json (written last: marks completion)."""
        arrays = {f"acts_{l}": a for l, a in enumerate(self.acts)}
        arrays.update({f"y_{t}": self.labels[t] for t in self.tasks})
        io.save_npz(os.path.join(folder, "information.npz"), arrays)
        io.write_json(os.path.join(folder, "information.json"), self.to_json())

    @staticmethod
    def load(folder: str) -> "InformationTable":
        meta = io.read_json(os.path.join(folder, "information.json"))
        data = io.load_npz(os.path.join(folder, "information.npz"))
        layers = meta["layers"]
        tasks = list(layers[0]["information"]) if layers else []
        config = InfoConfig(**{k: meta[k] for k in InfoConfig.__dataclass_fields__})
        return InformationTable([r["layer"] for r in layers], tasks,
                                [data[f"acts_{l}"] for l in range(len(layers))],
                                [float(r["sigma2"]) for r in layers],
                                [[float(r["information"][t]) for t in tasks] for r in layers],
                                {t: data[f"y_{t}"] for t in tasks}, config,
                                [int(r["tensors"]) for r in layers]
                                if layers and "tensors" in layers[0] else None)


def measure_information(models: Sequence, traced: Sequence[TracedModel], tasks: Sequence[Task],
                        x: np.ndarray, y: dict[str, np.ndarray], config: InfoConfig = InfoConfig(),
                        progress: Callable[[str], None] = print) -> InformationTable:
    """Activations of every network on the batch and I(layer; task) per hidden layer."""
    chain = check_same_chain(traced)
    acts = pooled_activations(models, traced, x, config.reduce)
    labels = [t.information_labels(y[t.name]) for t in tasks]
    sigma2, info = [], []
    for l, layer in enumerate(chain.hidden):
        sigma2.append(layer_sigma2(acts[l], config.sigma2, config.sigma2_scale))
        info.append(layer_task_information(acts[l], labels, sigma2[-1]))
        progress(f"  {layer.name:>8}: " + ", ".join(
            f"I(layer; {t.name}) = {v:.3f} nats" for t, v in zip(tasks, info[-1])))
    return InformationTable([layer.name for layer in chain.hidden], [t.name for t in tasks],
                            acts, sigma2, info, {t.name: y[t.name] for t in tasks}, config)


def pam_plan_from_information(traced: Sequence[TracedModel], tasks: Sequence[Task],
                              table: InformationTable, merge: MergeConfig = MergeConfig(),
                              progress: Callable[[str], None] = print) -> Plan:
    """Regroup every hidden layer from a measured :class:`InformationTable`."""
    chain = check_same_chain(traced)
    task_labels = [t.information_labels(table.labels[t.name]) for t in tasks]
    owners, layer_meta = [], []
    for l, layer in enumerate(chain.hidden):
        start = time.perf_counter()
        grouping = regroup_layer(table.acts[l], task_labels, merge.alpha_for(layer.kind),
                                 mode=merge.mode, sigma2=table.sigma2[l],
                                 relative=merge.alpha_relative,
                                 layer_information=table.information[l])
        owners.append(grouping.owners)
        sizes = {"+".join(tasks[i].name for i in sorted(k)): len(v)
                 for k, v in grouping.groups().items()}
        # No timings in the plan: its bytes (and the manifest's plan_sha256) must depend on the
        # network only; the regroup stage's time is in stages.json, per layer in the log.
        layer_meta.append({"layer": layer.name, "alpha": grouping.alpha_used,
                           "sigma2": table.sigma2[l], "information": grouping.layer_information,
                           "dropped": len(grouping.dropped()), "groups": sizes})
        progress(f"  regroup {layer.name:>8}: {table.acts[l].shape[1]} neurons -> "
                 + ", ".join(f"{k}: {v}" for k, v in sizes.items())
                 + f", dropped {len(grouping.dropped())}"
                 f" ({time.perf_counter() - start:.1f} s)")
    return plan_from_owners(
        chain, [t.name for t in tasks], [t.n_outputs for t in tasks],
        [traced[i].chain.head.activation for i in range(len(tasks))], owners, method="pam",
        meta={"pam": {**merge.to_json(), **table.config.to_json()}, "layers": layer_meta,
              "info_samples": table.samples})


def pam_plan(models: Sequence, traced: Sequence[TracedModel], tasks: Sequence[Task],
             x_info: np.ndarray, y_info: dict[str, np.ndarray],
             merge: MergeConfig = MergeConfig(), info: InfoConfig = InfoConfig(),
             progress: Callable[[str], None] = print) -> Plan:
    """Measure information and regroup in one call (model t is task t's network)."""
    table = measure_information(models, traced, tasks, x_info, y_info, info,
                                progress=lambda _line: None)
    return pam_plan_from_information(traced, tasks, table, merge, progress)


def check_heads_match_tasks(traced: Sequence[TracedModel], tasks: Sequence[Task],
                            names: Sequence[str] | None = None) -> None:
    """Each model's head must fit its task (units and activation), or the merge is meaningless."""
    if len(traced) != len(tasks):
        raise ValueError(f"{len(traced)} models for {len(tasks)} tasks "
                         f"({', '.join(t.name for t in tasks)}): give one model per task")
    from pam_tf.networks import head_of

    for i, (tr, task) in enumerate(zip(traced, tasks)):
        head = head_of(tr)
        label = names[i] if names else tr.name
        if head.width != task.n_outputs or head.activation != task.head_activation:
            raise ValueError(
                f"model '{label}' does not fit task '{task.name}': its head has {head.width} "
                f"{head.activation} outputs, the task needs {task.n_outputs} "
                f"{task.head_activation} outputs")
