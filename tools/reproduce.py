r"""Run a grid of experiments × pruning criteria × seeds and write one results JSON per cell and
method; render docs/results.md from whatever results are there.

    python -m tools.reproduce --experiments=fashion2 --criteria=taylor --seeds=0,1,2
    python -m tools.reproduce --render            # docs/results.md from results/*.json

Each cell (experiment, criterion, seed) runs the main job with every registered baseline, in its
own run folder under --runs (which it resumes); a cell whose result files all exist is skipped,
so rerunning a finished grid does nothing and says so, and a killed grid finishes where it
stopped. Experiments: see `pam_tf.experiments.EXPERIMENTS`.

Each results file records every setting its cell ran with. When the defaults change, a file
run under the old ones no longer matches its cell: the grid then stops before running anything
and names the file and the settings that differ, rather than count it as done or overwrite it;
docs/results.md prints such a section's settings in its command (``--set``, no ``--variant``).

``--shard=i/k`` (1-based: i = 1..k) runs only every k-th cell of the grid, starting at the i-th,
so k workers (a job array, or k processes on one machine) given the same flags fill one results
and runs folder without two of them ever running the same cell; ``--render`` merges whatever
results are there. A SLURM job array: ``--array=1-K`` and
``--shard=$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`` (README, "Scaling out").
"""
from __future__ import annotations

import os
import sys
import time
import traceback

from absl import app, flags, logging

from pam_tf import io
from pam_tf.experiments import (CELL_DEFAULTS, EXPERIMENTS, cell_flat, cell_folder, cell_labels,
                                cell_name, get_experiment, run_cell, settings_diff,
                                summarize_cell)
from pam_tf.config import DistributeConfig, setting_choices
from tools._paths import user_path

FLAGS = flags.FLAGS
flags.DEFINE_list("experiments", ["fashion2"], f"Experiments: {', '.join(EXPERIMENTS)}.")
flags.DEFINE_list("criteria", ["taylor"], "Pruning criteria: taylor, vib, magnitude.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (each a whole run: info batch, fine-tuning "
                  "order and, where the experiment trains its nets, the nets).")
flags.DEFINE_list("set", [], "Main-job settings for every cell, e.g. budget=0.5,layout=split.")
flags.DEFINE_string("variant", "", "Name of the --set values (an ablation): it goes into the "
                    "results file and run folder names; docs/results.md compares variants. "
                    "Without it, --set values go into the experiment's own files, which record "
                    "them (docs/results.md prints them), e.g. to add seeds to results run under "
                    "earlier defaults.")
flags.DEFINE_bool("resummarize", False, "Rewrite the results files of finished cells from their "
                  "run folders (no pruning), e.g. after the results format gained a field.")
flags.DEFINE_string("results", "results", "Folder of the results JSON files (one per cell).")
flags.DEFINE_string("runs", "runs/reproduce", "Folder of the cells' run folders.")
flags.DEFINE_string("cache", None, "Folder of trained single-task nets (default: the data "
                    "cache's models/).")
flags.DEFINE_string("shard", "", "i/k (1-based, 1 <= i <= k): run only the grid's cells "
                    "i, i+k, i+2k, ... (in grid order: experiments, then criteria, then seeds), "
                    "so k workers with the same flags share one results folder; empty: all cells.")
flags.DEFINE_enum("distribute", "default", list(setting_choices(DistributeConfig, "distribute")),
                  "tf.distribute strategy of every cell's training loops (see the main job's "
                  "--distribute); where the arithmetic runs, not what is computed, so it needs "
                  "no --variant.")
flags.DEFINE_bool("render", False, "Only render --doc from the results folder.")
flags.DEFINE_string("doc", "docs/results.md", "The rendered results page.")
flags.DEFINE_string("readme", "README.md", "README whose marked results table --render rewrites.")


