"""Host mode: the same plan and result format, timed on this machine with the LiteRT interpreter.

Why: a quick sanity check of a model set (and of the harness) without a phone, and a host
baseline. It mirrors benchmark_model's method so numbers mean the same thing: build the
interpreter (timed as init), fill inputs with seeded random values of the right shape and dtype
(same ranges as benchmark_model), warm up for at least ``warmup_runs`` runs and
``warmup_min_secs``, then time single ``invoke()`` calls with :func:`time.perf_counter` until at
least ``num_runs`` runs and ``min_secs`` have passed (stopping at ``max_secs``). Only ``invoke`` is
timed; resetting the inputs happens outside the timed region, as in the C++ tool.

Delegates: ``xnnpack`` is LiteRT's default CPU path (``OpResolverType.AUTO`` applies XNNPACK);
``cpu`` uses the builtin kernels without default delegates. GPU/NNAPI do not exist on a host.

Two LiteRT APIs (``host_api``): ``interpreter`` (``ai_edge_litert.interpreter.Interpreter``,
the default) and ``compiled_model`` (``ai_edge_litert.compiled_model.CompiledModel``, the API
LiteRT is moving to: CPU accelerator with ``CpuOptions(num_threads, kernel_mode)``, XNNPACK or
BUILTIN kernels, inputs and outputs in ``TensorBuffer`` objects, ``run_by_index``). The same
timing method applies to both; writing the inputs stays outside the timed region.
"""
from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from android_bench import sysfs
from android_bench.errors import BenchmarkFailedError, HostModeError
from android_bench.models import ModelSet
from android_bench.plan import Cooldown, CpuProfile, PlanConfig, RunSpec, build_plan
from android_bench.results import check_and_write_meta
from android_bench.summary import percentile
from android_bench.sweep import Progress, RunOutcome, SweepReport, execute_plan

HOST_DELEGATES = ("xnnpack", "cpu")
HOST_APIS = ("interpreter", "compiled_model")


def _no_such_delegate(delegate: str) -> str:
    return f"delegate {delegate!r} is not available in host mode (use {' or '.join(HOST_DELEGATES)})"


def litert_version(api: str = "interpreter") -> str:
    """The runtime a host result was measured with (part of every run id and of meta.json: a
    results folder stays tied to one API). The Interpreter keeps the older plain form."""
    import ai_edge_litert
    version = f"ai_edge_litert {getattr(ai_edge_litert, '__version__', 'unknown')}"
    return version if api == "interpreter" else f"{version} CompiledModel"


def _no_such_api(api: str) -> str:
    return f"host API {api!r} is unknown (use {' or '.join(HOST_APIS)})"


