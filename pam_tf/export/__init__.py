"""Export a plan-built multitask model as TFLite files, one per task combination, plus a manifest.

Entry points: :func:`export_all` and :func:`load_manifest`. The manifest schema is documented in
:mod:`pam_tf.manifest_format`.

What makes the result trustworthy (each step fails the export with a message naming the file):

1. plan and weights are checked against each other *before anything is written*;
2. every file is converted from the builder's own combination sub-model
   (:mod:`~pam_tf.export.convert`), or, with ``separate_files`` (B1), from each task's
   single-task network;
3. its MACs/FLOPs are recounted from the flatbuffer and must equal the plan's
   (:mod:`~pam_tf.export.flatbuffer_cost`);
4. LiteRT and Keras outputs must agree within the precision's tolerance
   (:mod:`~pam_tf.export.parity`);
5. accuracy is measured by running the files themselves on the held-out split;
6. the multi-signature file (:mod:`~pam_tf.export.multi_signature`) must store no weight twice,
   and each signature passes the same parity check;
7. files are written to a scratch folder inside `out_dir`, moved into place only when all of
   the above passed, and ``manifest.json`` is written last, atomically. An export that fails or
   is interrupted leaves no manifest and no partial files (an earlier manifest is untouched).
   Only a crash during the final renames (milliseconds) could leave new files beside an older
   manifest; :func:`load_manifest` then refuses it, because the files' sha256 no longer match.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

import numpy as np

from pam_tf.compat import tf
from pam_tf.export import accuracy as _accuracy
from pam_tf.export import convert, flatbuffer_cost, manifest as _manifest, multi_signature
from pam_tf.export import parity, runtime
from pam_tf.networks import check_weights_for, input_shape_of, is_graph_plan
from pam_tf.export.errors import CostMismatchError, ExportError, ManifestError, ParityError
from pam_tf.export.manifest import MANIFEST_NAME, MANIFEST_VERSION, load_manifest
from pam_tf.plan import Plan

if TYPE_CHECKING:  # pragma: no cover
    from pam_tf.tasks import Task

__all__ = ["export_all", "load_manifest", "ExportError", "ParityError", "CostMismatchError",
           "ManifestError", "MANIFEST_NAME", "MANIFEST_VERSION", "QUANTIZATIONS", "LAYOUTS"]

QUANTIZATIONS = tuple(convert.QUANTIZATIONS)
LAYOUTS = convert.LAYOUTS
MULTI_SIGNATURE_TAG = "multi-signature"  # '-' never occurs in task names: no file-name clash


def _check_test_data(plan: Plan, tasks, x_test, y_test):
    """Validate held-out data up front (before writing); returns (task objects, x, y) or Nones."""
    if x_test is None:
        if y_test is not None:
            raise ValueError("y_test given without x_test")
        return None, None, None
    if y_test is None or tasks is None:
        raise ValueError("x_test needs y_test (a dict task -> labels) and tasks (Task objects) "
                         "to measure accuracy")
    by_name = {t.name: t for t in tasks}
    missing = [t for t in plan.tasks if t not in by_name]
    if missing:
        raise ValueError(f"tasks lack the plan's task(s) {missing}; given {sorted(by_name)}")
    for head in plan.heads:
        if by_name[head.task].n_outputs != head.units:
            raise ValueError(f"task '{head.task}' has {by_name[head.task].n_outputs} outputs, "
                             f"the plan's head has {head.units} units")
    x = np.asarray(x_test, dtype=np.float32)
    if x.shape[1:] != input_shape_of(plan):
        raise ValueError(f"x_test has shape {x.shape}; the plan's input is "
                         f"(N, {', '.join(map(str, input_shape_of(plan)))})")
    if not len(x):
        raise ValueError("x_test is empty")
    if not isinstance(y_test, Mapping):
        raise ValueError("y_test must be a dict {task name: labels}")
    y = {}
    for t in plan.tasks:
        if t not in y_test:
            raise ValueError(f"y_test has no labels for task '{t}'")
        y[t] = by_name[t].check_labels(y_test[t])
        if len(y[t]) != len(x):
            raise ValueError(f"y_test['{t}'] has {len(y[t])} labels for {len(x)} images")
    return by_name, x, y


def _remove_stale_scratch(out_dir: str, say: Callable[[str], object]) -> None:
    """Scratch folders left by an export that was killed (no finally ran) are garbage: remove."""
    for name in sorted(os.listdir(out_dir)):
        path = os.path.join(out_dir, name)
        if name.startswith(".export-tmp-") and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            say(f"  removed {name}, left by an interrupted export")


@dataclass
class _Job:
    """What one :func:`export_all` call exports, every argument already checked."""

    plan: Plan
    weights: dict[str, np.ndarray]
    quantize: str
    layout: str
    tolerance: float
    combos: list[tuple[str, ...]]
    units: list[convert.Unit]
    files_of: dict[tuple[str, ...], list[str]]
    task_objs: dict | None  # task name -> Task, with held-out data
    x: np.ndarray | None
    y: dict[str, np.ndarray] | None
    x_par: np.ndarray  # parity inputs: seeded random images, then up to 64 real ones
    parity: dict  # the manifest's "parity" entry

    def expected_cost(self, combo: Sequence[str]):
        """What a file of `combo` must count: the plan's cost, or the fused layout's."""
        if self.layout == "fused":
            from pam_tf.export.fused import fused_cost
            return fused_cost(self.plan, combo)
        return self.plan.cost(combo)


@dataclass
class _Written:
    """The per-combination files written to the scratch folder, with what was measured."""

    info: dict[str, dict] = field(default_factory=dict)  # the manifest's "files"
    reference: dict[str, np.ndarray] = field(default_factory=dict)  # Keras outputs on x_par
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)  # per file, per task


def export_all(plan: Plan, weights: dict[str, np.ndarray], out_dir: str, *,
               tasks: Sequence["Task"] | None = None,
               x_test: np.ndarray | None = None,
               y_test: dict[str, np.ndarray] | None = None,
               combinations: Iterable[Iterable[str]] | None = None,
               quantize: str = "float32",
               multi_signature: bool = True,
               parity_inputs: int = 16,
               seed: int = 0,
               progress: Callable[[str], object] | None = print,
               layout: str = "fused",
               separate_files: bool = False,
               tolerance: float | None = None) -> dict:
    """Export every combination (default all 2^n − 1) of `plan` to `out_dir`; return the manifest.

    `quantize`: "float32" | "float16" | "int8" (dynamic range). `layout`: "fused" (one conv per
    layer, more MACs; see :mod:`pam_tf.export.fused`) or "split" (the builder's layout, MACs ==
    plan). `separate_files`: export one single-task file per task, and let a combination list
    the files that run together (no merging, B1); otherwise one file per combination.
    `tolerance` overrides the precision's parity tolerance. `x_test`/`y_test`/`tasks` enable
    accuracy (measured on the files) and add up to 64 real images to the `parity_inputs` seeded
    random ones.
    """
    say = progress or (lambda _msg: None)
    job = _prepare(plan, weights, tasks=tasks, x_test=x_test, y_test=y_test,
                   combinations=combinations, quantize=quantize, parity_inputs=parity_inputs,
                   seed=seed, layout=layout, separate_files=separate_files, tolerance=tolerance)
    created = _missing_dirs(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    _remove_stale_scratch(out_dir, say)
    scratch = tempfile.mkdtemp(prefix=".export-tmp-", dir=out_dir)
    ok = False
    try:
        t0 = time.time()
        written = _write_units(job, scratch, say)
        entries = [_combination_entry(job, c, written) for c in job.combos]
        multi = None
        if multi_signature and len(job.combos) > 1:
            multi = _export_multi(plan, weights, job.combos, quantize, scratch, job.x_par,
                                  written.reference, job.tolerance,
                                  sum(i["bytes"] for i in written.info.values()), say)
        elif multi_signature:
            say("multi-signature file skipped: only one combination")
        result = _manifest_of(job, entries, written.info, multi)
        _manifest.validate(result, where="manifest to write")
        published = _publish(scratch, out_dir, result)
        say(f"wrote {len(published)} file(s) and {MANIFEST_NAME} to {out_dir} in "
            f"{time.time() - t0:.1f} s")
        ok = True
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if not ok:
            _remove_empty(created)


def _prepare(plan: Plan, weights: dict[str, np.ndarray], *, tasks, x_test, y_test, combinations,
             quantize: str, parity_inputs: int, seed: int, layout: str, separate_files: bool,
             tolerance: float | None) -> _Job:
    """Check every argument, before the first byte is written: what can be refused is."""
    check_weights_for(plan, weights)
    q = convert.quantization(quantize)
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not one of {LAYOUTS}")
    if layout == "fused" and is_graph_plan(plan):
        raise ValueError(f"layout='fused' is not implemented for graph plans (method "
                         f"'{plan.method}': residual/depthwise nets); export them with "
                         "layout='split'")
    tol = q.tolerance if tolerance is None else float(tolerance)
    if int(parity_inputs) < 0:
        raise ValueError("parity_inputs must be >= 0")
    combos = convert.normalise_combinations(plan, combinations)
    task_objs, x, y = _check_test_data(plan, tasks, x_test, y_test)
    units, files_of = convert.units_for(plan, combos, quantize, layout,
                                        separate_files=separate_files)
    x_par = parity.parity_inputs(input_shape_of(plan), parity_inputs, seed, x)
    n_real = len(x_par) - int(parity_inputs)
    return _Job(plan=plan, weights=weights, quantize=quantize, layout=layout, tolerance=tol,
                combos=combos, units=units, files_of=files_of, task_objs=task_objs, x=x, y=y,
                x_par=x_par, parity={"random_inputs": int(parity_inputs), "real_inputs": n_real,
                                     "seed": int(seed)})


def _write_units(job: _Job, scratch: str, say: Callable[[str], object]) -> _Written:
    """Convert, write, count and parity-check every file of the export into `scratch`."""
    written = _Written()
    for k, unit in enumerate(job.units, 1):
        model = convert.combination_model(job.plan, job.weights, unit.tasks, job.layout)
        data = convert.convert_keras_model(model, job.quantize)
        path = os.path.join(scratch, unit.file)
        with open(path, "wb") as f:
            f.write(data)
        counted = flatbuffer_cost.count(data)
        want = job.expected_cost(unit.tasks)
        flatbuffer_cost.check(counted, want.macs, want.flops, unit.file)
        got = runtime.run(runtime.load_interpreter(data), job.x_par, unit.tasks, where=unit.file)
        ref = convert.keras_outputs(model, job.x_par)
        diff = parity.max_abs_diff(got, ref, unit.tasks)
        parity.check(unit.file, diff, job.tolerance, job.quantize)
        for t in unit.tasks:
            written.reference.setdefault(t, ref[t])
        if job.x is not None:
            written.accuracy[unit.file] = _accuracy.file_accuracy(path, unit.tasks, job.task_objs,
                                                                  job.x, job.y)
        written.info[unit.file] = {
            "tasks": list(unit.tasks), "bytes": len(data),
            "gzip_bytes": _manifest.gzip_size(data), "sha256": _manifest.sha256_bytes(data),
            "macs": counted.macs, "flops": counted.flops,
            "weight_types": counted.weight_types, "max_abs_diff": diff}
        say(f"[{k}/{len(job.units)}] {unit.file}: {len(data):,} bytes, {counted.macs:,} MACs, "
            f"max |TFLite-Keras| {diff:.2g}" +
            (f", accuracy {written.accuracy[unit.file]}" if unit.file in written.accuracy
             else ""))
    return written


def _combination_entry(job: _Job, combo: tuple[str, ...], written: _Written) -> dict:
    """A combination's manifest entry: the plan's cost, its files' sums, accuracy per task."""
    files = job.files_of[combo]
    info = written.info
    cost = job.plan.cost(combo)
    acc = None
    if job.x is not None:
        acc = {t: written.accuracy[f][t] for f in files for t in info[f]["tasks"]}
        acc = {t: acc[t] for t in combo}
    entry = {
        "tasks": list(combo), "files": list(files),
        "flops": cost.flops, "macs": cost.macs, "params": cost.params,
        "flatbuffer_macs": sum(info[f]["macs"] for f in files),
        "flatbuffer_flops": sum(info[f]["flops"] for f in files),
        "bytes": sum(info[f]["bytes"] for f in files),
        "gzip_bytes": sum(info[f]["gzip_bytes"] for f in files),
        "accuracy": acc,
        "max_abs_diff": max(info[f]["max_abs_diff"] for f in files)}
    if job.layout == "split" and (entry["flatbuffer_macs"] != cost.macs or
                                  entry["flatbuffer_flops"] != cost.flops):
        raise CostMismatchError(
            f"combination {convert.combo_key(combo)}: files {files} count "
            f"{entry['flatbuffer_macs']} MACs, the plan {cost.macs}")
    return entry


