"""The one source of configuration: typed sections whose fields carry their help and bounds.

Every setting of the main job is a field of one section below; ``tools/merge_and_export.py``
generates its absl flags from these fields (:func:`define_flags`), so a default, a bound or a
help text is written exactly once. Flag names are the field names, unique across sections.

Sections follow the stages that read them, and each stage's resume key hashes only the sections
it reads (see :mod:`pam_tf.stages`):

    DataConfig     the split policy (info batch, validation half, test half, fine-tune subset)
    InfoConfig     the information estimate (KDE σ², conv reduction)
    MergeConfig    how PAM regroups (mode, α)
    MtzConfig      how MTZ (baseline B2) zips the networks (Hessian samples, retraining, degree)
    PruneSettings  the pruning loop (criterion, budget, schedule length, fine-tuning, ranking)
    ExportConfig   the .tflite files (combinations, weight format, layout)
    BenchConfig    the host LiteRT benchmark
    DistributeConfig  where training runs (a tf.distribute strategy); read by no stage's key

This module imports nothing heavy: the CLI builds its flags before TensorFlow loads.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from typing import Any


_PRESENT = object()  # absent_as's default: the setting always counts in resume keys


def setting(default: Any, help: str, *, choices: tuple[str, ...] | None = None,
            lower: float | None = None, upper: float | None = None,
            absent_as: Any = _PRESENT) -> Any:
    """A dataclass field with the help text, choices and bounds its flag is generated from.

    `absent_as`: for a setting added after run folders existed, the value that does what the
    code did before it (usually its first default). At that value it is left out of the run
    identity and the stage keys (:meth:`_Section.key_json`), so a folder written before the
    setting existed still resumes; any other value changes them as usual."""
    kw: dict = {"metadata": {"help": help, "choices": choices, "lower": lower, "upper": upper,
                             "absent_as": absent_as}}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda d=tuple(default): d, **kw)
    return field(default=default, **kw)


def check_bounds(section) -> None:
    """Raise ValueError naming the field when a value is outside its choices or bounds."""
    for f in dataclasses.fields(section):
        meta, value = f.metadata, getattr(section, f.name)
        if value is None or not meta:
            continue
        if meta.get("choices") and value not in meta["choices"]:
            raise ValueError(f"--{f.name}={value!r} is not one of {', '.join(meta['choices'])}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if meta.get("lower") is not None and value < meta["lower"]:
            raise ValueError(f"--{f.name}={value} is below its lower bound {meta['lower']}")
        if meta.get("upper") is not None and value > meta["upper"]:
            raise ValueError(f"--{f.name}={value} is above its upper bound {meta['upper']}")


class _Section:
    """Shared behaviour of the config sections: validation, JSON, a stable hash."""

    def __post_init__(self) -> None:
        check_bounds(self)

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    def key_json(self) -> dict:
        """What resume keys and the run identity hash: :meth:`to_json` less the settings at
        their `absent_as` value (see :func:`setting`)."""
        absent = {f.name for f in dataclasses.fields(self)
                  if f.metadata.get("absent_as", _PRESENT) is not _PRESENT
                  and getattr(self, f.name) == f.metadata["absent_as"]}
        return {k: v for k, v in self.to_json().items() if k not in absent}

    def key(self) -> str:
        """A short stable hash of the section's values (part of a stage's resume key)."""
        return hashlib.sha256(json.dumps(self.key_json(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DataConfig(_Section):
    """How the data are split. The held-out split is cut in two halves: the first (at most
    ``val_samples`` images) steers every decision (the information batch is drawn from it, and the
    pruning budget is judged on it); the second is only ever used to report. The single-task nets
    saw the whole training split, so fine-tuning reuses ``train_samples`` of it."""

    info_samples: int = setting(128, "Held-out samples (from the validation half) used to "
                                "estimate information.", lower=8)
    # 48 000 (of Fashion-MNIST's 60 000; issue 14): with 12 000, the merged nets' longer
    # fine-tunes (finetune_scale 'task') revisit the same images several times per pruning run
    train_samples: int = setting(48000, "Training images used to fine-tune while pruning.",
                                 lower=16)
    val_samples: int = setting(5000, "Held-out images that steer pruning (the budget); the rest "
                               "of the held-out split reports accuracy.", lower=8)


@dataclass(frozen=True)
class InfoConfig(_Section):
    """The KDE information estimate (method.md §4)."""

    sigma2: float = setting(0.1, "Noise variance of the KDE information estimate.", lower=1e-6)
    sigma2_scale: str = setting("layer", "absolute: --sigma2 as given (the paper's); layer: "
                                "--sigma2 times each layer's median squared sample distance "
                                "(avoids saturation with large activations).",
                                choices=("absolute", "layer"))
    reduce: str = setting("max", "How a conv neuron becomes one number per sample: spatial max "
                          "(the paper's intent) or mean.", choices=("max", "mean"))


@dataclass(frozen=True)
class MergeConfig(_Section):
    """How PAM regroups each layer (method.md §5). alpha_conv / alpha_dense override --alpha
    for one layer kind."""

    mode: str = setting("paper", "PAM groups: exclusive + all-task (paper) or any task subset "
                        "(subsets).", choices=("paper", "subsets"))
    alpha: float = setting(0.05, "PAM alpha: fraction of a layer's information (relative) or "
                           "nats.", lower=0.0)
    alpha_conv: float | None = setting(None, "PAM alpha of conv layers (default: --alpha).",
                                       lower=0.0)
    alpha_dense: float | None = setting(None, "PAM alpha of dense layers (default: --alpha).",
                                        lower=0.0)
    alpha_relative: bool = setting(True, "Read alpha relative to each layer's information.")

    def alpha_for(self, kind: str) -> float:
        """α of a layer kind ('conv' or 'dense')."""
        own = self.alpha_conv if kind == "conv" else self.alpha_dense
        return self.alpha if own is None else own


@dataclass(frozen=True)
class MtzConfig(_Section):
    """How Multi-Task Zipping (baseline B2, method.md §8; :mod:`pam_tf.mtz`) merges the nets.
    Read only by the MTZ method's merge stage (its resume key), not part of a run's identity, so
    adding it left every earlier run folder valid."""

    mtz_samples: int = setting(1024, "Training images whose layer inputs estimate each layer's "
                               "Hessian (MTZ).", lower=16)
    mtz_retrain_steps: int = setting(300, "Mini-batches of joint retraining after each zipped "
                                     "layer (MTZ; 0: none).", lower=0)
    mtz_merge: tuple[str, ...] = setting(("1",), "MTZ merge degree: fraction of each hidden "
                                         "layer's neurons zipped into shared ones, one value for "
                                         "every layer or one per hidden layer (1: the paper's "
                                         "B2, one shared trunk).")
    mtz_damping: float = setting(1e-6, "MTZ: a Hessian whose smallest eigenvalue is below this "
                                 "fraction of its largest is damped by that much times its "
                                 "largest (and the progress output says so).",
                                 lower=0.0, upper=1.0)
    mtz_lr: float = setting(1e-3, "Learning rate (Adam) of MTZ's retraining.", lower=0.0)
    mtz_batch_size: int = setting(64, "Mini-batch size of MTZ's retraining.", lower=1)

    def __post_init__(self) -> None:
        # --mtz_merge arrives as a list (absl), a number (--set mtz_merge=0.5) or a string
        raw = self.mtz_merge
        values = (raw,) if isinstance(raw, (str, int, float)) else tuple(raw)
        object.__setattr__(self, "mtz_merge", tuple(str(v).strip() for v in values))
        super().__post_init__()
        self.merge_degrees()

    def merge_degrees(self) -> tuple[float, ...]:
        """--mtz_merge as fractions in [0, 1] (ValueError naming the bad value)."""
        if not self.mtz_merge:
            raise ValueError("--mtz_merge: give one fraction in [0, 1], or one per hidden layer")
        out = []
        for v in self.mtz_merge:
            try:
                f = float(v)
            except ValueError:
                raise ValueError(f"--mtz_merge: {v!r} is not a number (expected fractions in "
                                 "[0, 1], e.g. 1 or 1,1,0.5,0.5)") from None
            if not 0.0 <= f <= 1.0:
                raise ValueError(f"--mtz_merge: {v} is outside [0, 1] (the fraction of a "
                                 "layer's neurons to zip)")
            out.append(f)
        return tuple(out)


@dataclass(frozen=True)
class PruneSettings(_Section):
    """The pruning loop's settings (method.md §7; :func:`pam_tf.prune.prune`)."""

    criterion: str = setting("taylor", "Pruning importance.",
                             choices=("taylor", "vib", "magnitude"))
    budget: float = setting(1.0, "Accuracy budget in points below each unpruned single-task net "
                            "(judged on the validation half).", lower=0.0)
    target_flops: float | None = setting(None, "Prune to this fraction of FLOPs instead of the "
                                         "budget.", lower=0.0, upper=1.0)
    max_prune_steps: int = setting(40, "Most pruning steps per network.", lower=0)
    finetune_steps: int = setting(100, "Mini-batches of fine-tuning after each pruning step.",
                                  lower=1)
    initial_finetune_steps: int | None = setting(
        None, "Mini-batches of fine-tuning before the first pruning step (default: "
        "4 x --finetune_steps for a merged network, which is not function-preserving; 0 for a "
        "network that is its original).", lower=0)
    final_finetune_steps: int | None = setting(
        None, "Mini-batches of fine-tuning of the returned network (default: 2 x "
        "--finetune_steps).", lower=0)
    # 'task' (issue 14): B1 fine-tunes n nets for the lengths above each, so a merged net that
    # got them once had 1/n of B1's effort per task; docs/results.md has both in its ablations
    finetune_scale: str = setting("task", "Fine-tuning effort: the lengths above per task the "
                                  "network serves (task: a merged net of n tasks gets n times "
                                  "the mini-batches, as many per task as each separately pruned "
                                  "net), or per network (network).", choices=("network", "task"))
    distill: float = setting(0.0, "Weight of distillation from the unpruned single-task nets "
                             "while fine-tuning (targets (1-w)·labels + w·teacher outputs), the "
                             "same for every method; 0: labels only.", lower=0.0, upper=1.0)
    batch_size: int = setting(64, "Fine-tuning mini-batch size.", lower=1)
    lr: float = setting(1e-3, "Fine-tuning learning rate (Adam).", lower=0.0)
    lr_decay: str = setting("none", "Learning rate within each fine-tune: constant (none) or "
                            "cosine-decayed to 5 % of --lr by its last mini-batch (cosine), so "
                            "the accuracy judged after it varies less from step to step.",
                            choices=("none", "cosine"), absent_as="none")
    ranking: str = setting("global", "Rank neurons across all layers (global) or remove the "
                           "same share from each layer (per_layer).",
                           choices=("global", "per_layer"))
    flops_aware: bool = setting(True, "Rank neurons by importance per FLOP they cost, weighted "
                                "by how many task combinations compute them.")
    past_schedule: bool = setting(True, "Budget mode: when the schedule ends with every task "
                                  "inside the budget, keep removing 10 % of the remaining "
                                  "neurons per step until the budget binds (the schedule sets "
                                  "the pace, not the end).")
    recovery_rounds: int = setting(3, "Budget mode: extra rounds of the initial fine-tune while "
                                   "the unpruned network is still outside the budget (a merged "
                                   "network is not function-preserving).", lower=0)
    per_task_budget: bool = setting(False, "Merged nets: when a task reaches its budget, keep "
                                    "pruning the groups owned only by tasks still inside theirs "
                                    "(instead of stopping the whole network there).")
    prune_only_shared: bool = setting(False, "Merged nets: prune only groups shared by several "
                                      "tasks and keep the exclusive ones (what the paper's "
                                      "official code does, method.md §7).")
    combination_weights: str = setting(
        "uniform", "FLOPs-aware ranking: how often each task combination runs. uniform (every "
        "combination once), singles (one task at a time), or e.g. 'a=3,b=1,a+b=1' (combinations "
        "not named: 0); pruning then minimises the FLOPs users will actually run.")
    backtracks: int = setting(2, "Retries with half the removal when a pruning step leaves the "
                              "budget (0: stop at the first such step).", lower=0)
    retry_fill: bool = setting(False, "FLOPs-aware retries: take as many cheaper neurons as fit "
                               "in half the failed attempt's FLOPs (up to 10 % of the remaining "
                               "neurons) instead of half its neuron count, so a step that "
                               "failed on one expensive conv channel is retried with the cheap "
                               "neurons behind it, not with one (chain nets).",
                               absent_as=False)
    retry_tabu: int = setting(0, "When a step's first attempt leaves the budget and a smaller "
                              "retry passes, leave the failed attempt's neurons out of the "
                              "next this many steps' rankings (0: the next step starts from "
                              "them again), so a conv channel whose removal failed is tried "
                              "again later, not at every step behind one cheap neuron.",
                              lower=0, absent_as=0)
    step_recovery: int = setting(0, "Budget mode: when a pruning attempt leaves the budget, "
                                 "fine-tune the same network again (--finetune_steps more "
                                 "mini-batches) and re-judge it, up to this many times, before "
                                 "retrying smaller (0: judge each attempt after one fine-tune).",
                                 lower=0, absent_as=0)
    protect_failed: int = setting(0, "When even the smallest retry of a step leaves the budget, "
                                  "keep the neurons it removed for good and prune on among the "
                                  "others (e.g. cheap dense neurons after an expensive conv "
                                  "channel failed), up to this many times (0: stop there).",
                                  lower=0)
    empty_groups: bool = setting(True, "Let pruning remove a whole group when every reader of "
                                 "it reads another group too (else each group keeps >= 1 "
                                 "neuron).")
    min_group_width: int = setting(1, "Fewest neurons a group keeps while pruning.", lower=1)
    round_to: int = setting(1, "Round every group's width up to a multiple of this (SIMD "
                            "friendly widths on phones).", lower=1)
    unstructured_sparsity: float | None = setting(
        None, "After structured pruning, tfmot magnitude pruning of the hidden kernels to this "
        "sparsity (stripped; zeros stay in dense tensors, so FLOPs do not change).",
        lower=0.0, upper=1.0)
    unstructured_steps: int = setting(100, "Fine-tuning mini-batches of the unstructured stage.",
                                      lower=1)

    def resolved(self, *, merged: bool, n_tasks: int = 1) -> "PruneSettings":
        """Concrete fine-tuning lengths for a network of `n_tasks` tasks: a merged network (not
        function-preserving, method.md §6) first recovers for 4 x finetune_steps; every
        returned network gets 2 x; with finetune_scale 'task' all three are n_tasks times
        longer. Idempotent: the result is per network and resolves to itself."""
        k = n_tasks if self.finetune_scale == "task" else 1
        steps = k * self.finetune_steps
        initial = self.initial_finetune_steps
        initial = (4 * steps if merged else 0) if initial is None else k * initial
        final = self.final_finetune_steps
        final = 2 * steps if final is None else k * final
        return dataclasses.replace(self, finetune_steps=steps, initial_finetune_steps=initial,
                                   final_finetune_steps=final, finetune_scale="network")


