r"""Merge n single-task CNNs with Pruning-Aware Merging, prune, and export one .tflite per task
combination, with a manifest, a host benchmark and a report.

With no flags it runs the shipped `fashion2` example (two LeNet-5 nets, tasks a and b):

    python -m tools.merge_and_export                      # PAM, Taylor pruning, 1-point budget
    python -m tools.merge_and_export --compare            # ... and the no-merge baseline B1
    python -m tools.merge_and_export --models=a.keras,b.keras --suite=fashion2 --out=runs/mine

Caveats: every stage writes into --out atomically; rerunning with the same arguments resumes
from the last finished stage, and an --out folder holding a different run is refused.
"""
from __future__ import annotations

import sys

from absl import app, flags

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
flags.DEFINE_integer("info_samples", 128, "Held-out samples used to estimate information.",
                     lower_bound=8)
flags.DEFINE_enum("criterion", "taylor", ["taylor", "vib", "magnitude"], "Pruning importance.")
flags.DEFINE_float("budget", 1.0, "Accuracy budget in points below each unpruned single-task net.",
                   lower_bound=0.0)
flags.DEFINE_float("target_flops", None, "Prune to this fraction of FLOPs instead of the budget.",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_list("combinations", ["all"], "Combinations to export: 'all' or e.g. a,b,a+b.")
flags.DEFINE_enum("quantize", "float32", ["float32", "float16", "int8"], "TFLite weight format.")
flags.DEFINE_bool("compare", False, "Also run the no-merge baseline B1 for the report.")
flags.DEFINE_string("out", "runs/fashion2", "Output folder.")
flags.DEFINE_integer("seed", 0, "Seed for every random choice.", lower_bound=0)
flags.DEFINE_bool("benchmark", True, "Time the exported files on this host with LiteRT.")


class StageNotImplemented(RuntimeError):
    """A pipeline stage that this version of pam-tf does not have yet."""


def run(**config) -> str:
    """Run the whole pipeline for `config` (flag name -> value); returns the output folder."""
    raise StageNotImplemented("not yet implemented: trace (the pipeline stages land with issue 4+)")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    config = {name: FLAGS[name].value for name in (
        "example", "models", "suite", "method", "mode", "alpha", "alpha_relative", "sigma2",
        "info_samples", "criterion", "budget", "target_flops", "combinations", "quantize",
        "compare", "out", "seed", "benchmark")}
    try:
        out = run(**config)
    except StageNotImplemented as e:
        print(f"merge_and_export: {e}", file=sys.stderr)
        return 3
    print(f"merge_and_export: done, see {out}")
    return 0


if __name__ == "__main__":
    app.run(main)