def parse_settings(items: list[str]) -> dict:
    """'budget=0.5' → {'budget': 0.5}: values read as bool, int, float or str."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise app.UsageError(f"--set: expected key=value, got {item!r}")
        low = value.lower()
        if low in ("true", "false"):
            out[key] = low == "true"
            continue
        for kind in (int, float):
            try:
                out[key] = kind(value)
                break
            except ValueError:
                continue
        else:
            out[key] = value
    return out


def parse_shard(text: str) -> tuple[int, int] | None:
    """'2/4' → (2, 4): the 1-based shard index and the shard count; '' → None (every cell).

    1-based to match a job array numbered 1..k (SLURM's ``--array=1-K``); ValueError names the
    bad value and says what is expected."""
    if not text:
        return None
    index, sep, count = text.partition("/")
    try:
        i, k = int(index), int(count)
    except ValueError:
        i = k = 0
    if not sep or k < 1 or not 1 <= i <= k:
        raise ValueError(f"--shard={text!r}: expected i/k with whole numbers 1 <= i <= k, "
                         "e.g. --shard=1/4 ... --shard=4/4 (1-based)")
    return i, k


def shard_cells(cells: list, shard: tuple[int, int] | None) -> list:
    """The cells of shard (i, k): those at 0-based grid positions i-1, i-1+k, i-1+2k, ...

    Assigned by position in the whole grid (done cells included), so which worker owns a cell
    never depends on what another worker has finished."""
    if shard is None:
        return list(cells)
    i, k = shard
    return list(cells[i - 1::k])


def grid() -> list[tuple]:
    """The cells asked for: (experiment, criterion, seed), in a fixed order."""
    exps = [get_experiment(e) for e in FLAGS.experiments]
    return [(e, c, int(s)) for e in exps for c in FLAGS.criteria for s in FLAGS.seeds]


def cell_done(results: str, exp, criterion: str, seed: int, labels: list[str],
              variant: str) -> bool:
    return all(os.path.exists(os.path.join(results, cell_name(exp.name, l, criterion, seed,
                                                              variant)))
               for l in labels)


def stale_results(results: str, exp, criterion: str, seed: int, labels: list[str],
                  variant: str, settings: dict) -> list[str]:
    """One line per results file of this cell that exists but was run with settings other than
    the ones this grid would run it with (today's defaults, the experiment's and --set): such a
    cell is neither done nor to be overwritten, since its file is the only record of a result."""
    expected = cell_flat(exp, criterion, seed, settings)
    out = []
    for label in labels:
        path = os.path.join(results, cell_name(exp.name, label, criterion, seed, variant))
        if not os.path.exists(path):
            continue
        recorded = io.read_json(path, what="results file").get("settings") or {}
        diff = settings_diff(recorded, expected)
        if diff:
            out.append(f"{path}: ran with " + ", ".join(
                f"{k}={v[0]} (this grid: {v[1]})" for k, v in diff.items()))
    return out


def resummarize(results: str, runs: str, cells: list[tuple]) -> int:
    """--resummarize: every asked-for cell whose run folder holds a finished run."""
    n = 0
    for exp, criterion, seed in cells:
        out = cell_folder(runs, exp.name, criterion, seed, FLAGS.variant)
        if os.path.exists(os.path.join(out, "report.md")):
            summarize_cell(exp, criterion, seed, out=out, results=results,
                           variant=FLAGS.variant)
            n += 1
    print(f"reproduce: rewrote the results of {n} finished cell(s) from {runs}")
    return 0


def run_grid() -> int:
    from pam_tf.config import RunConfig
    from pam_tf.data.sources import data_dir

    settings = parse_settings(FLAGS.set)
    shard = parse_shard(FLAGS.shard)
    RunConfig.from_flat((), "fashion2", **{**CELL_DEFAULTS, **settings})  # validates --set
    results, runs = user_path(FLAGS.results), user_path(FLAGS.runs)
    cache = user_path(FLAGS.cache) if FLAGS.cache else str(data_dir() / "models")
    if FLAGS.distribute != "default":
        from pam_tf.distribute import make_strategy

        make_strategy(FLAGS.distribute)  # at start-up, before TensorFlow runs anything
        settings = {**settings, "distribute": FLAGS.distribute}
    cells = shard_cells(grid(), shard)
    if FLAGS.resummarize:
        return resummarize(results, runs, cells)
    where = f" of shard {shard[0]}/{shard[1]}" if shard else ""
    if not cells:
        print(f"reproduce: shard {shard[0]}/{shard[1]} has no cells (the grid has "
              f"{len(grid())}): nothing to do")
        return 0
    labels = {exp.name: cell_labels(exp, settings) for exp, _, _ in cells}
    stale = [line for c in cells
             for line in stale_results(results, *c, labels[c[0].name], FLAGS.variant, settings)]
    if stale:
        raise ValueError(
            f"{len(stale)} results file(s) of this grid were run with other settings, and are "
            "kept as they are:\n  " + "\n  ".join(stale[:8])
            + (f"\n  ... and {len(stale) - 8} more" if len(stale) > 8 else "")
            + "\nTo add cells to those results, pass the settings they ran with (--set, as "
            "docs/results.md's command for them does); to run these settings beside them, "
            "name them (--variant=NAME); or move the files out of the results folder.")
    todo = [c for c in cells if not cell_done(results, *c, labels[c[0].name], FLAGS.variant)]
    if not todo:
        print(f"reproduce: all {len(cells)} cell(s){where} already have results in {results}: "
              "nothing to do")
        return 0
    print(f"reproduce: {len(todo)} of {len(cells)} cell(s){where} to run "
          f"({len(cells) - len(todo)} done earlier); methods "
          + "; ".join(sorted({", ".join(v) for v in labels.values()})))
    from pam_tf.inputs import InputError

    start, failed = time.monotonic(), []
    for i, (exp, criterion, seed) in enumerate(todo):
        print(f"[{i + 1}/{len(todo)}] {exp.name} / {criterion} / seed {seed}", flush=True)
        try:
            run_cell(exp, criterion, seed, runs=runs, results=results, cache=cache,
                     settings=settings, log=lambda line: print(line, flush=True),
                     variant=FLAGS.variant)
        except InputError as e:  # e.g. a budget this cell cannot meet: the others still run
            failed.append(f"{exp.name} / {criterion} / seed {seed}: {e}")
            print(f"[{i + 1}/{len(todo)}] FAILED: {e}", flush=True)
        except Exception as e:  # noqa: BLE001 - one broken cell (e.g. an export whose cost
            # check fails) must not cost the rest of a long grid; it is reported and rc is 1
            failed.append(f"{exp.name} / {criterion} / seed {seed}: "
                          f"{type(e).__name__}: {e}")
            print(f"[{i + 1}/{len(todo)}] FAILED:\n{traceback.format_exc()}", flush=True)
        spent = time.monotonic() - start
        left = spent / (i + 1) * (len(todo) - i - 1)
        print(f"[{i + 1}/{len(todo)}] done; {spent / 60:.1f} min so far, about "
              f"{left / 60:.1f} min left", flush=True)
    for line in failed:
        print(f"reproduce: cell failed: {line}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.render:
        from pam_tf.results_doc import render, update_readme

        path = render(user_path(FLAGS.results), user_path(FLAGS.doc))
        print(f"reproduce: wrote {path}")
        if update_readme(user_path(FLAGS.readme), user_path(FLAGS.results)):
            print(f"reproduce: updated the results table of {FLAGS.readme}")
        return 0
    try:
        return run_grid()
    except ValueError as e:
        print(f"reproduce: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    app.run(main)