@dataclass(frozen=True)
class ExportConfig(_Section):
    """The exported .tflite files (pam_tf.export)."""

    combinations: tuple[str, ...] = setting(("all",), "Combinations to export: 'all' or e.g. "
                                            "a,b,a+b.")
    quantize: str = setting("float32", "TFLite weight format.",
                            choices=("float32", "float16", "int8"))
    layout: str = setting("fused", "TFLite layout of a layer with several groups: one conv with "
                          "zero blocks (fused: fewer ops, some extra MACs; never slower in "
                          "benchmarks/bench_layout.py) or one conv per group + concat (split: "
                          "MACs exactly as planned).", choices=("split", "fused"))


@dataclass(frozen=True)
class BenchConfig(_Section):
    """The host LiteRT benchmark of the exported files (android_bench host mode)."""

    benchmark: bool = setting(True, "Time the exported files on this host with LiteRT.")
    bench_threads: int = setting(1, "LiteRT threads for the host benchmark.", lower=1)
    bench_repeats: int = setting(3, "Repeats of each file's timing.", lower=1)
    bench_warmup_runs: int = setting(5, "Warm-up invocations before timing.", lower=0)
    bench_num_runs: int = setting(100, "Fewest timed invocations per repeat.", lower=1)
    bench_min_secs: float = setting(0.3, "Shortest timing per repeat, in seconds.", lower=0.0)
    bench_max_secs: float = setting(20.0, "Longest timing per repeat, in seconds.", lower=0.0)