def _manifest_of(job: _Job, entries: list[dict], file_info: dict[str, dict],
                 multi: dict | None) -> dict:
    """The manifest of the export (schema: :mod:`pam_tf.manifest_format`)."""
    plan = job.plan
    return {
        "version": MANIFEST_VERSION, "method": plan.method, "tasks": list(plan.tasks),
        "input_shape": [int(v) for v in input_shape_of(plan)], "quantize": job.quantize,
        "layout": job.layout, "tolerance": job.tolerance, "parity": job.parity,
        "test_samples": None if job.x is None else int(len(job.x)),
        "plan_sha256": _manifest.plan_fingerprint(plan),
        "weights_sha256": _manifest.weights_fingerprint(job.weights),
        "tensorflow": tf.__version__,
        "combinations": entries, "files": file_info, "multi_signature": multi}


def _publish(scratch: str, out_dir: str, result: dict) -> list[str]:
    """Move the files into `out_dir` (renames within one file system), manifest last."""
    multi = result["multi_signature"]
    published = list(result["files"]) + ([multi["file"]] if multi else [])
    for name in published:
        os.replace(os.path.join(scratch, name), os.path.join(out_dir, name))
    _manifest.write_manifest(out_dir, result)
    return published


def _remove_empty(created: list[str]) -> None:
    """After a failed export: remove the folders this call made, deepest first, if empty."""
    for folder in created:
        try:
            os.rmdir(folder)
        except OSError:
            break


