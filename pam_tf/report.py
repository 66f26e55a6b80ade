"""Report: the run's results as a markdown page and PNG plots people can take in at a glance.

Takes what the earlier stages wrote (plans, manifests, latency summaries) and knows nothing of
how they were produced; every number in the report is read from those files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from pam_tf import io
from pam_tf.plan import Plan

# method.md §10: the paper's LeNet-5 / Fashion-MNIST rows (P1 = Taylor), FLOPs in millions at
# the paper's input size, which is not ours: compare ratios, not absolute values.
PAPER_FASHION2 = {
    "a": {"B1": 28.34, "B2": 52.58, "PAM": 28.49, "acc B1": 95.42, "acc PAM": 94.67},
    "b": {"B1": 28.34, "B2": 52.58, "PAM": 26.16, "acc B1": 96.30, "acc PAM": 95.70},
    "a+b": {"B1": 56.69, "B2": 52.58, "PAM": 48.68, "acc B1": 95.86, "acc PAM": 95.19},
}


@dataclass
class MethodResult:
    """What the report needs of one method's run."""

    method: str
    title: str
    plan_merged: Plan
    plan: Plan
    manifest: dict
    latency: dict[str, dict] = field(default_factory=dict)  # combo key -> {p50_ms, p90_ms}
    prune: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.title

    def combos(self) -> list[str]:
        return ["+".join(c["tasks"]) for c in self.manifest["combinations"]]

    def entry(self, combo: str) -> dict | None:
        for c in self.manifest["combinations"]:
            if "+".join(c["tasks"]) == combo:
                return c
        return None


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> None:
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    _plt().close(fig)


def plot_bars(path: str, groups: Sequence[str], series: dict[str, Sequence[float | None]],
              *, ylabel: str, title: str, errors: dict[str, Sequence[float]] | None = None,
              reference: dict[str, float] | None = None, zoom: bool = False,
              reference_label: str = "unpruned single-task (validation)") -> None:
    """Grouped bar chart: one group per x label, one bar per series (None = missing)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(groups) + 2), 3.6))
    n = max(1, len(series))
    width = 0.8 / n
    x = np.arange(len(groups))
    for i, (name, values) in enumerate(series.items()):
        vals = np.array([np.nan if v is None else v for v in values], float)
        err = None
        if errors and name in errors:
            err = np.array([[0] * len(vals), errors[name]], float)
        bars = ax.bar(x + (i - (n - 1) / 2) * width, vals, width, label=name, yerr=err,
                      capsize=3)
        for b, v in zip(bars, vals):
            if np.isfinite(v):
                ax.annotate(f"{v:.3g}", (b.get_x() + b.get_width() / 2, v), ha="center",
                            va="bottom", fontsize=7)
    if reference:
        for j, g in enumerate(groups):
            if g in reference:
                ax.hlines(reference[g], j - 0.45, j + 0.45, colors="k", linestyles="--",
                          label=reference_label if j == 0 else None)
    if zoom:  # differences of a point matter: do not start the axis at 0
        vals = [v for values in series.values() for v in values if v is not None]
        vals += list((reference or {}).values())
        if vals:
            ax.set_ylim(max(0.0, min(vals) - 2.0), min(100.0, max(vals) + 1.0))
    ax.set_xticks(x, groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def plot_groups(path: str, plans: dict[str, Plan]) -> None:
    """Stacked bars of group widths per layer, one panel per plan (who owns what)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(plans), figsize=(5 * len(plans), 3.8), squeeze=False)
    for ax, (title, plan) in zip(axes[0], plans.items()):
        keys = sorted({g.key for groups in plan.layers for g in groups},
                      key=lambda k: (-k.count(".") , k))
        names = plan.unit_names()
        bottom = np.zeros(len(names))
        for key in keys:
            widths = np.array([sum(g.width for g in groups if g.key == key)
                               for groups in plan.layers], float)
            ax.bar(names, widths, bottom=bottom, label=key.replace(".", "+"))
            bottom += widths
        for j, v in enumerate(bottom):
            ax.annotate(f"{int(v)}", (j, v), ha="center", va="bottom", fontsize=7)
        ax.set_title(title)
        ax.set_ylabel("neurons")
        ax.legend(title="owners", fontsize=7)
    _save(fig, path)


@dataclass(frozen=True)
class TrajectoryPoint:
    """One pruning attempt as the trajectory plot draws it."""

    step: int
    flops_fraction: float            # all-task FLOPs left, of the run's start
    margin: float | None             # worst task's accuracy minus its reference, in points
    inside: bool                     # False: the attempt left the budget (retried or final)


