r"""Merge n single-task CNNs with Pruning-Aware Merging, prune, and export one .tflite per task
combination, with a manifest, a host benchmark and a report.

With no flags it runs the shipped `fashion2` example (two LeNet-5 nets, tasks a and b):

    python -m tools.merge_and_export                      # PAM vs B1, Taylor pruning, 1-point budget
    python -m tools.merge_and_export --nocompare          # PAM only
    python -m tools.merge_and_export --models=a.keras,b.keras --suite=fashion2 --out=runs/mine

Every setting flag is generated from the typed configuration sections of `pam_tf.config` (one
source for names, defaults, bounds and help). Caveats: every stage writes into --out atomically;
rerunning with the same arguments resumes from the last finished stage; a changed export or
benchmark flag re-runs only those stages and the report; an --out folder holding a run with
other merge or pruning settings is refused.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags, logging

from pam_tf import config as config_module
from pam_tf.config import RunConfig, define_flags, flag_names
from pam_tf.inputs import InputError, example_models
from pam_tf.io import WriteError
from pam_tf.methods import METHODS
from tools._paths import user_path

FLAGS = flags.FLAGS

flags.DEFINE_string("example", "fashion2", "Shipped example to run when --models is not given.")
flags.DEFINE_list("models", [], "Single-task tf_keras model files, one per task, in task order.")
flags.DEFINE_string("suite", None, "Task suite naming the tasks' labels (default: the example's).")
flags.DEFINE_string("out", "runs/fashion2", "Output folder.")
define_flags(choices={"method": tuple(METHODS)})
flags.adopt_module_key_flags(config_module)  # --help lists them with this tool's own flags


def run(*, example: str, models: list[str], suite: str | None, out: str, **settings) -> str:
    """Run the whole pipeline; returns the output folder. Raises InputError on bad input."""
    from pam_tf.pipeline import Pipeline

    if models:
        paths = tuple(user_path(m) for m in models)
        if not suite:
            raise InputError("--suite is required with --models (which labels are the tasks?)")
    else:
        paths, example_suite = example_models(example)
        suite = suite or example_suite
        paths = tuple(os.path.relpath(p) if not os.environ.get("BUILD_WORKSPACE_DIRECTORY")
                      else p for p in paths)
    from pam_tf.distribute import make_strategy, worker_path

    try:
        config = RunConfig.from_flat(paths, suite, **settings)
        # at start-up, before TensorFlow runs anything: MultiWorkerMirroredStrategy needs that
        make_strategy(config.distribute.distribute)
        out = worker_path(user_path(out), config.distribute.distribute)
    except ValueError as e:
        raise InputError(str(e)) from None
    return Pipeline(config, out).run_all(command=" ".join(sys.argv))


def main(argv: list[str]) -> int:
    logging.set_verbosity(logging.WARNING)  # TF's INFO chatter would drown the progress lines
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    names = ("example", "models", "suite", "out", *flag_names())
    try:
        out = run(**{name: FLAGS[name].value for name in names})
    except InputError as e:
        print(f"merge_and_export: error: {e}", file=sys.stderr)
        return 2
    except WriteError as e:  # disk full, read-only folder: no traceback, the file named
        print(f"merge_and_export: error: {e.strerror}; rerun the same command to resume",
              file=sys.stderr)
        return 1
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
