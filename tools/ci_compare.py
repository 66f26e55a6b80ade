r"""The CI comparison (issue 12): PAM vs every baseline (B1, ...) on the shipped example
composite3, with FLOPs, accuracy and host latency per combination, checked.

    python -m tools.ci_compare --out=/tmp/ci_compare
    python -m tools.ci_compare --out=runs/ci --norequire_pam_cheaper   # report, do not require
    python -m tools.ci_compare --out=runs/ci --accuracy_slack=0.5      # tolerate 0.5 point

Runs (or resumes) the main job on examples/composite3/ (no training) with the main job's
defaults except `pam_tf.compare.CI_SETTINGS` (mode subsets, split layout, shrunk to fit CI),
prints the tables and the verdict, and writes <out>/ci_compare.json. Exit status: 0 when the
comparison is sound, 1 when it is broken (every problem listed), 2 when the run could not be made
(bad inputs, data unavailable). What is checked: `pam_tf.compare`.
"""
from __future__ import annotations

import sys
import time

from absl import app, flags, logging

from tools._paths import user_path

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "runs/ci_compare", "Run folder (resumed when it holds this run).")
flags.DEFINE_string("example", "composite3", "Shipped example (examples/<name>/) to compare on.")
flags.DEFINE_bool("require_pam_cheaper", True, "Fail unless PAM's all-task FLOPs are below every "
                  "baseline's (--norequire_pam_cheaper: report it only).")
flags.DEFINE_list("cheaper_than", ["b1"], "Baselines (labels) PAM's all-task FLOPs must be "
                  "below; the others' are reported (B2: PAM does not beat it yet, issue 14).")
flags.DEFINE_float("accuracy_slack", 0.0, "Points an all-task accuracy on the test half may fall "
                   "below its floor (validation reference minus the budget) and only be "
                   "reported (0: strict).", lower_bound=0.0)


def main(argv: list[str]) -> int:
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    from pam_tf import compare
    from pam_tf.inputs import InputError

    out, start = user_path(FLAGS.out), time.monotonic()
    try:
        pipeline = compare.run_comparison(out, FLAGS.example,
                                          log=lambda line: print(line, flush=True))
    except InputError as e:
        print(f"ci_compare: error: {e}", file=sys.stderr)
        return 2
    methods = compare.read_run(pipeline)
    checks = compare.run_checks(methods, require_pam_cheaper=FLAGS.require_pam_cheaper,
                                accuracy_slack=FLAGS.accuracy_slack,
                                cheaper_than=FLAGS.cheaper_than)
    seconds = round(time.monotonic() - start, 1)
    path = compare.write_summary(out, methods, checks, example=FLAGS.example,
                                 settings=compare.CI_SETTINGS, seconds=seconds,
                                 require_pam_cheaper=FLAGS.require_pam_cheaper,
                                 accuracy_slack=FLAGS.accuracy_slack)
    print("\n" + compare.render(methods, checks) + "\n", flush=True)
    print(f"ci_compare: {seconds:.0f} s; summary: {path}")
    found = compare.problems(checks)
    if found:
        print(f"ci_compare: the comparison is BROKEN ({len(found)} problem(s)):", file=sys.stderr)
        for p in found:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print("ci_compare: the comparison is sound")
    return 0


if __name__ == "__main__":
    app.run(main)
