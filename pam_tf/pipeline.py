"""The main job, stage by stage, resumable: validate → trace → information → regroup → build →
prune → export → benchmark → report.

Every stage reads what earlier stages wrote into the output folder and writes its own files
atomically; ``stages.json`` records which stages finished for which configuration, so rerunning
the same command resumes after the last finished stage (and says so). An output folder that holds
a different run is refused rather than overwritten.

Layout of the output folder (the primary method at the top, baselines below):

    run.json  stages.json  inputs.json  chain.json  information.json  report.md  plots/*.png
    plan_merged.json  weights_merged.npz  plan.json  weights.npz  prune_history.json
    manifest.json  tflite/  bench/          (primary method, e.g. pam)
    baselines/b1/{plan.json, weights.npz, manifest.json, tflite/, bench/, ...}
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import time
import zipfile
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from pam_tf import io
from pam_tf.chain import TraceError, TracedModel, check_same_chain, trace_model
from pam_tf.plan import Plan

STAGES = ("validate", "trace", "information", "regroup", "build", "prune", "export",
          "benchmark", "report")
RUN_FORMAT = 1
EXAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "examples")
BASELINE_LABELS = {"none": "b1", "shared": "shared", "pam": "pam"}


class InputError(ValueError):
    """Bad input to the main job: the message names the culprit (file, layer, flag)."""


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's results (the output folder is not part of it)."""

    models: tuple[str, ...]
    suite: str
    method: str = "pam"
    mode: str = "paper"
    alpha: float = 0.05
    alpha_relative: bool = True
    sigma2: float = 0.1
    sigma2_scale: str = "layer"
    info_samples: int = 128
    criterion: str = "taylor"
    budget: float = 1.0
    target_flops: float | None = None
    combinations: tuple[str, ...] = ("all",)
    quantize: str = "float32"
    layout: str = "fused"
    compare: bool = True
    seed: int = 0
    benchmark: bool = True
    train_samples: int = 12000
    val_samples: int = 5000
    finetune_steps: int = 100
    max_prune_steps: int = 40
    flops_aware: bool = True
    backtracks: int = 2
    empty_groups: bool = True
    bench_threads: int = 1

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["models"] = list(self.models)
        d["combinations"] = list(self.combinations)
        return d

    def fingerprint(self) -> str:
        """Identifies the run: every setting and the bytes of every model file (not its path, so
        `make run` and `bazel run` of the same models share one output folder)."""
        files = [io.sha256_file(p) if os.path.exists(p) else p for p in self.models]
        settings = {k: v for k, v in self.to_json().items() if k != "models"}
        blob = json.dumps({"config": settings, "model_sha256": files}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def methods(self) -> list[str]:
        """The primary method first, then the baselines --compare adds."""
        out = [self.method]
        if self.compare and self.method != "none":
            out.append("none")
        return out


def example_models(example: str) -> tuple[tuple[str, ...], str]:
    """Model files and suite of a shipped example (examples/<name>/)."""
    folder = os.path.join(EXAMPLES_DIR, example)
    if not os.path.isdir(folder):
        have = sorted(os.listdir(EXAMPLES_DIR)) if os.path.isdir(EXAMPLES_DIR) else []
        raise InputError(f"no shipped example '{example}' (examples: {', '.join(have) or 'none'})")
    files = sorted(f for f in os.listdir(folder) if f.endswith(".keras"))
    if not files:
        raise InputError(f"example '{example}' has no .keras models in {folder}")
    return tuple(os.path.join(folder, f) for f in files), example


# ----- bookkeeping ----------------------------------------------------------------------------
@dataclass
class Run:
    """An output folder and the bookkeeping that makes a run resumable."""

    out: str
    config: RunConfig
    log: Callable[[str], None] = print
    stages: dict = field(default_factory=dict)

    @property
    def stages_path(self) -> str:
        return os.path.join(self.out, "stages.json")

    def open(self) -> None:
        """Create the folder, or check that it holds this same run; load finished stages."""
        run_path = os.path.join(self.out, "run.json")
        if os.path.isdir(self.out) and os.listdir(self.out):
            if not os.path.exists(run_path):
                raise InputError(f"output folder '{self.out}' is not empty and holds no pam-tf "
                                 "run (no run.json): choose another --out")
            with open(run_path, encoding="utf-8") as f:
                previous = json.load(f)
            if previous.get("fingerprint") != self.config.fingerprint():
                old = previous.get("config", {})
                diffs = [f"--{k}: {old.get(k)!r} then, {v!r} now"
                         for k, v in self.config.to_json().items()
                         if old.get(k) != v and k != "models"]
                diffs = diffs or ["a model file's contents changed"]
                raise InputError(f"output folder '{self.out}' holds a different run ("
                                 + "; ".join(diffs[:4]) + "): choose another --out or delete it")
            if os.path.exists(self.stages_path):
                with open(self.stages_path, encoding="utf-8") as f:
                    self.stages = json.load(f)
        os.makedirs(self.out, exist_ok=True)
        io.write_json(run_path, {"format": RUN_FORMAT, "fingerprint": self.config.fingerprint(),
                                 "config": self.config.to_json()})

    def done(self, key: str) -> bool:
        return key in self.stages

    def finish(self, key: str, seconds: float, **info) -> None:
        self.stages[key] = {"seconds": round(seconds, 2), **info}
        io.write_json(self.stages_path, self.stages)

    def path(self, *parts: str) -> str:
        return os.path.join(self.out, *parts)

    def method_dir(self, method: str) -> str:
        if method == self.config.method:
            return self.out
        return os.path.join(self.out, "baselines", BASELINE_LABELS[method])


def _stage(run: Run, key: str, fn: Callable[[], dict | None]) -> None:
    """Run one stage unless it already finished; log start, end and time."""
    if run.done(key):
        run.log(f"[{key}] already done in an earlier run: resuming after it")
        return
    run.log(f"[{key}] ...")
    start = time.perf_counter()
    info = fn() or {}
    seconds = time.perf_counter() - start
    run.finish(key, seconds, **info)
    run.log(f"[{key}] done in {seconds:.1f} s")


# ----- inputs ---------------------------------------------------------------------------------
def check_model_file(path: str) -> None:
    """Refuse missing, unreadable and Keras 3 model files before TensorFlow touches them."""
    if not os.path.exists(path):
        raise InputError(f"model file '{path}' does not exist")
    if os.path.getsize(path) == 0:
        raise InputError(f"model file '{path}' is empty")
    if path.endswith(".keras"):
        try:
            with zipfile.ZipFile(path) as z:
                names = set(z.namelist())
                meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
        except (zipfile.BadZipFile, json.JSONDecodeError, KeyError) as e:
            raise InputError(f"model file '{path}' is corrupt: not a readable .keras archive "
                             f"({e})") from None
        version = str(meta.get("keras_version", ""))
        if version.startswith("3"):
            raise InputError(f"model file '{path}' was saved by Keras {version} (Keras 3); "
                             "pam-tf reads tf_keras (Keras 2) models: rebuild and save it with "
                             "`import tf_keras as keras`")
        if "config.json" not in names:
            raise InputError(f"model file '{path}' is corrupt: no config.json in the archive")
    elif not path.endswith((".h5", ".hdf5")):
        raise InputError(f"model file '{path}': expected a .keras or .h5 file")


def load_models(paths: Sequence[str]):
    """Load tf_keras models and their JSON sidecars, with the file named in every error."""
    from pam_tf.compat import keras

    models, sidecars = [], []
    for path in paths:
        check_model_file(path)
        try:
            model = keras.models.load_model(path, compile=False)
        except Exception as e:  # noqa: BLE001 - any loader failure means an unreadable file
            raise InputError(f"model file '{path}' could not be loaded by tf_keras: "
                             f"{type(e).__name__}: {str(e).splitlines()[0][:300]}") from None
        side = os.path.splitext(path)[0] + ".json"
        sidecar = {}
        if os.path.exists(side):
            try:
                with open(side, encoding="utf-8") as f:
                    sidecar = json.load(f)
            except json.JSONDecodeError as e:
                raise InputError(f"sidecar '{side}' is not valid JSON ({e})") from None
        models.append(model)
        sidecars.append(sidecar)
    return models, sidecars


def tasks_for_models(dataset, sidecars: Sequence[dict], paths: Sequence[str]):
    """Task of each model: from its sidecar when it names one, else the suite's order."""
    names = [s.get("task") for s in sidecars]
    if all(names):
        for path, s in zip(paths, sidecars):
            if s.get("suite") and s["suite"] != dataset.suite:
                raise InputError(f"model '{path}' was trained on suite '{s['suite']}', the run "
                                 f"uses suite '{dataset.suite}' (pass --suite={s['suite']})")
        if len(set(names)) != len(names):
            raise InputError(f"two models are for the same task: {names}")
        try:
            return tuple(dataset.task(n) for n in names)
        except ValueError as e:
            raise InputError(str(e)) from None
    if len(paths) != len(dataset.tasks):
        raise InputError(f"{len(paths)} models for the {len(dataset.tasks)} tasks of suite "
                         f"'{dataset.suite}' ({', '.join(dataset.task_names)}): give one model "
                         "per task, in task order, or sidecars naming each model's task")
    return dataset.tasks


def parse_combinations(spec: Sequence[str], tasks: Sequence[str]) -> list[tuple[str, ...]] | None:
    """'all' → None (every combination); else 'a', 'a+b', ... checked against the tasks."""
    if list(spec) in (["all"], []):
        return None
    out = []
    for item in spec:
        combo = tuple(t for t in item.split("+") if t)
        bad = [t for t in combo if t not in tasks]
        if bad or not combo:
            raise InputError(f"--combinations: '{item}' names unknown task(s) {bad}; tasks are "
                             f"{', '.join(tasks)}")
        out.append(tuple(t for t in tasks if t in combo))
    return out


# ----- the stages -----------------------------------------------------------------------------
class Pipeline:
    """Runs the stages of one RunConfig into one output folder (see module docstring)."""

    def __init__(self, config: RunConfig, out: str, log: Callable[[str], None] = print):
        self.config = config
        self.run = Run(out, config, log)
        self.log = log
        self._dataset = None
        self._models = None
        self._traced: list[TracedModel] | None = None
        self._tasks = None

    # lazily loaded context (a resumed run reloads only what its remaining stages need) -------
    @property
    def dataset(self):
        if self._dataset is None:
            from pam_tf.data import load_suite

            from pam_tf.data.sources import CacheError, DataUnavailableError

            try:
                self._dataset = load_suite(self.config.suite)
            except (ValueError, KeyError, DataUnavailableError, CacheError) as e:
                raise InputError(f"--suite={self.config.suite}: {e}") from None
        return self._dataset

    def _load_models(self) -> None:
        if self._models is None:
            self._models, sidecars = load_models(self.config.models)
            self._tasks = tasks_for_models(self.dataset, sidecars, self.config.models)

    @property
    def models(self):
        self._load_models()
        return self._models

    @property
    def tasks(self):
        self._load_models()
        return self._tasks

    @property
    def traced(self) -> list[TracedModel]:
        if self._traced is None:
            traced = []
            for path, model in zip(self.config.models, self.models):
                try:
                    traced.append(trace_model(model, name=os.path.basename(path)))
                except TraceError as e:
                    raise InputError(str(e)) from None
            self._traced = traced
        return self._traced

    def splits(self):
        """(train subset for fine-tuning, validation for pruning decisions, test for reports).

        The single-task nets were trained on the whole training split, so accuracy measured there
        flatters them; validation is therefore the first half of the held-out split (at most
        --val_samples images) and everything reported is measured on the other half, which no
        decision ever looked at. (The information batch is drawn from the held-out split too, as
        in the paper; it only chooses groups.)
        """
        ds, c = self.dataset, self.config
        n_val = min(c.val_samples, len(ds.x_test) // 2)
        n_tr = min(c.train_samples, len(ds.x_train))
        tr = (ds.x_train[:n_tr], {k: v[:n_tr] for k, v in ds.y_train.items()})
        va = (ds.x_test[:n_val], {k: v[:n_val] for k, v in ds.y_test.items()})
        te = (ds.x_test[n_val:], {k: v[n_val:] for k, v in ds.y_test.items()})
        return tr, va, te

    # global stages ---------------------------------------------------------------------------
    def stage_validate(self) -> dict:
        ds = self.dataset
        tasks = self.tasks
        from pam_tf.merge import check_heads_match_tasks

        traced = self.traced
        try:
            check_same_chain(traced)
            check_heads_match_tasks(traced, tasks, [os.path.basename(p) for p in self.config.models])
        except (TraceError, ValueError) as e:
            raise InputError(str(e)) from None
        if tuple(traced[0].chain.input_shape) != tuple(ds.input_shape):
            raise InputError(f"model '{self.config.models[0]}' takes input "
                             f"{traced[0].chain.input_shape}, suite '{ds.suite}' has images "
                             f"{ds.input_shape}")
        names = [t.name for t in tasks]
        parse_combinations(self.config.combinations, names)
        inputs = {
            "suite": ds.suite, "data_checksum": ds.checksum, "tasks": names,
            "models": [{"path": p, "sha256": io.sha256_file(p), "task": t}
                       for p, t in zip(self.config.models, names)],
            "n_train": int(len(ds.x_train)), "n_val": int(len(self.splits()[1][0])),
            "n_test": int(len(self.splits()[2][0])),
            "versions": versions(),
        }
        io.write_json(self.run.path("inputs.json"), inputs)
        return {}

    def stage_trace(self) -> dict:
        chain = check_same_chain(self.traced)
        io.write_json(self.run.path("chain.json"), chain.to_json())
        return {"layers": [l.name for l in chain.layers]}

    def stage_information(self) -> dict:
        from pam_tf.merge import pooled_activations
        from pam_tf.regroup import layer_task_information

        c = self.config
        x, y = self.dataset.info_batch(c.info_samples, seed=c.seed)
        acts = pooled_activations(self.models, self.traced, x, reduce="max")
        labels = [t.information_labels(y[t.name]) for t in self.tasks]
        arrays = {f"acts_{i}": a for i, a in enumerate(acts)}
        arrays.update({f"y_{t.name}": y[t.name] for t in self.tasks})
        io.save_npz(self.run.path("information.npz"), arrays)
        chain = self.traced[0].chain
        from pam_tf.merge import layer_sigma2

        info = {"samples": int(len(x)), "sigma2": c.sigma2, "sigma2_scale": c.sigma2_scale,
                "reduce": "max", "layers": []}
        for l, layer in enumerate(chain.hidden):
            per_task = layer_task_information(acts[l], labels,
                                              layer_sigma2(acts[l], c.sigma2, c.sigma2_scale))
            info["layers"].append({"layer": layer.name, "neurons": int(acts[l].shape[1]),
                                   "information": dict(zip([t.name for t in self.tasks],
                                                           map(float, per_task)))})
            self.log(f"  {layer.name:>8}: " + ", ".join(
                f"I(layer; {t.name}) = {v:.3f} nats" for t, v in zip(self.tasks, per_task)))
        io.write_json(self.run.path("information.json"), info)
        return {}

    # per-method stages -------------------------------------------------------------------------
    def stage_regroup(self, method: str) -> dict:
        from pam_tf.merge import PamConfig, pam_plan_from_activations, trivial_plan

        c = self.config
        out = self.run.method_dir(method)
        if method == "pam":
            data = io.load_npz(self.run.path("information.npz"))
            acts = [data[f"acts_{l}"] for l in range(len(self.traced[0].chain.hidden))]
            y = {t.name: data[f"y_{t.name}"] for t in self.tasks}
            cfg = PamConfig(mode=c.mode, alpha_conv=c.alpha, alpha_dense=c.alpha,
                            relative=c.alpha_relative, sigma2=c.sigma2,
                            sigma2_scale=c.sigma2_scale, samples=c.info_samples)
            plan = pam_plan_from_activations(self.traced, self.tasks, acts, y, cfg, self.log)
        else:
            plan = trivial_plan(method, self.traced, self.tasks)
        os.makedirs(out, exist_ok=True)
        plan.save(os.path.join(out, "plan_merged.json"))
        return {"widths": plan.widths()}

    def stage_build(self, method: str) -> dict:
        from pam_tf.build import build_model, inherit_weights

        out = self.run.method_dir(method)
        plan = Plan.load(os.path.join(out, "plan_merged.json"))
        weights = inherit_weights(plan, self.traced)
        model = build_model(plan, weights)  # proves the plan builds and runs
        model.predict(self.dataset.x_test[:8], verbose=0)
        io.save_npz(os.path.join(out, "weights_merged.npz"), weights)
        costs = {"+".join(c): plan.cost(c).flops for c in plan.combinations()}
        self.log("  FLOPs before pruning: " + ", ".join(f"{k}: {v / 1e6:.3f} M"
                                                        for k, v in costs.items()))
        return {}

    def reference_accuracy(self) -> dict[str, float]:
        """Validation accuracy of each unpruned single-task net: what the budget is relative to."""
        path = self.run.path("reference_accuracy.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        _, (x, ys), _ = self.splits()
        ref = {}
        for model, task in zip(self.models, self.tasks):
            ref[task.name] = float(task.accuracy(ys[task.name],
                                                 model.predict(x, verbose=0, batch_size=512)))
        io.write_json(path, ref)
        return ref

    def _prune(self, plan: Plan, weights: dict, tasks, checkpoint_dir: str, label: str):
        from pam_tf.prune import prune

        c = self.config
        train, val, _ = self.splits()
        ref = self.reference_accuracy()
        merged = len(plan.tasks) > 1 and plan.method != "none"
        result = prune(plan, weights, tasks, train, val, criterion=c.criterion,
                       reference_accuracy={t.name: ref[t.name] for t in tasks},
                       budget_points=c.budget, target_flops_fraction=c.target_flops,
                       finetune_steps=c.finetune_steps, max_steps=c.max_prune_steps,
                       initial_finetune_steps=4 * c.finetune_steps if merged else 0,
                       final_finetune_steps=2 * c.finetune_steps, flops_aware=c.flops_aware,
                       backtracks=c.backtracks, empty_groups=c.empty_groups,
                       checkpoint_dir=checkpoint_dir, seed=c.seed,
                       progress=lambda line: self.log(f"  {label}: {line}"))
        if result.reason == "unpruned_outside_budget" and c.target_flops is None:
            raise InputError(f"the accuracy budget of {c.budget} points cannot be met ({label}): "
                             f"{result.message}. Raise --budget, or use --target_flops")
        return result

    def stage_prune(self, method: str) -> dict:
        from pam_tf.build import inherit_weights
        from pam_tf.merge import trivial_plan
        from pam_tf.plan import combine_single_task_plans

        out = self.run.method_dir(method)
        ckpt = os.path.join(out, "prune_checkpoints")
        if method == "none":  # B1: each network pruned alone, then side by side
            plans, weights, history, summaries = [], {}, {}, []
            for i, task in enumerate(self.tasks):
                single = trivial_plan("none", [self.traced[i]], [task])
                res = self._prune(single, inherit_weights(single, [self.traced[i]]), [task],
                                  os.path.join(ckpt, task.name), f"B1/{task.name}")
                plans.append(res.plan)
                weights.update(res.weights)
                history[task.name] = res.history
                summaries.append(f"{task.name}: {res.message}")
            plan = combine_single_task_plans(plans)
            summary = {"reason": "per-task", "message": "; ".join(summaries), "history": history}
        else:
            plan = Plan.load(os.path.join(out, "plan_merged.json"))
            weights = io.load_npz(os.path.join(out, "weights_merged.npz"))
            res = self._prune(plan, weights, self.tasks, ckpt, BASELINE_LABELS[method].upper())
            plan, weights = res.plan, res.weights
            summary = {"reason": res.reason, "message": res.message, "step": res.step,
                       "accuracy": res.accuracy, "flops_fraction": res.flops_fraction,
                       "history": res.history}
        summary["reference_accuracy"] = self.reference_accuracy()
        summary["criterion"] = self.config.criterion
        summary["budget_points"] = self.config.budget
        io.save_npz(os.path.join(out, "weights.npz"), weights)
        io.write_json(os.path.join(out, "prune_history.json"), summary)
        plan.save(os.path.join(out, "plan.json"))  # last: plan.json marks the stage's output
        self.log("  FLOPs after pruning: " + ", ".join(
            f"{'+'.join(k)}: {plan.cost(k).flops / 1e6:.3f} M" for k in plan.combinations()))
        return {}

    def stage_export(self, method: str) -> dict:
        from pam_tf.export import export_all

        c = self.config
        out = self.run.method_dir(method)
        plan = Plan.load(os.path.join(out, "plan.json"))
        weights = io.load_npz(os.path.join(out, "weights.npz"))
        _, _, (x_test, y_test) = self.splits()
        combos = parse_combinations(c.combinations, list(plan.tasks))
        export_all(plan, weights, os.path.join(out, "tflite"), tasks=self.tasks, x_test=x_test,
                   y_test=y_test, combinations=combos, quantize=c.quantize, seed=c.seed,
                   layout=c.layout,
                   progress=lambda line: self.log(f"  {line}"))
        return {}

    def stage_benchmark(self, method: str) -> dict:
        from android_bench.host import run_host_sweep
        from android_bench.models import load_model_set
        from android_bench.plan import PlanConfig

        c = self.config
        out = self.run.method_dir(method)
        model_set = load_model_set(manifest=os.path.join(out, "tflite", "manifest.json"))
        config = PlanConfig(threads=(c.bench_threads,), repeats=3, seed=c.seed, warmup_runs=5,
                            warmup_min_secs=0.1, num_runs=100, min_secs=0.3, max_secs=20.0)
        report = run_host_sweep(model_set, os.path.join(out, "bench"), config,
                                progress=lambda line: self.log(f"  {line}"))
        if not report.complete:
            raise RuntimeError(f"host benchmark of {out} stopped: {report.stopped or report.failures}")
        return {}

    def method_result(self, method: str):
        from pam_tf.report import MethodResult
        from pam_tf.export import load_manifest

        out = self.run.method_dir(method)
        latency = {}
        summary = os.path.join(out, "bench", "summary_combinations.csv")
        if os.path.exists(summary):
            import csv

            with open(summary, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    latency[row["tasks"]] = {"p50_ms": float(row["p50_ms"]),
                                             "p90_ms": float(row["p90_ms"]),
                                             "threads": row["threads"]}
        with open(os.path.join(out, "prune_history.json"), encoding="utf-8") as f:
            prune = json.load(f)
        prune["summary"] = prune.get("message", "")
        return MethodResult(method=method,
                            plan_merged=Plan.load(os.path.join(out, "plan_merged.json")),
                            plan=Plan.load(os.path.join(out, "plan.json")),
                            manifest=load_manifest(os.path.join(out, "tflite", "manifest.json")),
                            latency=latency, prune=prune)

    def stage_report(self, command: str) -> dict:
        from pam_tf.report import write_report

        def read(name):
            path = self.run.path(name)
            if not os.path.exists(path):
                return None
            with open(path, encoding="utf-8") as f:
                return json.load(f)

        results = [self.method_result(m) for m in self.config.methods]
        path = write_report(self.run.out, results, config=self.config.to_json(),
                            inputs=read("inputs.json") or {},
                            information=read("information.json"), command=command)
        self.log(f"  wrote {path}")
        return {}

    def run_all(self, command: str = "") -> str:
        """Run (or resume) every stage; returns the output folder."""
        run = self.run
        for path in self.config.models:  # cheap checks before anything is written
            check_model_file(path)
        run.open()
        self.log(f"pam-tf: {', '.join(self.config.methods)} on suite '{self.config.suite}' "
                 f"-> {run.out}")
        _stage(run, "validate", self.stage_validate)
        _stage(run, "trace", self.stage_trace)
        if "pam" in self.config.methods:
            _stage(run, "information", self.stage_information)
        for method in self.config.methods:
            label = BASELINE_LABELS[method]
            steps = [("regroup", self.stage_regroup), ("build", self.stage_build),
                     ("prune", self.stage_prune), ("export", self.stage_export)]
            if self.config.benchmark:
                steps.append(("benchmark", self.stage_benchmark))
            for name, fn in steps:
                _stage(run, f"{label}/{name}", lambda fn=fn, m=method: fn(m))
        _stage(run, "report", lambda: self.stage_report(command))
        return run.out



def versions() -> dict:
    """Versions that matter for reproducing a run."""
    from pam_tf.compat import keras, tf
    import pam_tf

    out = {"pam_tf": pam_tf.__version__, "python": platform.python_version(),
           "tensorflow": tf.__version__, "tf_keras": keras.__version__,
           "numpy": np.__version__, "platform": platform.platform()}
    for name in ("tensorflow_model_optimization", "ai_edge_litert"):
        try:
            from importlib.metadata import version

            out[name] = version(name.replace("_", "-"))
        except Exception:  # noqa: BLE001 - a missing optional package is reported as absent
            out[name] = None
    return out