class _InterpreterRunner:
    """LiteRT's Interpreter: set_tensor per input, invoke()."""

    def __init__(self, model_path: str, threads: int, delegate: str) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = (OpResolverType.AUTO if delegate == "xnnpack"
                    else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.interpreter = Interpreter(model_path=model_path, num_threads=threads,
                                       experimental_op_resolver_type=resolver)
        self.interpreter.allocate_tensors()
        self.inputs = [(d["index"], d["name"], [int(x) for x in d["shape"]], d["dtype"])
                       for d in self.interpreter.get_input_details()]

    def set_inputs(self, values: list[Any]) -> None:
        for (index, *_), value in zip(self.inputs, values):
            self.interpreter.set_tensor(index, value)

    def invoke(self) -> None:
        self.interpreter.invoke()


class _CompiledModelRunner:
    """LiteRT's CompiledModel (first signature): TensorBuffer.write per input, run_by_index."""

    def __init__(self, model_path: str, threads: int, delegate: str) -> None:
        from ai_edge_litert.compiled_model import (CompiledModel, CpuKernelMode, CpuOptions,
                                                   HardwareAccelerator, Options)

        kernels = CpuKernelMode.XNNPACK if delegate == "xnnpack" else CpuKernelMode.BUILTIN
        options = Options(HardwareAccelerator.CPU,
                          cpu_options=CpuOptions(num_threads=threads, kernel_mode=kernels))
        self.model = CompiledModel.from_file(model_path, options=options)
        key = next(iter(self.model.get_signature_list()))
        details = self.model.get_input_tensor_details(key)
        names = self.model.get_signature_list()[key]["inputs"]
        self.inputs = [(i, n, [int(x) for x in details[n]["shape"]], details[n]["dtype"])
                       for i, n in enumerate(names)]
        self.input_buffers = self.model.create_input_buffers(0)
        self.output_buffers = self.model.create_output_buffers(0)

    def set_inputs(self, values: list[Any]) -> None:
        for buffer, value in zip(self.input_buffers, values):
            buffer.write(value)

    def invoke(self) -> None:
        self.model.run_by_index(0, self.input_buffers, self.output_buffers)


_RUNNERS = {"interpreter": _InterpreterRunner, "compiled_model": _CompiledModelRunner}


def _random_inputs(inputs: list[tuple[int, str, list[int], Any]], seed: int) -> list[Any]:
    """Seeded random input tensors, same value ranges as benchmark_model's defaults."""
    import numpy as np
    rng = np.random.default_rng(seed)
    out = []
    for _index, name, shape, dtype in inputs:
        dtype = np.dtype(dtype)
        if dtype.kind == "f":
            value = rng.uniform(-0.5, 0.5, size=shape).astype(dtype)
        elif dtype == np.uint8:
            value = rng.integers(0, 255, size=shape, dtype=np.uint8)
        elif dtype == np.int8:
            value = rng.integers(-127, 128, size=shape, dtype=np.int8)
        elif dtype == np.bool_:
            value = rng.integers(0, 2, size=shape).astype(np.bool_)
        elif dtype.kind in "iu":
            value = rng.integers(0, 100, size=shape).astype(dtype)
        else:
            raise HostModeError(f"cannot make random input of dtype {dtype} for {name}")
        out.append(value)
    return out


def _stats_us(times_us: list[float]) -> dict[str, Any]:
    n = len(times_us)
    mean = sum(times_us) / n
    std = math.sqrt(max(0.0, sum(t * t for t in times_us) / n - mean * mean))  # population std, like Stat
    return {"count": n, "first": times_us[0], "curr": times_us[-1], "min": min(times_us),
            "max": max(times_us), "avg": mean, "std": std,
            **{f"p{q}": percentile(times_us, q) for q in (5, 50, 90, 95, 99)}}


def _timed_loop(runner: Any, inputs: list[Any], min_runs: int, min_secs: float,
                max_secs: float) -> list[float]:
    times: list[float] = []
    start = time.perf_counter()
    deadline = start + max_secs
    while len(times) < min_runs or time.perf_counter() - start < min_secs:
        runner.set_inputs(inputs)
        t0 = time.perf_counter()
        runner.invoke()
        times.append((time.perf_counter() - t0) * 1e6)
        if time.perf_counter() > deadline:
            break
    return times


def time_model(model_path: str | Path, *, threads: int = 1, delegate: str = "xnnpack", warmup_runs: int = 1,
               warmup_min_secs: float = 0.5, num_runs: int = 50, min_secs: float = 1.0,
               max_secs: float = 150.0, seed: int = 0,
               api: str = "interpreter") -> tuple[dict[str, Any], str]:
    """Time one .tflite file with LiteRT's ``api`` (:data:`HOST_APIS`); returns (metrics in the
    result-record format, a text report)."""
    if delegate not in HOST_DELEGATES:
        raise HostModeError(_no_such_delegate(delegate))
    if api not in HOST_APIS:
        raise HostModeError(_no_such_api(api))
    t0 = time.perf_counter()
    runner = _RUNNERS[api](str(model_path), threads, delegate)
    init_ms = (time.perf_counter() - t0) * 1e3
    inputs = _random_inputs(runner.inputs, seed)
    warm = _timed_loop(runner, inputs, max(1, warmup_runs), warmup_min_secs, max_secs)
    steady = _timed_loop(runner, inputs, max(1, num_runs), min_secs, max_secs)
    w, s = _stats_us(warm), _stats_us(steady)
    metrics = {
        "avg_ms": s["avg"] / 1e3, "count": s["count"], "min_ms": s["min"] / 1e3, "max_ms": s["max"] / 1e3,
        "std_ms": s["std"] / 1e3, "p5_ms": s["p5"] / 1e3, "p50_ms": s["p50"] / 1e3, "p90_ms": s["p90"] / 1e3,
        "p95_ms": s["p95"] / 1e3, "p99_ms": s["p99"] / 1e3, "init_ms": init_ms,
        "first_inference_ms": w["first"] / 1e3, "warmup_avg_ms": w["avg"] / 1e3, "warmup_count": w["count"],
        "memory_init_mb": None, "memory_overall_mb": None, "peak_memory_mb": None,
        "delegate_status": "host_default" if delegate == "xnnpack" else "not_requested",
        "delegated_kernels": None, "cpu_fallback": False, "fallback_reason": "", "output_format": "host",
    }

    def line(st: dict[str, Any]) -> str:
        return " ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in st.items())

    text = (f"host {litert_version(api)} api={api} model={model_path} threads={threads} "
            f"delegate={delegate}\n"
            f"init_ms={init_ms:.6g}\nwarmup (us): {line(w)}\nsteady (us): {line(s)}\n")
    return metrics, text


@contextmanager
def _pinned(cores: tuple[int, ...] | None) -> Iterator[None]:
    if not cores:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


class HostExecutor:
    """Runs planned runs in this process."""

    def __init__(self, cpu_profile: CpuProfile | None, seed: int, api: str = "interpreter") -> None:
        self.cpu_profile = cpu_profile
        self.seed = seed
        self.api = api

    def snapshot(self) -> tuple[dict[str, float], dict[str, int]]:
        return sysfs.split_snapshot(sysfs.read_local())

    def hottest(self, zone_regex: str | None) -> float | None:
        types = sysfs.zone_types(sysfs.read_local((sysfs.THERMAL_TYPE_GLOB,)))
        return sysfs.hottest(self.snapshot()[0], types, zone_regex)

    def run(self, spec: RunSpec) -> RunOutcome:
        s = spec.settings
        cores = self.cpu_profile.cores(s.affinity) if (s.affinity and self.cpu_profile) else None
        try:
            with _pinned(cores):
                metrics, text = time_model(spec.model.path, threads=s.threads, delegate=s.delegate,
                                           warmup_runs=s.warmup_runs, warmup_min_secs=s.warmup_min_secs,
                                           num_runs=s.num_runs, min_secs=s.min_secs, max_secs=s.max_secs,
                                           seed=self.seed, api=self.api)
        except (ValueError, RuntimeError) as e:  # the interpreter rejects the model file
            raise BenchmarkFailedError(f"LiteRT could not run {spec.model.name}: {e}") from None
        entry = ("ai_edge_litert.interpreter.Interpreter" if self.api == "interpreter"
                 else "ai_edge_litert.compiled_model.CompiledModel.from_file")
        command = [entry, f"model_path={spec.model.name}",
                   f"num_threads={s.threads}", f"delegate={s.delegate}"]
        if cores:
            command.append(f"affinity={list(cores)}")
        return RunOutcome(metrics=metrics, raw_output=text, command=command)


def run_host_sweep(model_set: ModelSet, out_dir: str | Path, config: PlanConfig, *,
                   cpu_profile: CpuProfile | None = None, cooldown: Cooldown = Cooldown(),
                   progress: Progress = print, max_consecutive_failures: int = 3,
                   host_api: str = "interpreter") -> SweepReport:
    """Time every model of ``model_set`` on this machine with LiteRT's ``host_api``
    (:data:`HOST_APIS`); same files as the phone sweep."""
    if host_api not in HOST_APIS:
        raise HostModeError(_no_such_api(host_api))
    for d in config.delegates:
        if d not in HOST_DELEGATES:
            raise HostModeError(_no_such_delegate(d))
    if cpu_profile is not None:
        allowed = os.sched_getaffinity(0)
        for a in config.affinities:
            if a is not None and not set(cpu_profile.cores(a)) <= allowed:
                raise HostModeError(f"CPU group {a!r} {list(cpu_profile.cores(a))} is not within this "
                                    f"machine's CPUs {sorted(allowed)}")
    runtime = litert_version(host_api)
    plan = build_plan(model_set.models, config, target="host", runtime=runtime, cpu_profile=cpu_profile)
    import platform
    device = {"serial": "host", "platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
              "cpus": os.cpu_count()}
    check_and_write_meta(out_dir, {
        "target": "host", "device_serial": "host", "device": device, "runtime": runtime,
        "source": model_set.source, "model_set": model_set.to_dict(),
        "cpu_profile": cpu_profile.groups if cpu_profile else None, "plan_config": config.__dict__,
        "measurement": config.measurement(),
        "cooldown": cooldown.__dict__})
    return execute_plan(plan, out_dir, HostExecutor(cpu_profile, config.seed, host_api),
                        base_record={"target": "host", "device": {"serial": "host"}}, cooldown=cooldown,
                        progress=progress, max_consecutive_failures=max_consecutive_failures)
