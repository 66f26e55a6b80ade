"""The run plan: models x threads x CPU affinity x delegate x repeats, in a seeded random order.

Why randomised: phones heat up and throttle during a sweep. Timing model A always before model B
would bias B; shuffling (a fresh shuffle per repeat block, so every repeat covers every cell once
before the next starts) spreads that drift evenly, and the seed makes the order reproducible.

Why stable run ids: a run's id is a hash of the model file's sha256, every setting that changes
the measurement (flags, affinity mask, runtime binary) and the repeat index. A rerun after a
crash or a disconnect skips ids already in the results file, and never reuses a result measured
with other settings or another model file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from android_bench.errors import PlanError
from android_bench.models import ModelFile

#: benchmark_model flags that pick each delegate. "cpu" means the plain TFLite kernels without
#: the XNNPACK delegate that recent builds otherwise apply by default.
DELEGATE_FLAGS: dict[str, tuple[str, ...]] = {
    "xnnpack": ("--use_xnnpack=true",),
    "gpu": ("--use_gpu=true",),
    "nnapi": ("--use_nnapi=true",),
    "cpu": ("--use_xnnpack=false",),
}


@dataclass(frozen=True)
class CpuProfile:
    """Named groups of CPU cores of one phone, e.g. ``{"big": [4,5,6,7], "little": [0,1,2,3]}``.

    Used to pin benchmark_model to a cluster with ``taskset <hexmask>``; without pinning the
    scheduler migrates threads between big and little cores and timings become bimodal.
    """

    groups: dict[str, tuple[int, ...]]
    name: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any], name: str = "") -> "CpuProfile":
        groups: dict[str, tuple[int, ...]] = {}
        for key, cores in data.items():
            if key in ("name", "device", "comment"):
                continue
            valid = isinstance(cores, list) and cores and all(isinstance(c, int) and 0 <= c < 64 for c in cores)
            if not valid:
                raise PlanError(f"CPU profile group {key!r} must be a non-empty list of core numbers 0-63")
            groups[key] = tuple(sorted(set(cores)))
        if not groups:
            raise PlanError("CPU profile has no core groups")
        return cls(groups=groups, name=str(data.get("name", name)))

    @classmethod
    def load(cls, path: str | Path) -> "CpuProfile":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise PlanError(f"cannot read CPU profile {path}: {e}") from None
        if not isinstance(data, dict):
            raise PlanError(f"CPU profile {path} must hold a JSON object")
        return cls.from_dict(data, name=Path(path).stem)

    def mask(self, group: str) -> str:
        """Hex CPU mask for ``taskset`` (no 0x prefix, as toybox taskset expects)."""
        if group not in self.groups:
            raise PlanError(f"CPU group {group!r} is not in the profile (has: {', '.join(self.groups)})")
        return format(sum(1 << c for c in self.groups[group]), "x")

    def cores(self, group: str) -> tuple[int, ...]:
        self.mask(group)
        return self.groups[group]


@dataclass(frozen=True)
class RunSettings:
    """Everything about one run except the model and the repeat index."""

    target: str  # "android" | "host"
    runtime: str  # benchmark_model sha256 prefix, or the LiteRT version in host mode
    threads: int
    delegate: str
    affinity: str | None = None  # CPU group name from the profile
    affinity_mask: str | None = None
    require_full_delegation: bool = False
    warmup_runs: int = 1
    warmup_min_secs: float = 0.5
    num_runs: int = 50
    min_secs: float = 1.0
    max_secs: float = 150.0

    def label(self) -> str:
        return f"threads={self.threads} {self.delegate}" + (f" {self.affinity}" if self.affinity else "")

    def key(self) -> tuple[Any, ...]:
        """Groups repeats of the same cell in summaries."""
        return (self.target, self.threads, self.delegate, self.affinity or "")

    def benchmark_flags(self) -> list[str]:
        """benchmark_model flags for these settings (the model and name flags come from the runner)."""
        flags = [f"--num_threads={self.threads}", *DELEGATE_FLAGS[self.delegate],
                 f"--warmup_runs={self.warmup_runs}", f"--warmup_min_secs={self.warmup_min_secs:g}",
                 f"--num_runs={self.num_runs}", f"--min_secs={self.min_secs:g}",
                 f"--max_secs={self.max_secs:g}"]
        if self.require_full_delegation:
            flags.append("--require_full_delegation=true")
        return flags

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunSpec:
    """One planned run."""

    run_id: str
    index: int
    model: ModelFile
    settings: RunSettings
    repeat: int


@dataclass(frozen=True)
class PlanConfig:
    """The knobs of a sweep (shared by phone and host mode)."""

    threads: tuple[int, ...] = (1,)
    delegates: tuple[str, ...] = ("xnnpack",)
    affinities: tuple[str | None, ...] = (None,)
    repeats: int = 3
    seed: int = 0
    warmup_runs: int = 1
    warmup_min_secs: float = 0.5
    num_runs: int = 50
    min_secs: float = 1.0
    max_secs: float = 150.0
    require_full_delegation: bool = False

    def measurement(self) -> dict[str, Any]:
        """The settings that change what one run measures (as opposed to which runs exist)."""
        return {"warmup_runs": self.warmup_runs, "warmup_min_secs": self.warmup_min_secs,
                "num_runs": self.num_runs, "min_secs": self.min_secs, "max_secs": self.max_secs,
                "require_full_delegation": self.require_full_delegation}

    def validate(self, cpu_profile: CpuProfile | None) -> None:
        if not self.threads or any(t < 1 for t in self.threads):
            raise PlanError("threads must be positive integers")
        if self.repeats < 1:
            raise PlanError("repeats must be at least 1")
        for d in self.delegates:
            if d not in DELEGATE_FLAGS:
                raise PlanError(f"unknown delegate {d!r} (choose from {', '.join(DELEGATE_FLAGS)})")
        if any(a is not None for a in self.affinities):
            if cpu_profile is None:
                raise PlanError("CPU affinity needs a CPU profile (--cpu_profile profile.json)")
            for a in self.affinities:
                if a is not None:
                    cpu_profile.mask(a)
        if self.num_runs < 1 or self.warmup_runs < 0 or self.min_secs < 0 or self.warmup_min_secs < 0:
            raise PlanError("num_runs must be >= 1; warmup_runs, min_secs, warmup_min_secs >= 0")


def make_run_id(model_sha256: str, settings: RunSettings, repeat: int) -> str:
    """Stable id: sha256 over the model file hash, the settings and the repeat index."""
    payload = json.dumps({"model_sha256": model_sha256, "settings": settings.to_dict(), "repeat": repeat},
                         sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def build_plan(models: Sequence[ModelFile], config: PlanConfig, *, target: str, runtime: str,
               cpu_profile: CpuProfile | None = None) -> list[RunSpec]:
    """All runs of a sweep in execution order (seeded shuffle within each repeat block)."""
    config.validate(cpu_profile)
    cells: list[tuple[ModelFile, RunSettings]] = []
    for model in models:
        for threads in config.threads:
            for delegate in config.delegates:
                for affinity in config.affinities:
                    settings = RunSettings(
                        target=target, runtime=runtime, threads=threads, delegate=delegate,
                        affinity=affinity,
                        affinity_mask=cpu_profile.mask(affinity) if (affinity and cpu_profile) else None,
                        require_full_delegation=config.require_full_delegation,
                        warmup_runs=config.warmup_runs, warmup_min_secs=config.warmup_min_secs,
                        num_runs=config.num_runs, min_secs=config.min_secs, max_secs=config.max_secs)
                    cells.append((model, settings))
    rng = random.Random(config.seed)
    plan: list[RunSpec] = []
    for repeat in range(config.repeats):
        block = list(cells)
        rng.shuffle(block)
        for model, settings in block:
            plan.append(RunSpec(make_run_id(model.sha256, settings, repeat), len(plan), model, settings, repeat))
    return plan


@dataclass(frozen=True)
class Cooldown:
    """Pause before each run: a fixed sleep, or poll until the hottest zone reads below ``temp_c``.

    Polling gives up after ``max_wait_secs`` (the run then goes ahead and the record says the target
    was not reached), so one stuck sensor cannot stall a sweep forever. ``zone_regex`` limits the
    zones considered by their ``type`` (e.g. ``"cpu|soc"``), since some zones (battery while
    charging) never cool below a CPU-oriented threshold.
    """

    secs: float = 0.0
    temp_c: float | None = None
    max_wait_secs: float = 120.0
    poll_secs: float = 2.0
    zone_regex: str | None = None

    def __post_init__(self) -> None:
        if self.secs < 0 or self.max_wait_secs < 0 or self.poll_secs < 0:
            raise PlanError("cool-down times must be >= 0")
        if self.zone_regex:
            try:
                re.compile(self.zone_regex)
            except re.error as e:
                raise PlanError(f"bad cool-down zone regex {self.zone_regex!r}: {e}") from None


def wait_for_cooldown(cooldown: Cooldown, read_hottest: Callable[[], float | None],
                      sleep: Callable[[float], None] = time.sleep,
                      clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Apply ``cooldown``; returns what happened (for the run record)."""
    start = clock()
    if cooldown.secs > 0:
        sleep(cooldown.secs)
    info: dict[str, Any] = {"fixed_secs": cooldown.secs, "target_c": cooldown.temp_c}
    if cooldown.temp_c is None:
        info["waited_secs"] = round(clock() - start, 3)
        return info
    polls = 0
    while True:
        hottest = read_hottest()
        polls += 1
        if hottest is None or hottest < cooldown.temp_c:
            info.update(reached=hottest is not None, hottest_c=hottest, polls=polls)
            break
        if clock() - start >= cooldown.max_wait_secs:
            info.update(reached=False, hottest_c=hottest, polls=polls)
            break
        sleep(cooldown.poll_secs)
    info["waited_secs"] = round(clock() - start, 3)
    return info
