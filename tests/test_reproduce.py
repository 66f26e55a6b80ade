"""The experiments tool: a tiny grid on synthetic data, its results files, resume, rendering."""
import json
import os
import subprocess
import sys

import pytest

from pam_tf.experiments import cell_name, get_experiment, run_cell
from pam_tf.results_doc import readme_table, render

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    base = tmp_path_factory.mktemp("grid")
    folders = {k: str(base / k) for k in ("runs", "results", "cache")}
    exp = get_experiment("synthetic")
    written = [run_cell(exp, "magnitude", seed, runs=folders["runs"],
                        results=folders["results"], cache=folders["cache"],
                        settings={"criterion": "magnitude"}, log=lambda _l: None)
               for seed in (0, 1)]
    return folders, written


def test_each_cell_writes_one_result_per_method(grid):
    folders, written = grid
    names = sorted(os.path.basename(p) for paths in written for p in paths)
    assert names == sorted(cell_name("synthetic", m, "magnitude", s)
                           for m in ("pam", "b1", "b2", "pam_spec") for s in (0, 1))
    r = json.load(open(os.path.join(folders["results"],
                                    cell_name("synthetic", "pam", "magnitude", 1))))
    assert r["seed"] == 1 and r["method"] == "pam" and r["tasks"] == ["t0", "t1"]
    assert set(r["combinations"]) == {"t0", "t1", "t0+t1"}
    for e in r["combinations"].values():
        assert e["flops"] > 0 and e["file_macs"] >= e["macs"]
    assert set(r["within_budget"]) == {"t0", "t1"} and r["settings"]["seed"] == 1
    for combo, parts in r["attribution"].items():
        assert sum(parts.values()) == r["combinations"][combo]["flops"]


def test_seeds_train_their_own_nets(grid):
    folders, _ = grid
    cached = sorted(os.listdir(os.path.join(folders["cache"], "synthetic")))
    assert "lenet5_t0_seed0.keras" in cached and "lenet5_t0_seed1.keras" in cached


def test_rendered_page_shows_every_combination_and_the_ratios(grid, tmp_path):
    folders, _ = grid
    doc = render(folders["results"], str(tmp_path / "results.md"))
    text = open(doc).read()
    assert "## synthetic (magnitude)" in text and "B1/PAM over the combinations" in text
    assert "Where PAM's FLOPs come from" in text
    for combo in ("| t0 |", "| t1 |", "| t0+t1 |"):
        assert combo in text
    assert os.path.exists(tmp_path / "results_plots" / "ratio_synthetic_magnitude.png")
    assert readme_table(folders["results"], "synthetic", "magnitude") in text


def test_rerun_of_a_finished_grid_does_nothing_and_says_so(grid):
    folders, _ = grid
    proc = subprocess.run(
        [sys.executable, "-m", "tools.reproduce", "--experiments=synthetic",
         "--criteria=magnitude", "--seeds=0,1", f"--results={folders['results']}",
         f"--runs={folders['runs']}", f"--cache={folders['cache']}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_USE_LEGACY_KERAS="1"))
    assert proc.returncode == 0, proc.stderr
    assert "all 2 cell(s) already have results" in proc.stdout


def test_unknown_experiment_is_named():
    with pytest.raises(ValueError, match="unknown experiment 'fashion9'"):
        get_experiment("fashion9")


def test_readme_table_is_the_one_rendered_from_the_committed_results():
    from pam_tf.results_doc import README_BEGIN, readme_block

    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert README_BEGIN in readme
    expected = readme_table(os.path.join(ROOT, "results")) or "(no fashion2 results yet)\n"
    assert readme_block(readme) == expected


def test_a_variant_gets_its_own_files_and_an_ablation_row(grid, tmp_path):
    folders, _ = grid
    exp = get_experiment("synthetic")
    written = run_cell(exp, "magnitude", 0, runs=folders["runs"], results=folders["results"],
                       cache=folders["cache"], log=lambda _l: None, variant="ptb",
                       settings={"criterion": "magnitude", "per_task_budget": True,
                                 "compare": False})
    assert [os.path.basename(p) for p in written] == [
        cell_name("synthetic", m, "magnitude", 0, "ptb") for m in ("pam", "pam_spec")]
    doc = render(folders["results"], str(tmp_path / "results.md"))
    text = open(doc).read()
    assert "## Ablation: synthetic (magnitude)" in text
    row = next(l for l in text.splitlines() if l.startswith("| ptb |"))
    assert "per_task_budget=True" in row and "compare=False" in row
    assert readme_table(folders["results"], "synthetic", "magnitude") in text  # defaults only