@dataclass(frozen=True)
class DistributeConfig(_Section):
    """Where the training loops run (:mod:`pam_tf.distribute`): merged-net recovery, pruning
    fine-tunes, MTZ retraining and single-task training.

    Part of neither the run identity nor any stage's key: it says where the arithmetic runs,
    not what is computed (the global batch stays ``--batch_size``, losses are averaged over it,
    importance and budgets are scored off the strategy). So every earlier run folder stays
    valid, and a folder resumes under another strategy. Results agree with the default strategy
    to float rounding, not bit for bit (tests/test_distribute.py states the tolerance)."""

    distribute: str = setting("default", "tf.distribute strategy of the training loops: default "
                              "(one device, exactly as before), mirrored (every local GPU; every "
                              "logical CPU device when there is none), multi_worker "
                              "(MultiWorkerMirroredStrategy; the cluster comes from TF_CONFIG).",
                              choices=("default", "mirrored", "multi_worker"))


SECTIONS: dict[str, type] = {"data": DataConfig, "info": InfoConfig, "merge": MergeConfig,
                             "mtz": MtzConfig, "prune": PruneSettings, "export": ExportConfig,
                             "bench": BenchConfig, "distribute": DistributeConfig}


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's results (the output folder is not part of it).

    ``method`` is the primary method (a name of :data:`pam_tf.methods.METHODS`); ``compare``
    adds the baselines for the report. Build one from flat settings with :meth:`from_flat`.
    """

    models: tuple[str, ...]
    suite: str
    method: str = setting("pam", "Merge method of the run (see pam_tf.methods): pam, none (B1: "
                          "no merging), mtz (B2: Multi-Task Zipping), shared (one all-task "
                          "trunk).")
    compare: bool = setting(True, "Also run the baselines (B1, B2) for the report (--nocompare to "
                            "skip them).")
    baselines: tuple[str, ...] = setting(("none", "mtz"), "The methods --compare adds (names of "
                                         "pam_tf.methods.METHODS, in report order), e.g. "
                                         "--baselines=none for B1 alone (graph networks, which "
                                         "B2 does not take).")
    seed: int = setting(0, "Seed for every random choice (info batch, fine-tuning order).",
                        lower=0)
    specialise: bool = setting(False, "Also report PAM-S: each task's sub-network of the pruned "
                               "PAM net cut out and pruned further for that task alone (one "
                               "more file per task beside the shared one; needs --method=pam).")
    data: DataConfig = field(default_factory=DataConfig)
    info: InfoConfig = field(default_factory=InfoConfig)
    merge: MergeConfig = field(default_factory=MergeConfig)
    mtz: MtzConfig = field(default_factory=MtzConfig)
    prune: PruneSettings = field(default_factory=PruneSettings)
    export: ExportConfig = field(default_factory=ExportConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    distribute: DistributeConfig = field(default_factory=DistributeConfig)

    def __post_init__(self) -> None:
        check_bounds(self)

    @staticmethod
    def from_flat(models, suite: str, **flat) -> "RunConfig":
        """A RunConfig from flag-style keyword arguments (``budget=0.5, layout="split"``)."""
        top = {k: flat.pop(k) for k in ("method", "compare", "baselines", "seed", "specialise")
               if k in flat}
        if "baselines" in top:  # a list, or one comma-separated string (tools/reproduce --set)
            b = top["baselines"]
            top["baselines"] = tuple(b.split(",") if isinstance(b, str) else b)
        sections = {}
        for name, cls in SECTIONS.items():
            names = {f.name for f in dataclasses.fields(cls)}
            values = {k: flat.pop(k) for k in list(flat) if k in names}
            if "combinations" in values:
                values["combinations"] = tuple(values["combinations"])
            sections[name] = cls(**values)
        if flat:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(flat))}")
        return RunConfig(models=tuple(models), suite=suite, **top, **sections)

    def flat(self) -> dict:
        """Every setting by its flag name (models and suite included)."""
        out = {"models": list(self.models), "suite": self.suite, "method": self.method,
               "compare": self.compare, "baselines": list(self.baselines), "seed": self.seed,
               "specialise": self.specialise}
        for name in SECTIONS:
            out.update(getattr(self, name).to_json())
        return out


def setting_choices(section: type, name: str) -> tuple[str, ...]:
    """The choices of one setting field (so code that acts on them names them once)."""
    return next(f.metadata["choices"] for f in dataclasses.fields(section) if f.name == name)


# ----- absl flags generated from the sections ---------------------------------------------------
def _flag_type(f: dataclasses.Field, hints: dict) -> type:
    hint = hints[f.name]
    if typing.get_origin(hint) is tuple:
        return tuple
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


ALL_SECTIONS: tuple[type, ...] = (RunConfig, *SECTIONS.values())


def define_flags(flag_values=None, sections: tuple[type, ...] = ALL_SECTIONS,
                 choices: dict[str, tuple[str, ...]] | None = None) -> None:
    """Define one absl flag per setting field of `sections` (name, default, help, bounds,
    choices); `choices` adds choices known only to the caller (e.g. the registered methods)."""
    from absl import flags

    fv = flag_values if flag_values is not None else flags.FLAGS
    for cls in sections:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not f.metadata:  # models, suite and the sections themselves
                continue
            meta = {**f.metadata, **({"choices": choices[f.name]}
                                     if choices and f.name in choices else {})}
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            kind = _flag_type(f, hints)
            kw = {"flag_values": fv}
            if kind is bool:
                flags.DEFINE_bool(f.name, default, meta["help"], **kw)
            elif meta.get("choices"):
                flags.DEFINE_enum(f.name, default, list(meta["choices"]), meta["help"], **kw)
            elif kind is int:
                flags.DEFINE_integer(f.name, default, meta["help"], lower_bound=meta["lower"],
                                     upper_bound=meta["upper"], **kw)
            elif kind is float:
                flags.DEFINE_float(f.name, default, meta["help"], lower_bound=meta["lower"],
                                   upper_bound=meta["upper"], **kw)
            elif kind is str:
                flags.DEFINE_string(f.name, default, meta["help"], **kw)
            else:  # tuple[str, ...]
                flags.DEFINE_list(f.name, list(default), meta["help"], **kw)


def flag_names(sections: tuple[type, ...] = ALL_SECTIONS) -> list[str]:
    """The flag names :func:`define_flags` defines."""
    return [f.name for cls in sections for f in dataclasses.fields(cls) if f.metadata]
