"""Train one single-task network of a task suite and save it, with a JSON sidecar.

    .venv/bin/python -m tools.train_single_task --suite fashion2 --task a --arch lenet5 \\
        --out examples/fashion2/lenet5_a.keras

Trains with Adam (batch 128 by default), seeded and deterministic, prints one line per epoch,
evaluates on the suite's held-out test split and writes ``<out>`` (tf_keras ``.keras``) and
``<out minus .keras>.json`` (suite, task, architecture, input shape, accuracy, seed, epochs,
data checksum, TF / tf_keras versions, this command line). Both are written atomically.

Caveats: the first use of a Fashion-MNIST or MNIST suite fetches the data (see
``pam_tf.data.sources``; ``PAM_TF_OFFLINE=1`` forbids network access). Flags are defined by
:func:`define_flags` when the module runs as a program, not on import, so tests and other tools
can import :func:`run` without flag-name clashes.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from absl import app, flags

from pam_tf.config import DistributeConfig
from pam_tf.config import define_flags as config_flags
from pam_tf.data.sources import DataUnavailableError
from pam_tf.data.suites import list_suites, load_suite
from pam_tf.zoo import ARCHITECTURES
from tools._paths import user_path

MODULE = "tools.train_single_task"


def default_out(suite: str, task: str, arch: str) -> str:
    """Where a model goes when --out is not given: ``runs/<suite>/<arch>_<task>.keras``."""
    return str(Path("runs") / suite / f"{arch}_{task}.keras")


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Define this tool's flags in ``flag_values`` (absl's global FLAGS by default)."""
    fv = flag_values
    flags.DEFINE_enum("suite", None, list_suites(), "Task suite.", flag_values=fv)
    flags.DEFINE_string("task", None, "Task of the suite to train (e.g. 'a').", flag_values=fv)
    flags.DEFINE_enum("arch", "lenet5", sorted(ARCHITECTURES), "Architecture.", flag_values=fv)
    flags.DEFINE_string("out", None, "Output model file (.keras). Default: "
                        "runs/<suite>/<arch>_<task>.keras.", flag_values=fv)
    flags.DEFINE_integer("epochs", 5, "Training epochs.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("batch_size", 128, "Batch size.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Random seed (weights, shuffling, composite pairs).",
                         lower_bound=0, flag_values=fv)
    flags.DEFINE_float("lr", 1e-3, "Adam learning rate.", lower_bound=0.0, flag_values=fv)
    flags.DEFINE_integer("limit_train", None, "Use only the first N training samples.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("limit_test", None, "Use only the first N test samples.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("verbose", 2, "Keras verbosity: 0 silent, 1 progress bar, "
                         "2 one line per epoch.", lower_bound=0, upper_bound=2, flag_values=fv)
    config_flags(fv, sections=(DistributeConfig,))  # --distribute, as the main job has it
    flags.mark_flags_as_required(["suite", "task"], flag_values=fv)
    flags.register_validator("out", lambda v: v is None or v.endswith(".keras"),
                             message="--out must end in .keras", flag_values=fv)
    flags.register_validator("lr", lambda v: v > 0, message="--lr must be > 0", flag_values=fv)


def run(suite: str, task: str, arch: str = "lenet5", out: str | None = None, epochs: int = 5,
        batch_size: int = 128, seed: int = 0, lr: float = 1e-3, limit_train: int | None = None,
        limit_test: int | None = None, verbose: int = 2, command: str | None = None,
        distribute: str = "default") -> dict:
    """Load the suite, train ``arch`` on ``task`` (under the tf.distribute strategy
    `distribute`), save model and sidecar; return the sidecar."""
    from pam_tf.distribute import make_strategy, worker_path
    from pam_tf.train import save_single_task_model, train_single_task  # imports TensorFlow

    make_strategy(distribute)  # at start-up, before TensorFlow runs anything (multi_worker)
    out = worker_path(out or default_out(suite, task, arch), distribute)
    dataset = load_suite(suite, limit_train=limit_train, limit_test=limit_test, seed=seed)
    dataset.task(task)  # ValueError naming the suite's tasks if there is no such task
    print(f"{suite}/{task}: {arch}, {len(dataset.x_train)} train / {len(dataset.x_test)} test "
          f"images {dataset.input_shape}, {epochs} epochs, batch {batch_size}, seed {seed}",
          flush=True)
    model, metrics = train_single_task(dataset, task, arch, epochs=epochs, batch_size=batch_size,
                                       seed=seed, lr=lr, verbose=verbose,
                                       distribute=distribute)
    sidecar = save_single_task_model(
        model, out, dataset=dataset, task_name=task, arch=arch, metrics=metrics, seed=seed,
        epochs=epochs, batch_size=batch_size, lr=lr, command=command,
        limit_train=limit_train, limit_test=limit_test)
    per_label = ", ".join(f"{a:.4f}" for a in metrics["per_label_accuracy"])
    print(f"{suite}/{task}: test accuracy {metrics['accuracy']:.4f} (per label: {per_label}) "
          f"in {metrics['train_seconds']:.1f} s; wrote {out}", flush=True)
    return sidecar


def command_line(argv: list[str]) -> str:
    """The command as typed, with the module path instead of the script path."""
    return shlex.join(["python", "-m", MODULE, *argv[1:]])


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    f = flags.FLAGS
    out = user_path(f.out or default_out(f.suite, f.task, f.arch))
    try:
        run(f.suite, f.task, arch=f.arch, out=out, epochs=f.epochs, batch_size=f.batch_size,
            seed=f.seed, lr=f.lr, limit_train=f.limit_train, limit_test=f.limit_test,
            verbose=f.verbose, command=command_line(sys.argv), distribute=f.distribute)
    except ValueError as e:  # bad task name, limits, ...: a usage problem, not a crash
        raise app.UsageError(str(e)) from e
    except DataUnavailableError as e:
        print(f"train_single_task: {e}", file=sys.stderr)
        return 2
    return 0


_HELP_FLAGS = ("--help", "-help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")


def wants_help(argv: list[str]) -> bool:
    """True when the command line asks for help (absl then prints it and exits with 1)."""
    return any(a.split("=", 1)[0] in _HELP_FLAGS for a in argv[1:])


if __name__ == "__main__":
    define_flags()
    try:
        app.run(main)
    except SystemExit as e:  # asking for help is not an error: exit 0, not absl's 1
        if e.code == 1 and wants_help(sys.argv):
            sys.exit(0)
        raise
