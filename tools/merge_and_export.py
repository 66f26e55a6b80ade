r"""Merge n single-task CNNs with Pruning-Aware Merging, prune, and export one .tflite per task
combination, with a manifest, a host benchmark and a report.

With no flags it runs the shipped `fashion2` example (two LeNet-5 nets, tasks a and b):

    python -m tools.merge_and_export                      # PAM vs B1, Taylor pruning, 1-point budget
    python -m tools.merge_and_export --nocompare          # PAM only
    python -m tools.merge_and_export --models=a.keras,b.keras --suite=fashion2 --out=runs/mine

Caveats: every stage writes into --out atomically; rerunning with the same arguments resumes
from the last finished stage, and an --out folder holding a different run is refused.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags, logging

from pam_tf.pipeline import InputError
from tools._paths import user_path

FLAGS = flags.FLAGS

flags.DEFINE_string("example", "fashion2", "Shipped example to run when --models is not given.")
flags.DEFINE_list("models", [], "Single-task tf_keras model files, one per task, in task order.")
flags.DEFINE_string("suite", None, "Task suite naming the tasks' labels (default: the example's).")
flags.DEFINE_enum("method", "pam", ["pam", "none", "shared"],
                  "Merge: PAM, no merging (B1), or one fully shared trunk.")
flags.DEFINE_enum("mode", "paper", ["paper", "subsets"],
                  "PAM groups: exclusive + all-task (paper) or any task subset (subsets).")
flags.DEFINE_float("alpha", 0.05, "PAM alpha: fraction of a layer's information (relative) or nats.",
                   lower_bound=0.0)
flags.DEFINE_bool("alpha_relative", True, "Read --alpha relative to each layer's information.")
flags.DEFINE_float("sigma2", 0.1, "Noise variance of the KDE information estimate.", lower_bound=1e-6)
flags.DEFINE_enum("sigma2_scale", "layer", ["absolute", "layer"],
                  "absolute: --sigma2 as given (the paper's); layer: --sigma2 times each layer's "
                  "median squared sample distance (avoids saturation with large activations).")
flags.DEFINE_integer("info_samples", 128, "Held-out samples used to estimate information.",
                     lower_bound=8)
flags.DEFINE_enum("criterion", "taylor", ["taylor", "vib", "magnitude"], "Pruning importance.")
flags.DEFINE_float("budget", 1.0, "Accuracy budget in points below each unpruned single-task net.",
                   lower_bound=0.0)
flags.DEFINE_float("target_flops", None, "Prune to this fraction of FLOPs instead of the budget.",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_list("combinations", ["all"], "Combinations to export: 'all' or e.g. a,b,a+b.")
flags.DEFINE_enum("quantize", "float32", ["float32", "float16", "int8"], "TFLite weight format.")
flags.DEFINE_enum("layout", "fused", ["split", "fused"],
                  "TFLite layout of a layer with several groups: one conv with zero blocks "
                  "(fused: fewer ops, some extra MACs; 4.6x faster for the pruned fashion2 PAM "
                  "net with XNNPACK, never slower in benchmarks/bench_layout.py) or one conv per "
                  "group + concat (split: MACs exactly as planned).")
flags.DEFINE_bool("compare", True, "Also run the no-merge baseline B1 for the report "
                  "(--nocompare to skip it).")
flags.DEFINE_string("out", "runs/fashion2", "Output folder.")
flags.DEFINE_integer("seed", 0, "Seed for every random choice.", lower_bound=0)
flags.DEFINE_bool("benchmark", True, "Time the exported files on this host with LiteRT.")
flags.DEFINE_integer("bench_threads", 1, "LiteRT threads for the host benchmark.", lower_bound=1)
flags.DEFINE_integer("train_samples", 12000, "Training images used to fine-tune while pruning.",
                     lower_bound=16)
flags.DEFINE_integer("finetune_steps", 100, "Mini-batches of fine-tuning after each pruning step.",
                     lower_bound=1)
flags.DEFINE_integer("max_prune_steps", 40, "Most pruning steps per network.", lower_bound=0)
flags.DEFINE_bool("empty_groups", True, "Let pruning remove a whole group when every reader of it "
                  "reads another group too (else each group keeps >= 1 neuron).")
flags.DEFINE_integer("backtracks", 2, "Retries with half the removal when a pruning step leaves "
                     "the budget (0: stop at the first such step).", lower_bound=0)
flags.DEFINE_bool("flops_aware", True, "Rank neurons by importance per FLOP they cost, weighted by "
                  "how many task combinations compute them.")


def run(*, example: str, models: list[str], suite: str | None, out: str,
        **settings) -> str:
    """Run the whole pipeline; returns the output folder. Raises InputError on bad input."""
    from pam_tf.pipeline import Pipeline, RunConfig, example_models

    if models:
        paths = tuple(user_path(m) for m in models)
        if not suite:
            raise InputError("--suite is required with --models (which labels are the tasks?)")
    else:
        paths, example_suite = example_models(example)
        suite = suite or example_suite
        paths = tuple(os.path.relpath(p) if not os.environ.get("BUILD_WORKSPACE_DIRECTORY")
                      else p for p in paths)
    config = RunConfig(models=paths, suite=suite,
                       combinations=tuple(settings.pop("combinations")), **settings)
    return Pipeline(config, user_path(out)).run_all(command=" ".join(sys.argv))


def main(argv: list[str]) -> int:
    logging.set_verbosity(logging.WARNING)  # TF's INFO chatter would drown the progress lines
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    config = {name: FLAGS[name].value for name in (
        "example", "models", "suite", "method", "mode", "alpha", "alpha_relative", "sigma2",
        "sigma2_scale",
        "info_samples", "criterion", "budget", "target_flops", "combinations", "quantize", "layout",
        "compare", "out", "seed", "benchmark", "train_samples", "finetune_steps",
        "max_prune_steps", "flops_aware", "backtracks", "empty_groups", "bench_threads")}
    try:
        out = run(**config)
    except InputError as e:
        print(f"merge_and_export: error: {e}", file=sys.stderr)
        return 2
    print(f"merge_and_export: done; report: {os.path.join(out, 'report.md')}")
    return 0


def entry_point() -> None:
    """absl's app.run, except that asking for --help is not an error (exit 0, not 1)."""
    try:
        app.run(main)
    except SystemExit as e:
        if e.code == 1 and any(a in ("--help", "-h", "--helpfull", "-?") for a in sys.argv[1:]):
            raise SystemExit(0) from None
        raise


if __name__ == "__main__":
    entry_point()
