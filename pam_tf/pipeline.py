"""The main job, stage by stage, resumable: validate → trace → information → per method (regroup →
build → prune → export → benchmark) → report.

Each stage is a small method over declared artifacts (:mod:`pam_tf.artifacts`): it reads what
earlier stages wrote into the output folder and writes its own files atomically. Its resume key
hashes the configuration sections it reads and the keys of the stages it reads from
(:mod:`pam_tf.runfolder`), so a changed export or benchmark setting re-runs only export,
benchmark and report. Methods are objects (:mod:`pam_tf.methods`); nothing here tests a name.

Layout of the output folder (the primary method at the top, baselines below):

    run.json  stages.json  inputs.json  chain.json  traced.json  traced_weights.npz
    information.{json,npz}  reference_accuracy.json  report.md  plots/*.png
    plan_merged.json  weights_merged.npz  plan.json  weights.npz  prune_history.json
    tflite/  bench/                        (primary method, e.g. pam)
    baselines/b1/{plan.json, weights.npz, tflite/, bench/, ...}
"""
from __future__ import annotations

import os
import shutil
from typing import Callable

from pam_tf import io
from pam_tf.artifacts import Network, load_latency, load_traced, save_latency, save_traced
from pam_tf.chain import TraceError
from pam_tf.networks import build_for, check_same_network, is_graph_plan, trace_network
from pam_tf.config import RunConfig
from pam_tf.inputs import (InputError, check_model_count, check_model_file, example_models,
                           load_models, parse_combinations, tasks_for_models, versions)
from pam_tf.methods import MergeInputs, Method, methods_of_run
from pam_tf.runfolder import RunFolder, fingerprint, stage_key

__all__ = ["Pipeline", "RunConfig", "InputError", "example_models", "versions"]