def pruning_series(results: Sequence[MethodResult]) -> dict[str, list[TrajectoryPoint]]:
    """Each pruning run's attempts, by line label: one line per method whose network was pruned
    as one (its ``history`` is a list), one per task where each task's net was pruned on its
    own (B1: a dict task -> list). Chain histories carry their FLOPs fraction, references and
    verdict; graph histories only FLOPs and accuracy (the run's references then apply)."""
    out: dict[str, list[TrajectoryPoint]] = {}
    for r in results:
        history = r.prune.get("history")
        reference = r.prune.get("reference_accuracy", {})
        runs = ({r.label: history} if isinstance(history, list)
                else {f"{r.label} / {t}": h for t, h in history.items()}
                if isinstance(history, dict) else {})
        for label, entries in runs.items():
            if entries:
                out[label] = [_point(e, entries[0], reference) for e in entries]
    return out


def _point(entry: dict, first: dict, reference: dict[str, float]) -> TrajectoryPoint:
    ref, acc = entry.get("reference") or reference, entry.get("accuracy") or {}
    gaps = [100.0 * (acc[t] - ref[t]) for t in ref if t in acc]
    fraction = entry.get("flops_fraction")
    if fraction is None:
        fraction = entry["flops"] / max(1, first["flops"])
    return TrajectoryPoint(int(entry["step"]), float(fraction), min(gaps) if gaps else None,
                           entry.get("within_budget") is not False)


def plot_pruning(path: str, series: dict[str, list[TrajectoryPoint]],
                 budget: float | None) -> None:
    """The pruning trajectory: per run, the FLOPs left after each attempt (top) and the worst
    task's accuracy against its reference (bottom), attempts outside the budget as crosses.
    Why: where a run ended (budget, step cap) and how it got there, e.g. a run of steps that
    each removed one cheap neuron behind a conv channel whose removal kept failing, is seen at
    a glance and hard to read from the step log."""
    plt = _plt()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for i, (label, points) in enumerate(series.items()):
        color = f"C{i % 10}"
        for inside, style in ((True, "o-"), (False, "x")):
            pts = [p for p in points if p.inside is inside]
            top.plot([p.step for p in pts], [100 * p.flops_fraction for p in pts], style,
                     color=color, ms=3 if inside else 5, lw=1, label=label if inside else None)
            marg = [(p.step, p.margin) for p in pts if p.margin is not None]
            if marg:
                bottom.plot(*zip(*marg), style, color=color, ms=3 if inside else 5, lw=1)
    if budget is not None:
        bottom.axhline(-float(budget), color="k", ls="--", lw=1, label=f"budget (-{budget} pt)")
        bottom.legend(fontsize=8)
    top.set_yscale("log")
    top.set_ylabel("FLOPs left (% of start)")
    top.set_title("Pruning trajectory (x: attempt outside the budget)")
    top.legend(fontsize=7, ncol=2)
    top.grid(alpha=0.3)
    bottom.set_ylabel("worst task vs reference (pt)")
    bottom.set_xlabel("pruning step")
    bottom.grid(alpha=0.3)
    _save(fig, path)


def step_cap_hint(results: Sequence[MethodResult]) -> str | None:
    """A line for the report when a run ended on max_prune_steps with every task inside the
    budget: pruning stopped before the budget did, so a larger cap can only prune further."""
    from pam_tf.prune.loop import REASONS

    capped = [r.label for r in results
              if r.prune.get("reason") == "max_steps"
              or REASONS["max_steps"] in str(r.prune.get("message", ""))]
    if not capped:
        return None
    return (f"- **Step cap**: {', '.join(capped)} stopped on `--max_prune_steps` with every "
            "task inside the budget (not on the budget): a larger `--max_prune_steps` prunes "
            "further, at the cost of time (`plots/pruning_trajectory.png`).")


def _fmt(v, spec: str = ".3f", none: str = "–") -> str:
    return none if v is None else format(v, spec)