def _missing_dirs(path: str) -> list[str]:
    """Folders `os.makedirs(path)` would create, deepest first (removed again on failure)."""
    out = []
    path = os.path.abspath(path)
    while not os.path.exists(path):
        out.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return out


def _export_multi(plan: Plan, weights, combos, quantize: str, scratch: str, x_par, reference,
                  tol: float, separate_bytes: int, say) -> dict:
    """Write and check the multi-signature file into `scratch`; return its manifest entry."""
    name = f"{plan.method}__{MULTI_SIGNATURE_TAG}{convert.quantization(quantize).suffix}.tflite"
    work = tempfile.mkdtemp(prefix="savedmodel-", dir=scratch)
    data = multi_signature.convert(plan, weights, combos, quantize, work)
    shutil.rmtree(work, ignore_errors=True)
    with open(os.path.join(scratch, name), "wb") as f:
        f.write(data)
    stored, model_elems = multi_signature.check_deduplicated(data, plan, name)
    interp = runtime.load_interpreter(data)
    keys = set(interp.get_signature_list())
    signatures = {}
    for c in combos:
        key = convert.combo_key(c)
        if key not in keys:
            raise ExportError(f"{name}: signature '{key}' missing (has {sorted(keys)})")
        where = f"{name} signature '{key}'"
        counted = flatbuffer_cost.count(data, key)
        cost = plan.cost(c)
        flatbuffer_cost.check(counted, cost.macs, cost.flops, where)
        got = runtime.run(interp, x_par, c, signature=key, where=name)
        diff = parity.max_abs_diff(got, reference, c)
        parity.check(where, diff, tol, quantize)
        signatures[key] = {"tasks": list(c), "macs": counted.macs, "flops": counted.flops,
                           "max_abs_diff": diff}
    say(f"{name}: {len(data):,} bytes for {len(combos)} signatures (separate files: "
        f"{separate_bytes:,} bytes); {stored:,} weight elements stored, model has "
        f"{model_elems:,}")
    return {"file": name, "bytes": len(data), "gzip_bytes": _manifest.gzip_size(data),
            "sha256": _manifest.sha256_bytes(data), "sum_of_separate_bytes": separate_bytes,
            "stored_weight_elements": stored, "model_weight_elements": model_elems,
            "signatures": signatures}
