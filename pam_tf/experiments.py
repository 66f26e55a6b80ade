"""Experiments: named settings, a grid of cells, one results file per cell.

A **cell** is (experiment, pruning criterion, seed). It runs the main job (:class:`Pipeline`)
once, with the primary method and every baseline of :data:`pam_tf.methods.BASELINES`, so a
method registered later (B2) appears in every cell without changes here; its result is one JSON
file per (cell, method) in the results folder, written last and atomically, so a grid resumes
cell by cell and a killed cell resumes inside its own run folder.

Seeds change everything random in a cell: the information batch, the fine-tuning order, and,
where an experiment trains its own single-task nets, those nets (seed 0 of an experiment with
shipped models uses the shipped files; other seeds train fresh nets, cached by seed).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable

from pam_tf import io
from pam_tf.inputs import EXAMPLES_DIR, versions

RESULT_FORMAT = 1

#: Settings every cell runs with unless its experiment or --set says otherwise: PAM-S beside PAM
#: (it resumes from PAM's pruned net, so it costs one single-task pruning per task).
CELL_DEFAULTS: dict = {"specialise": True}


@dataclass(frozen=True)
class Experiment:
    """A named setting: suite, architecture, where its single-task nets come from, overrides."""

    name: str
    suite: str
    arch: str = "lenet5"
    shipped: str | None = None          # examples/<shipped>/ holds the seed-0 nets
    settings: dict = field(default_factory=dict)   # flag-style overrides of the main job
    epochs: int = 5
    about: str = ""
    # train each task's net from its own seed (see net_seed): needed where two tasks can have
    # the same labels (fashion-related-0), else deterministic training gives two equal nets
    seed_per_task: bool = False


#: The VGG-style experiments' settings: a merged 4-task VGG starts near 94 MFLOPs per image, and
#: its first 400 fine-tuning mini-batches took 15 min on 2 shared cores, so fine-tuning per step
#: is halved, pruning steps capped, B2's retraining shortened and PAM-S left out; every method of
#: a cell gets the same settings, so the comparison stays fair. The merged net's recovery keeps
#: its default rounds: with one round (200 + 200 mini-batches) composite's garment was still 2.35
#: points below its net, and the cell failed before pruning.
#: Fine-tuning stays per network on 12 000 images (the main job's defaults before issue 14
#: made them per task on 48 000): n times the mini-batches for a merged VGG did not fit.
LIGHT_FINETUNING = {"finetune_scale": "network", "train_samples": 12000}
VGG_LIGHT = {"finetune_steps": 50, "final_finetune_steps": 100, "max_prune_steps": 24,
             "mtz_retrain_steps": 100, "mtz_samples": 512, "specialise": False,
             **LIGHT_FINETUNING}

#: The graph experiments' settings (residual / mobile nets, pam_tf.graph): what graph runs
#: take (split layout, no PAM-S: it is not written for graphs; the criterion, magnitude or
#: taylor, comes from tools/reproduce.py --criteria), B1 as the only baseline (B2 runs on graphs
#: too, but its class-by-class zipping with retraining did not fit these cells' time on 2 cores)
#: and light fine-tuning
#: for 2 CPU cores: a merged 4-task mobilenetv2_small's 200 recovery mini-batches took over
#: 10 min here (docs/graphs.md). The merged start's recovery is longer than the pruning
#: fine-tunes (8 x finetune_steps a round, up to 3 more rounds): after 200 mini-batches PAM's
#: merged nets were still 22 (mobilenetv2_small) and 28 (resnet_small) points below digit's
#: reference, from chance before any. Every method of a cell gets the same settings.
GRAPH_LIGHT = {"mode": "subsets", "layout": "split", "baselines": "none", "specialise": False,
               "finetune_steps": 50, "initial_finetune_steps": 400, "max_prune_steps": 6,
               "backtracks": 1, "val_samples": 2000, **LIGHT_FINETUNING}

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in [
    Experiment("fashion2", "fashion2", shipped="fashion2",
               about="the paper's LeNet-5 / Fashion-MNIST setting (tasks a = classes 0-4, "
                     "b = 5-9)"),
    Experiment("composite", "composite", settings={"mode": "subsets"},
               about="n = 4 on 28x56 digit|garment images: digit, parity, garment, category"),
    Experiment("composite-paper", "composite", settings={"mode": "paper"},
               about="as composite, PAM in the paper's two-group-kind mode"),
    Experiment("fashion5", "fashion5", settings={"mode": "subsets"},
               about="n = 5 tasks over the Fashion-MNIST classes"),
    Experiment("composite-vgg", "composite", arch="vgg_small",
               settings={"mode": "subsets", **VGG_LIGHT}, epochs=3,
               about="as composite, with the small VGG-style net (six 3x3 convs, two dense); "
                     "lighter fine-tuning (VGG_LIGHT) to fit 2 CPU cores"),
    Experiment("fashion5-vgg", "fashion5", arch="vgg_small",
               settings={"mode": "subsets", **VGG_LIGHT}, epochs=3,
               about="as fashion5, with the small VGG-style net; lighter fine-tuning"),
    *[Experiment(f"composite-{arch.split('_')[0]}", "composite", arch=arch,
                 settings=GRAPH_LIGHT, epochs=2,
                 about=f"as composite, with the zoo's {arch} ({kind}); graph settings "
                       "(GRAPH_LIGHT: split layout, B1 only, light fine-tuning)")
      for arch, kind in (("resnet_small", "residual basic blocks"),
                         ("mobilenetv2_small", "inverted residual blocks, depthwise convs"))],
    Experiment("synthetic", "synthetic", epochs=3,
               settings={"train_samples": 256, "val_samples": 128, "finetune_steps": 4,
                         "max_prune_steps": 2, "info_samples": 64, "budget": 60.0,
                         "benchmark": False},
               about="tiny generated data and very short pruning: for tests and smoke runs"),
    *[Experiment(f"fashion-related-{k}", f"fashion-related-{k}", seed_per_task=True,
                 about=f"relatedness sweep: {k} of task b's labels swapped for unrelated ones")
      for k in range(6)],
]}


def get_experiment(name: str) -> Experiment:
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise ValueError(f"unknown experiment {name!r}; one of {', '.join(EXPERIMENTS)}") from None


def net_seed(exp: Experiment, seed: int, task_index: int) -> int:
    """The training seed of task `task_index`'s net in cell seed `seed`.

    Plain experiments train every task's net from `seed`. With `seed_per_task` each task gets
    its own, 1000·seed + index: at k = 0 of the relatedness sweep tasks a and b have the same
    labels, and one seed would give two identical nets (deterministic ops), so B1 would prune
    one net twice and the exporter would fold the copies (the paper merges independently
    trained nets). Task a keeps the same seed for every k, so across the sweep only b changes.
    """
    return 1000 * seed + task_index if exp.seed_per_task else seed


def model_files(exp: Experiment, seed: int, cache: str,
                progress: Callable[[str], None] = print, distribute: str = "default") -> list[str]:
    """The experiment's single-task nets for `seed`: shipped (seed 0), else trained (under the
    tf.distribute strategy `distribute`) and cached."""
    from pam_tf.data import load_suite

    ds = load_suite(exp.suite)
    paths = []
    for i, task in enumerate(ds.tasks):
        shipped = os.path.join(EXAMPLES_DIR, exp.shipped or "", f"{exp.arch}_{task.name}.keras")
        if exp.shipped and seed == 0 and os.path.exists(shipped):
            paths.append(shipped)
            continue
        train_seed = net_seed(exp, seed, i)
        # the training seed is in the name when it differs from the cell's, so a net cached
        # under the other scheme is never taken for this one
        tag = f"seed{seed}" + (f"_net{train_seed}" if exp.seed_per_task else "")
        path = os.path.join(cache, exp.suite, f"{exp.arch}_{task.name}_{tag}.keras")
        if not os.path.exists(path):
            from pam_tf.train import save_single_task_model, train_single_task

            progress(f"  training {exp.arch} for {exp.suite}/{task.name}, seed {seed} "
                     f"(net seed {train_seed}, {exp.epochs} epochs) -> {path}")
            model, metrics = train_single_task(ds, task.name, exp.arch, epochs=exp.epochs,
                                               seed=train_seed, verbose=0, distribute=distribute)
            save_single_task_model(model, path, dataset=ds, task_name=task.name, arch=exp.arch,
                                   metrics=metrics, seed=train_seed, epochs=exp.epochs,
                                   batch_size=128, lr=1e-3)
        paths.append(path)
    return paths


def git_commit() -> str | None:
    """The commit of the code that produced a result (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=os.path.dirname(EXAMPLES_DIR), timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def git_dirty() -> bool | None:
    """Whether tracked files differ from the commit (a result from uncommitted code carries
    no claim; the page says so); None outside a git checkout."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                             capture_output=True, text=True, cwd=os.path.dirname(EXAMPLES_DIR),
                             timeout=10)
        return bool(out.stdout.strip()) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def cell_name(exp: str, method_label: str, criterion: str, seed: int, variant: str = "") -> str:
    """The results file of one method in one cell (`variant`: a named set of --set values)."""
    return f"{exp}__{method_label}__{criterion}__seed{seed}" + \
        (f"__{variant}" if variant else "") + ".json"


def cell_folder(runs: str, exp: str, criterion: str, seed: int, variant: str = "") -> str:
    return os.path.join(runs, exp, variant or "default", f"{criterion}__seed{seed}")


def run_models(pipeline) -> list[dict]:
    """The model files a run used, {file: base name, sha256}, from the checksums its
    inputs.json recorded when it validated them, so that a run folder summarises after its
    model files moved (a deleted checkout or worktree); hashed now for a folder without it."""
    inputs = pipeline.folder.path("inputs.json")
    recorded = io.read_json(inputs, what="inputs file").get("models") \
        if os.path.exists(inputs) else None
    if recorded:
        return [{"file": os.path.basename(m["path"]), "sha256": m["sha256"]} for m in recorded]
    return [{"file": os.path.basename(p), "sha256": io.sha256_file(p)}
            for p in pipeline.config.models]


def method_summary(pipeline, method, exp: Experiment, criterion: str, seed: int,
                   variant: str = "") -> dict:
    """The results JSON of one method in one finished cell (read from its run folder)."""
    r = pipeline.method_result(method)
    tasks = list(r.plan.tasks)
    combos = {}
    for entry in r.manifest["combinations"]:
        key = "+".join(entry["tasks"])
        combos[key] = {"flops": entry["flops"], "macs": entry["macs"],
                       "params": entry["params"],
                       "file_macs": entry.get("flatbuffer_macs", entry["macs"]),
                       "accuracy": entry.get("accuracy"),
                       "latency": r.latency.get(key)}
    full = combos["+".join(tasks)]
    ref = r.prune.get("reference_accuracy", {})
    ref_test = pipeline.reference_accuracy("test")
    budget = r.prune.get("budget_points")
    return {
        "format": RESULT_FORMAT, "experiment": exp.name, "suite": exp.suite, "arch": exp.arch,
        "method": method.name, "label": method.label, "title": method.title,
        "criterion": criterion, "seed": seed, "variant": variant, "tasks": tasks,
        "combinations": combos,
        "accuracy": full["accuracy"], "reference_accuracy": ref,
        "reference_accuracy_test": ref_test, "budget_points": budget,
        # the budget on the half the accuracy is measured on: test accuracy against the
        # unpruned net's test accuracy (pruning itself was steered on the validation half)
        "within_budget": {t: full["accuracy"][t] >= ref_test[t] - budget / 100 for t in tasks}
        if full.get("accuracy") and ref and budget is not None else None,
        "attribution": {"+".join(c): r.plan.attribution(c) for c in r.plan.combinations()},
        "attribution_merged": {"+".join(c): r.plan_merged.attribution(c)
                               for c in r.plan_merged.combinations()},
        "groups": [{g.key.replace(".", "+"): g.width for g in groups} for groups in r.plan.layers],
        "groups_merged": [{g.key.replace(".", "+"): g.width for g in groups}
                          for groups in r.plan_merged.layers],
        "prune_reason": r.prune.get("reason"), "prune_message": r.prune.get("message"),
        "settings": {k: v for k, v in pipeline.config.flat().items() if k != "models"},
        "models": run_models(pipeline),  # no machine-specific paths
        "git_commit": git_commit(), "git_dirty": git_dirty(), "versions": {k: v for k, v in versions().items()
                                                 if k != "platform"},
        "machine": machine(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


#: CPU features whose presence changes which float kernels TF's oneDNN picks
SIMD_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def machine(cpuinfo: str = "/proc/cpuinfo") -> dict:
    """Where a cell ran: system, CPU count and processor, and (Linux) the CPU model and the
    SIMD features oneDNN chooses kernels by. Why: the same code, seed and nets gave PAM
    0.0516 MFLOPs on one machine and 0.098 on another (fashion2 seed 0: the other CPU's
    rounding flipped a step at the budget's edge), so a results file must say on what CPU
    it was measured."""
    out = {"system": platform.system(), "cpus": os.cpu_count(),
           "processor": platform.processor() or platform.machine()}
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return out
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                  if line.startswith("model name")), None)
    flags = next((set(line.split(":", 1)[1].split()) for line in text.splitlines()
                  if line.startswith("flags")), set())
    if model:
        out["cpu"] = model
    out["simd"] = [f for f in SIMD_FLAGS if f in flags]
    return out


def cell_settings(exp: Experiment, criterion: str, seed: int, settings: dict) -> dict:
    """The main job's flat settings of one cell: cell defaults, then the experiment's, then
    --set, then the cell's criterion and seed."""
    return {**CELL_DEFAULTS, **exp.settings, **settings, "criterion": criterion, "seed": seed}


#: Settings that choose which methods a cell runs, or where its arithmetic runs, rather than
#: what a method computes: two results files that differ only in these are one measurement (a
#: cell's B2 file may come from a ``--method=mtz --nocompare`` run beside the PAM run).
NOT_MEASURED = frozenset({"models", "seed", "method", "compare", "specialise", "baselines",
                          "distribute"})


def cell_flat(exp: Experiment, criterion: str, seed: int, settings: dict) -> dict:
    """Every main-job setting of one cell, defaults filled in, as a results file records them
    (JSON values: tuples are lists)."""
    from pam_tf.config import RunConfig

    c = RunConfig.from_flat((), exp.suite, **cell_settings(exp, criterion, seed, settings))
    return json.loads(json.dumps(c.flat()))


def settings_diff(recorded: dict, expected: dict,
                  ignore: frozenset = NOT_MEASURED) -> dict[str, tuple]:
    """{setting: (recorded value, expected value)} for every setting both know whose values
    differ. A setting missing from `recorded` is skipped: the file was written before it
    existed, and so ran with what became its default (the results format keeps no other
    record of it)."""
    expected = json.loads(json.dumps(expected))
    out = {}
    for key in sorted(recorded.keys() & expected.keys() - ignore):
        value = json.loads(json.dumps(recorded[key]))
        if value != expected[key]:
            out[key] = (value, expected[key])
    return out


def format_settings(values: dict) -> str:
    """{'budget': 0.5, 'mtz_merge': ['1']} → 'budget=0.5,mtz_merge=1', as ``--set`` takes them
    (a one-element list is its element; a longer one, which --set cannot carry, is joined
    with ';' so that it still reads as one value)."""
    def one(v) -> str:
        return ";".join(map(str, v)) if isinstance(v, list) else str(v)
    return ",".join(f"{k}={one(v)}" for k, v in values.items())


def cell_labels(exp: Experiment, settings: dict) -> list[str]:
    """The labels of the methods a cell of `exp` runs (one results file each), from the same
    settings the cell runs with: an experiment may leave PAM-S or B2 out."""
    from pam_tf.config import RunConfig
    from pam_tf.methods import methods_of_run

    c = RunConfig.from_flat((), exp.suite, **cell_settings(exp, "taylor", 0, settings))
    return [m.label for m in methods_of_run(c.method, c.compare, c.specialise, c.baselines)]


def run_cell(exp: Experiment, criterion: str, seed: int, *, runs: str, results: str,
             cache: str, settings: dict, log: Callable[[str], None],
             variant: str = "") -> list[str]:
    """Run one cell (resuming its run folder) and write one results JSON per method."""
    from pam_tf.config import RunConfig
    from pam_tf.pipeline import Pipeline

    flat = cell_settings(exp, criterion, seed, settings)
    paths = model_files(exp, seed, cache, log, distribute=flat.get("distribute", "default"))
    config = RunConfig.from_flat(paths, exp.suite, **flat)
    out = cell_folder(runs, exp.name, criterion, seed, variant)
    pipeline = Pipeline(config, out, lambda line: log(f"    {line}"))
    pipeline.run_all(command=f"tools/reproduce.py cell {exp.name} {criterion} seed {seed}"
                     + (f" variant {variant}" if variant else ""))
    return summarize_cell(exp, criterion, seed, out=out, results=results, variant=variant)


def summarize_cell(exp: Experiment, criterion: str, seed: int, *, out: str, results: str,
                   variant: str = "") -> list[str]:
    """(Re)write the results JSON of a finished cell from its run folder alone, with the
    settings the run recorded (so results can gain fields without re-running the cell)."""
    from pam_tf.config import RunConfig
    from pam_tf.pipeline import Pipeline

    recorded = io.read_json(os.path.join(out, "run.json"), what="run file")["config"]
    flat = {k: v for k, v in recorded.items() if k not in ("models", "suite")}
    config = RunConfig.from_flat(recorded["models"], recorded["suite"], **flat)
    pipeline = Pipeline(config, out, lambda _line: None)
    written = []
    for method in pipeline.methods:
        path = os.path.join(results, cell_name(exp.name, method.label, criterion, seed, variant))
        io.write_json(path, method_summary(pipeline, method, exp, criterion, seed, variant))
        written.append(path)
    return written