def write_plots(plots: str, results: Sequence[MethodResult]) -> bool:
    """plots/*.png; returns whether a latency plot was drawn (some method was benchmarked)."""
    primary = results[0]
    combos, tasks = primary.combos(), list(primary.plan.tasks)
    reference = primary.prune.get("reference_accuracy", {})
    plot_bars(os.path.join(plots, "flops_per_combination.png"), combos,
              {r.label: [(r.entry(c) or {}).get("flops", np.nan) / 1e6 for c in combos]
               for r in results},
              ylabel="MFLOPs (paper convention)", title="Cost of each task combination")
    acc_series = {r.label: [None if _task_accuracy(r, t) is None else 100 * _task_accuracy(r, t)
                            for t in tasks] for r in results}
    plot_bars(os.path.join(plots, "accuracy_per_task.png"), tasks, acc_series,
              ylabel="test accuracy (%)", title="Accuracy per task (exported TFLite files)",
              reference={t: 100 * v for t, v in reference.items()}, zoom=True)
    have_latency = any(r.latency for r in results)
    if have_latency:
        plot_bars(os.path.join(plots, "latency_per_combination.png"), combos,
                  {r.label: [r.latency.get(c, {}).get("p50_ms") for c in combos]
                   for r in results},
                  errors={r.label: [max(0.0, (r.latency.get(c, {}).get("p90_ms") or 0)
                                        - (r.latency.get(c, {}).get("p50_ms") or 0))
                                    for c in combos] for r in results},
                  ylabel="host latency p50 (ms), whisker to p90",
                  title="LiteRT latency on this host per combination")
    series = pruning_series(results)
    if series:
        plot_pruning(os.path.join(plots, "pruning_trajectory.png"), series,
                     primary.prune.get("budget_points"))
    plot_groups(os.path.join(plots, "groups_per_layer.png"),
                {f"{primary.label} merged (before pruning)": primary.plan_merged,
                 f"{primary.label} after pruning": primary.plan})
    return have_latency


def _results_section(results: Sequence[MethodResult], inputs: dict) -> list[str]:
    """The table of every combination × method, and the savings of the primary method."""
    primary = results[0]
    tasks = list(primary.plan.tasks)
    lines = ["## Results per task combination", "",
             "FLOPs and MACs in the paper's convention (method.md §9), counted from the plan; "
             "'file MMACs' are counted in the .tflite flatbuffers (equal to the plan's with the "
             "split layout, higher with the fused one, which trades MACs for fewer ops); "
             "accuracy measured with the exported TFLite files on the "
             f"{inputs.get('n_test', '?')} held-out test images; latency: LiteRT on this host.", ""]
    header = ["combination", "method", "MFLOPs", "MMACs", "file MMACs", "params", "size (KB)",
              "gzip (KB)"]
    header += [f"acc {t} (%)" for t in tasks] + ["p50 (ms)", "p90 (ms)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in primary.combos():
        for r in results:
            e = r.entry(c)
            if e is None:
                continue
            lat = r.latency.get(c, {})
            accs = [(_fmt(100 * e["accuracy"][t], ".2f") if e.get("accuracy") and
                     e["accuracy"].get(t) is not None else "") for t in tasks]
            lines.append("| " + " | ".join(
                [c, r.label, f"{e['flops'] / 1e6:.4f}", f"{e['macs'] / 1e6:.4f}",
                 f"{e.get('flatbuffer_macs', e['macs']) / 1e6:.4f}", str(e["params"]),
                 f"{e['bytes'] / 1024:.1f}", f"{e['gzip_bytes'] / 1024:.1f}"]
                + accs + [_fmt(lat.get("p50_ms")), _fmt(lat.get("p90_ms"))]) + " |")
    if len(results) > 1:
        lines += ["", "### Savings of " + primary.label, "",
                  "| combination | " + " | ".join(f"{r.label} / {primary.label} FLOPs"
                                                  for r in results[1:]) + " |",
                  "|---|" + "---|" * (len(results) - 1)]
        for c in primary.combos():
            p = primary.entry(c)
            cells = [f"{e['flops'] / p['flops']:.2f}×" if (e := r.entry(c)) and p else "–"
                     for r in results[1:]]
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return lines


def _pruning_section(results: Sequence[MethodResult]) -> list[str]:
    primary = results[0]
    reference = primary.prune.get("reference_accuracy", {})
    lines = ["", "## Pruning", ""]
    lines += [f"- **{r.label}**: {r.prune.get('summary', 'no pruning summary')}" for r in results]
    hint = step_cap_hint(results)
    if hint:
        lines.append(hint)
    if reference:
        lines.append("- Reference (unpruned single-task nets, on the validation half of the "
                     "held-out split, which pruning decisions use): "
                     + ", ".join(f"{t}: {100 * v:.2f} %" for t, v in reference.items()))
    lines += ["", "## Groups per layer (" + primary.label + ")", "",
              "Neurons per group, `owners: width`; before → after pruning.", "",
              "| layer | merged (before pruning) | after pruning |", "|---|---|---|"]
    for l, name in enumerate(primary.plan.unit_names()):
        before = ", ".join(f"{g.key.replace('.', '+')}: {g.width}"
                           for g in primary.plan_merged.layers[l])
        after = ", ".join(f"{g.key.replace('.', '+')}: {g.width}" for g in primary.plan.layers[l])
        lines.append(f"| {name} | {before} | {after} |")
    if pruning_series(results):
        lines += ["", "![pruning trajectory](plots/pruning_trajectory.png)"]
    return lines + ["", "![groups](plots/groups_per_layer.png)"]


def _information_section(information: dict | None, tasks: Sequence[str]) -> list[str]:
    if not information:
        return []
    lines = ["", "## Information per layer", "",
             f"KDE upper bound, σ² = {information.get('sigma2')} "
             f"({information.get('sigma2_scale', 'absolute')} scale), "
             f"{information.get('samples')} samples of the validation half, conv neurons by "
             f"spatial {information.get('reduce', 'max')}, all n·d neurons of the layer, in "
             "nats.", "",
             "| layer | neurons | " + " | ".join(f"I(layer; {t})" for t in tasks) + " |",
             "|---|---|" + "---|" * len(tasks)]
    for row in information.get("layers", []):
        lines.append(f"| {row['layer']} | {row['neurons']} | " + " | ".join(
            f"{row['information'].get(t, float('nan')):.3f}" for t in tasks) + " |")
    return lines


def _paper_section(suite: str | None) -> list[str]:
    if suite != "fashion2":
        return []
    lines = ["", "## The paper's reference rows (LeNet-5, Fashion-MNIST, P-Taylor)", "",
             "From method.md §10, at the paper's input size (not 28×28), so compare the "
             "ratios between methods, not absolute FLOPs.", "",
             "| tasks | B1 MFLOPs | B2 MFLOPs | PAM MFLOPs | B1/PAM | acc B1 | acc PAM |",
             "|---|---|---|---|---|---|---|"]
    for c, v in PAPER_FASHION2.items():
        lines.append(f"| {c} | {v['B1']} | {v['B2']} | {v['PAM']} | "
                     f"{v['B1'] / v['PAM']:.2f}× | {v['acc B1']} | {v['acc PAM']} |")
    return lines


def _provenance_section(config: dict, inputs: dict, command: str) -> list[str]:
    lines = ["", "## What was run", "", f"Command: `{command}`" if command else "", "",
             "| setting | value |", "|---|---|"]
    lines += [f"| {k} | `{v}` |" for k, v in config.items()]
    lines += ["", f"Data: suite `{inputs.get('suite')}`, checksum `{inputs.get('data_checksum')}`,"
              f" {inputs.get('n_train')} of {inputs.get('n_train_split')} training images "
              f"fine-tune; the held-out split is halved into {inputs.get('n_val')} validation "
              f"images (pruning decisions, and the {inputs.get('n_info')} images of the "
              f"information batch) and {inputs.get('n_test')} test images (everything "
              "reported).", ""]
    lines += [f"- model `{m['path']}` (task `{m['task']}`), sha256 `{m['sha256'][:16]}…`"
              for m in inputs.get("models", [])]
    return lines + ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in
                                                 inputs.get("versions", {}).items()), ""]


