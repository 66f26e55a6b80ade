"""An output folder of the main job and the bookkeeping that makes a run resumable.

Two levels of "the same run":

- **identity** (``run.json``): the model files' contents, the suite, the primary method, the
  seed, and the settings that decide the merged and pruned networks (sections data, info,
  merge, prune). A folder holding another identity is refused, naming the changed flags: its
  pruned networks are expensive and would otherwise be overwritten.
- **stage keys** (``stages.json``): each finished stage records a hash of the configuration it
  read and of the keys of the stages it read from. Rerunning skips a stage whose key is
  unchanged (and says so); a stage whose key changed (e.g. ``--layout`` for export,
  ``--bench_threads`` for the benchmark) runs again, and so does everything that read it.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Callable

from pam_tf import io
from pam_tf.config import RunConfig
from pam_tf.inputs import InputError

RUN_FORMAT = 2
IDENTITY_SECTIONS = ("data", "info", "merge", "prune")


def identity(config: RunConfig) -> dict:
    """The settings that decide the merged and pruned networks, by flag name."""
    out = {"suite": config.suite, "method": config.method, "seed": config.seed}
    for name in IDENTITY_SECTIONS:
        out.update(getattr(config, name).key_json())
    return out


def fingerprint(config: RunConfig) -> str:
    """Identifies the run: identity settings and the bytes of every model file (not its path, so
    `make run` and `bazel run` of the same models share one output folder)."""
    files = [io.sha256_file(p) if os.path.exists(p) else p for p in config.models]
    blob = json.dumps({"config": identity(config), "model_sha256": files}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def stage_key(*parts) -> str:
    """Hash of what a stage read: config sections (their JSON) and upstream stage keys."""
    blob = json.dumps([p.key_json() if hasattr(p, "key_json") else
                       p.to_json() if hasattr(p, "to_json") else p for p in parts],
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class RunFolder:
    """One output folder: refuses another run, records and skips finished stages."""

    out: str
    config: RunConfig
    log: Callable[[str], None] = print
    stages: dict = field(default_factory=dict)

    def path(self, *parts: str) -> str:
        return os.path.join(self.out, *parts)

    def open(self) -> None:
        """Create the folder, or check that it holds this same run; load finished stages."""
        if os.path.exists(self.out) and not os.path.isdir(self.out):
            raise InputError(f"--out '{self.out}' is a file, not a folder: choose another --out")
        run_path = self.path("run.json")
        if os.path.isdir(self.out) and os.listdir(self.out):
            self._check_same_run(run_path)
            if os.path.exists(self.path("stages.json")):
                self.stages = io.read_json(self.path("stages.json"), InputError, "stages file")
        os.makedirs(self.out, exist_ok=True)
        io.write_json(run_path, {"format": RUN_FORMAT, "fingerprint": fingerprint(self.config),
                                 "config": self.config.flat()})

    def _check_same_run(self, run_path: str) -> None:
        if not os.path.exists(run_path):
            raise InputError(f"output folder '{self.out}' is not empty and holds no pam-tf "
                             "run (no run.json): choose another --out")
        previous = io.read_json(run_path, InputError, "run file")
        if previous.get("format") != RUN_FORMAT:
            raise InputError(f"output folder '{self.out}' holds a run of another pam-tf version "
                             f"(run format {previous.get('format')}, this one writes "
                             f"{RUN_FORMAT}): choose another --out or delete it")
        if previous.get("fingerprint") == fingerprint(self.config):
            return
        old = previous.get("config", {})
        diffs = [f"--{k}: {old.get(k)!r} then, {v!r} now"
                 for k, v in identity(self.config).items() if old.get(k) != v]
        diffs = diffs or ["a model file's contents changed"]
        raise InputError(f"output folder '{self.out}' holds a different run ("
                         + "; ".join(diffs[:4]) + "): choose another --out or delete it")

    def run_stage(self, name: str, key: str, fn: Callable[[], dict | None]) -> None:
        """Run one stage unless it finished with the same key; log start, end and time."""
        done = self.stages.get(name)
        if done is not None and done.get("key") == key:
            self.log(f"[{name}] already done in an earlier run: resuming after it")
            return
        if done is not None:
            self.log(f"[{name}] its settings or inputs changed since the earlier run: "
                     "running it again")
        self.log(f"[{name}] ...")
        start = time.perf_counter()
        info = fn() or {}
        seconds = time.perf_counter() - start
        self.stages[name] = {"key": key, "seconds": round(seconds, 2), **info}
        io.write_json(self.path("stages.json"), self.stages)
        self.log(f"[{name}] done in {seconds:.1f} s")