class Pipeline:
    """Runs the stages of one RunConfig into one output folder (see module docstring)."""

    def __init__(self, config: RunConfig, out: str, log: Callable[[str], None] = print):
        self.config = config
        self.folder = RunFolder(out, config, log)
        self.log = log
        try:
            self.methods = methods_of_run(config.method, config.compare, config.specialise,
                                          config.baselines)
        except ValueError as e:
            raise InputError(str(e)) from None
        self.keys: dict[str, str] = {}
        self._dataset = self._models = self._tasks = self._traced = self._splits = None

    # ----- lazily loaded context: a resumed run loads only what its remaining stages need ----
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

    @property
    def models(self):
        if self._models is None:
            self._models, sidecars = load_models(self.config.models)
            self._tasks = tasks_for_models(self.dataset, sidecars, self.config.models)
        return self._models

    @property
    def tasks(self):
        """The models' tasks: from their sidecars (loading the models), or, once validated, from
        inputs.json without loading them."""
        if self._tasks is None:
            inputs = self.folder.path("inputs.json")
            if self._models is None and os.path.exists(inputs):
                names = io.read_json(inputs, InputError, "inputs file")["tasks"]
                self._tasks = tuple(self.dataset.task(n) for n in names)
            else:
                _ = self.models  # sets _tasks
        return self._tasks

    @property
    def traced(self):
        if self._traced is None:
            self._traced = load_traced(self.folder.out)
        return self._traced

    @property
    def splits(self):
        if self._splits is None:
            from pam_tf.splits import make_splits

            try:
                self._splits = make_splits(self.dataset, self.config.data, self.config.seed)
            except ValueError as e:
                raise InputError(str(e)) from None
        return self._splits

    def method_dir(self, method: Method) -> str:
        if method is self.methods[0]:
            return self.folder.out
        return self.folder.path("baselines", method.label)

    # ----- global stages ------------------------------------------------------------------------
    def stage_validate(self) -> dict:
        _ = self.models  # the tasks come from the models' sidecars, not an earlier inputs.json
        ds, tasks, paths = self.dataset, self._tasks, self.config.models
        traced = self._traced = self._trace_models()
        from pam_tf.merge import check_heads_match_tasks

        try:
            network = check_same_network(traced)
            check_heads_match_tasks(traced, tasks, [os.path.basename(p) for p in paths])
        except (TraceError, ValueError) as e:
            raise InputError(str(e)) from None
        if not hasattr(network, "layers"):
            self._check_graph_settings(network)
        if tuple(network.input_shape) != tuple(ds.input_shape):
            raise InputError(f"model '{paths[0]}' takes input {network.input_shape}, "
                             f"suite '{ds.suite}' has images {ds.input_shape}")
        names = [t.name for t in tasks]
        parse_combinations(self.config.export.combinations, names)
        from pam_tf.prune.selection import usage_of

        try:
            usage_of(names, self.config.prune.combination_weights, strict=True)
        except ValueError as e:
            raise InputError(str(e)) from None
        io.write_json(self.folder.path("inputs.json"), {
            "suite": ds.suite, "data_checksum": ds.checksum, "tasks": names,
            "models": [{"path": p, "sha256": io.sha256_file(p), "task": t}
                       for p, t in zip(paths, names)],
            "n_train_split": int(len(ds.x_train)), **self.splits.sizes(),
            "versions": versions()})
        return {}

    def _check_graph_settings(self, graph) -> None:
        """Graph networks (residual, depthwise) take a subset of the methods and settings:
        refuse the rest before any stage runs, naming the flag."""
        from pam_tf.graph.prune import GraphPruneSettings

        unsupported = [m.title for m in self.methods if not m.graphs]
        if unsupported:
            raise InputError(f"the models are graph networks (residual adds, depthwise "
                             f"convolutions): {', '.join(unsupported)} is not implemented for "
                             "them; leave it out (PAM-S: --nospecialise; a baseline: name the "
                             "others in --baselines)")
        for method in self.methods:
            try:
                method.check_graph_config(self.config, graph)
            except ValueError as e:
                raise InputError(f"{method.title}: {e}") from None
        if self.config.export.layout == "fused":
            raise InputError("the models are graph networks: --layout=fused is not implemented "
                             "for them; pass --layout=split")
        # graph fine-tuning has its own loop (pam_tf/graph/train.py), which runs on one device
        if self.config.distribute.distribute != "default":
            raise InputError(f"the models are graph networks: --distribute="
                             f"{self.config.distribute.distribute} is not implemented for them "
                             "(their fine-tuning runs on one device); pass --distribute=default")
        try:
            GraphPruneSettings.from_prune_settings(self.config.prune)
        except ValueError as e:
            raise InputError(str(e)) from None

    def _trace_models(self):
        traced = []
        for path, model in zip(self.config.models, self.models):
            try:
                traced.append(trace_network(model, name=os.path.basename(path)))
            except TraceError as e:
                raise InputError(str(e)) from None
        return traced

    def stage_trace(self) -> dict:
        if self._traced is None:  # validate traced them already unless it ran in an earlier run
            self._traced = self._trace_models()
        network = check_same_network(self._traced)
        io.write_json(self.folder.path("chain.json"), network.to_json())
        save_traced(self.folder.out, self._traced)
        if hasattr(network, "layers"):
            return {"layers": [l.name for l in network.layers]}
        return {"classes": list(network.class_names)}

    def stage_information(self) -> dict:
        from pam_tf.graph.merge import measure_graph_information
        from pam_tf.merge import measure_information
        from pam_tf.networks import is_graph_traced

        x, y = self.splits.info
        measure = measure_graph_information if is_graph_traced(self.traced[0]) else \
            measure_information
        table = measure(self.models, self.traced, self.tasks, x, y, self.config.info,
                        progress=self.log)
        table.save(self.folder.out)
        return {}

    def reference_accuracy(self, split: str = "val") -> dict[str, float]:
        """Accuracy of each unpruned single-task net on the validation half (what the budget is
        relative to) or, for reports, on the test half (``split="test"``)."""
        name = "reference_accuracy.json" if split == "val" else f"reference_accuracy_{split}.json"
        path = self.folder.path(name)
        if os.path.exists(path):
            return io.read_json(path, InputError, "reference accuracy")
        x, ys = getattr(self.splits, split)
        ref = {task.name: float(task.accuracy(ys[task.name],
                                              model.predict(x, verbose=0, batch_size=512)))
               for model, task in zip(self.models, self.tasks)}
        io.write_json(path, ref)
        return ref

    def teacher_outputs(self) -> dict | None:
        """With --distill: each unpruned single-task net's outputs on the fine-tuning images
        (teacher_outputs.npz, computed once for every method)."""
        if not self.config.prune.distill:
            return None
        path = self.folder.path("teacher_outputs.npz")
        if os.path.exists(path):
            return io.load_npz(path)
        x = self.splits.train[0]
        out = {task.name: model.predict(x, verbose=0, batch_size=512).astype("float32")
               for model, task in zip(self.models, self.tasks)}
        io.save_npz(path, out)
        return out

    # ----- per-method stages ----------------------------------------------------------------------
    def merge_inputs(self, method: Method) -> MergeInputs:
        """What `method` may use to produce its start: only what it declares it needs."""
        information = parent = models = train = None
        if method.uses_information:
            from pam_tf.merge import InformationTable

            information = InformationTable.load(self.folder.out)
        if method.uses_data:
            models, train = self.models, self.splits.train
        if method.starts_from is not None:
            parent = Network.load(self.method_dir(self.parent_of(method)), "plan.json",
                                  "weights.npz")
        return MergeInputs(self.traced, self.tasks, information, self.config.merge, self.log,
                           models=models, train=train, parent=parent, seed=self.config.seed,
                           mtz=self.config.mtz)

    def parent_of(self, method: Method) -> Method:
        """The method of this run whose pruned network `method` starts from."""
        for m in self.methods:
            if m.name == method.starts_from and m is not method:
                return m
        raise InputError(f"method {method.title} starts from {method.starts_from!r}, which "
                         "this run does not prune")

    def stage_regroup(self, method: Method) -> dict:
        start = method.start(self.merge_inputs(method))
        out = self.method_dir(method)
        os.makedirs(out, exist_ok=True)
        # a new start makes the pruning checkpoints of an earlier one stale (e.g. after an
        # --mtz_* flag changed, which re-runs B2 in the same folder)
        shutil.rmtree(os.path.join(out, "prune_checkpoints"), ignore_errors=True)
        start.save(out, "plan_merged.json", "weights_merged.npz")
        return {"widths": start.plan.widths()}

    def stage_build(self, method: Method) -> dict:
        start = Network.load(self.method_dir(method), "plan_merged.json", "weights_merged.npz")
        build_for(start.plan, start.weights).predict(self.splits.val[0][:8], verbose=0)
        plan = start.plan
        self.log("  FLOPs before pruning: " + ", ".join(
            f"{'+'.join(c)}: {plan.cost(c).flops / 1e6:.3f} M" for c in plan.combinations()))
        return {}

    def _prune_one(self, method: Method, out: str):
        """The callable a method prunes each of its networks with (pam_tf.methods.PruneOne)."""
        import pam_tf.prune as prune_module

        ref, teacher = self.reference_accuracy(), self.teacher_outputs()

        def prune_one(plan, weights, tasks, subfolder: str, label: str):
            settings = self.config.prune.resolved(merged=method.merged, n_tasks=len(tasks))
            if is_graph_plan(plan):
                return self._prune_graph(plan, weights, tasks, settings, ref, label)
            result = prune_module.prune(
                plan, weights, tasks, self.splits.train, self.splits.val, settings,
                reference_accuracy={t.name: ref[t.name] for t in tasks},
                checkpoint_dir=os.path.join(out, "prune_checkpoints", subfolder).rstrip(os.sep),
                seed=self.config.seed, progress=lambda line: self.log(f"  {label}: {line}"),
                teacher=None if teacher is None else {t.name: teacher[t.name] for t in tasks})
            # a method starting from another's result (PAM-S) keeps such a start as its result
            if result.reason == "unpruned_outside_budget" and settings.target_flops is None \
                    and method.starts_from is None:
                raise InputError(f"the accuracy budget of {settings.budget} points cannot be met "
                                 f"({label}): {result.message}. Raise --budget, or use "
                                 "--target_flops")
            return result
        return prune_one

    def _prune_graph(self, plan, weights, tasks, settings, ref, label: str):
        """A graph network's pruning (:mod:`pam_tf.graph.prune`; no per-attempt checkpoints:
        the stage as a whole resumes)."""
        from pam_tf.graph.prune import GraphPruneSettings, prune_graph

        try:
            graph_settings = GraphPruneSettings.from_prune_settings(settings)
        except ValueError as e:
            raise InputError(str(e)) from None
        result = prune_graph(plan, weights, tasks, self.splits.train, self.splits.val,
                             {t.name: ref[t.name] for t in tasks}, graph_settings,
                             seed=self.config.seed,
                             progress=lambda line: self.log(f"  {label}: {line}"))
        if result.reason == "unpruned_outside_budget":
            raise InputError(f"the accuracy budget of {settings.budget} points cannot be met "
                             f"({label}): {result.message}. Raise --budget")
        return result

    def stage_prune(self, method: Method) -> dict:
        out = self.method_dir(method)
        start = Network.load(out, "plan_merged.json", "weights_merged.npz")
        pruned = method.prune(start.plan, start.weights, self.tasks, self._prune_one(method, out))
        summary = {**pruned.summary, "reference_accuracy": self.reference_accuracy(),
                   "criterion": self.config.prune.criterion,
                   "budget_points": self.config.prune.budget}
        io.write_json(os.path.join(out, "prune_history.json"), summary)
        Network(pruned.plan, pruned.weights).save(out, "plan.json", "weights.npz")
        self.log("  FLOPs after pruning: " + ", ".join(
            f"{'+'.join(k)}: {pruned.plan.cost(k).flops / 1e6:.3f} M"
            for k in pruned.plan.combinations()))
        return {}

    def stage_export(self, method: Method) -> dict:
        from pam_tf.export import export_all

        c, out = self.config.export, self.method_dir(method)
        net = Network.load(out, "plan.json", "weights.npz")
        x_test, y_test = self.splits.test
        export_all(net.plan, net.weights, os.path.join(out, "tflite"), tasks=self.tasks,
                   x_test=x_test, y_test=y_test,
                   combinations=parse_combinations(c.combinations, list(net.plan.tasks)),
                   quantize=c.quantize, seed=self.config.seed, layout=c.layout,
                   separate_files=method.separate_files,
                   multi_signature=method.multi_signature,
                   progress=lambda line: self.log(f"  {line}"))
        return {}

    def stage_benchmark(self, method: Method) -> dict:
        from android_bench.host import run_host_sweep
        from android_bench.models import load_model_set
        from android_bench.plan import PlanConfig

        b, out = self.config.bench, self.method_dir(method)
        model_set = load_model_set(manifest=os.path.join(out, "tflite", "manifest.json"))
        config = PlanConfig(threads=(b.bench_threads,), repeats=b.bench_repeats,
                            seed=self.config.seed, warmup_runs=b.bench_warmup_runs,
                            warmup_min_secs=0.1, num_runs=b.bench_num_runs,
                            min_secs=b.bench_min_secs, max_secs=b.bench_max_secs)
        report = run_host_sweep(model_set, os.path.join(out, "bench"), config,
                                progress=lambda line: self.log(f"  {line}"))
        if not report.complete:
            raise RuntimeError(f"host benchmark of {out} stopped: "
                               f"{report.stopped or report.failures}")
        save_latency(out, report.combinations)
        return {}

    def method_result(self, method: Method):
        from pam_tf.export import load_manifest
        from pam_tf.graph.plan import load_any_plan
        from pam_tf.report import MethodResult

        out = self.method_dir(method)
        prune = io.read_json(os.path.join(out, "prune_history.json"), what="pruning summary")
        prune["summary"] = prune.get("message", "")
        return MethodResult(method=method.name, title=method.title,
                            plan_merged=load_any_plan(os.path.join(out, "plan_merged.json")),
                            plan=load_any_plan(os.path.join(out, "plan.json")),
                            manifest=load_manifest(os.path.join(out, "tflite", "manifest.json")),
                            latency=load_latency(out) if self.config.bench.benchmark else {},
                            prune=prune)

    def stage_report(self, command: str) -> dict:
        from pam_tf.report import write_report

        def read(name):
            path = self.folder.path(name)
            return io.read_json(path) if os.path.exists(path) else None

        path = write_report(self.folder.out, [self.method_result(m) for m in self.methods],
                            config=self.config.flat(), inputs=read("inputs.json") or {},
                            information=read("information.json"), command=command)
        self.log(f"  wrote {path}")
        return {}

    # ----- the driver -----------------------------------------------------------------------------
    def _run(self, name: str, fn: Callable[[], dict | None], *parts) -> str:
        """Run stage `name` under a key of `parts` (config sections and upstream stage keys)."""
        key = stage_key(name, *parts)
        self.folder.run_stage(name, key, fn)
        self.keys[name] = key
        return key

    def _run_method(self, method: Method, info_key: str | None) -> tuple[str, str]:
        """A method's stages; returns the keys of its export and benchmark stages."""
        c, lab = self.config, method.label
        extra = []  # only for methods that read more, so older run folders keep their keys
        if method.starts_from is not None:
            extra.append(self.keys[f"{self.parent_of(method).label}/prune"])
        if method.uses_data:
            extra += [c.data, self.keys["validate"]]
        extra += [getattr(c, section) for section in method.config_sections]
        regroup = self._run(f"{lab}/regroup", lambda: self.stage_regroup(method),
                            self.keys["trace"], info_key if method.uses_information else None,
                            c.merge if method.uses_information else None, *extra)
        build = self._run(f"{lab}/build", lambda: self.stage_build(method), regroup)
        prune = self._run(f"{lab}/prune", lambda: self.stage_prune(method), build, c.prune,
                          c.data, self.keys["validate"])
        export = self._run(f"{lab}/export", lambda: self.stage_export(method), prune, c.export)
        bench = None
        if c.bench.benchmark:
            bench = self._run(f"{lab}/benchmark", lambda: self.stage_benchmark(method), export,
                              c.bench)
        return export, bench

    def run_all(self, command: str = "") -> str:
        """Run (or resume) every stage, its training loops under the configured tf.distribute
        strategy (:mod:`pam_tf.distribute`; none by default); returns the output folder."""
        from pam_tf.distribute import training_strategy

        with training_strategy(self.config.distribute.distribute):
            return self._run_stages(command)

    def _run_stages(self, command: str) -> str:
        check_model_count(self.config.models)  # cheap checks before anything is written
        for path in self.config.models:
            check_model_file(path)
        self.folder.open()
        c = self.config
        self.log(f"pam-tf: {', '.join(m.label for m in self.methods)} on suite '{c.suite}' "
                 f"-> {self.folder.out}")
        ident = fingerprint(c)
        self._run("validate", self.stage_validate, ident, c.export.combinations)
        self._run("trace", self.stage_trace, ident)
        info_key = None
        if any(m.uses_information for m in self.methods):
            info_key = self._run("information", self.stage_information, self.keys["trace"],
                                 c.info, c.data)
        ends = [self._run_method(m, info_key) for m in self.methods]
        self._run("report", lambda: self.stage_report(command), ends,
                  [m.name for m in self.methods])
        return self.folder.out