def write_report(out: str, results: Sequence[MethodResult], *, config: dict, inputs: dict,
                 information: dict | None = None, command: str = "") -> str:
    """Write report.md and plots/*.png into `out`; return the report's path."""
    plots = os.path.join(out, "plots")
    os.makedirs(plots, exist_ok=True)
    have_latency = write_plots(plots, results)
    lines = [f"# pam-tf report: {config.get('suite')} — {' vs '.join(r.label for r in results)}",
             ""]
    lines += _results_section(results, inputs)
    lines += ["", "![FLOPs](plots/flops_per_combination.png)",
              "![accuracy](plots/accuracy_per_task.png)"]
    if have_latency:
        lines += ["![latency](plots/latency_per_combination.png)"]
    lines += _pruning_section(results)
    lines += _information_section(information, list(results[0].plan.tasks))
    lines += _paper_section(config.get("suite"))
    lines += _provenance_section(config, inputs, command)
    path = os.path.join(out, "report.md")
    io.write_text(path, "\n".join(lines) + "\n")
    return path


def _task_accuracy(r: MethodResult, task: str) -> float | None:
    """Accuracy of `task` in the all-task combination (where every method runs every task)."""
    full = r.entry("+".join(r.plan.tasks))
    if full and full.get("accuracy") and full["accuracy"].get(task) is not None:
        return full["accuracy"][task]
    single = r.entry(task)
    if single and single.get("accuracy"):
        return single["accuracy"].get(task)
    return None
