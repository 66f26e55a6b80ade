"""tools/reproduce.py --shard=i/k: k workers fill one results folder, together exactly the grid.

Two shards of a two-cell synthetic grid run at the same time, as two processes of a job array
would, into one results, runs and cache folder; their merged results equal the unsharded grid's
(every number; only the time each file was written differs)."""
import json
import os
import subprocess
import sys

import pytest

from pam_tf.experiments import cell_name, get_experiment, run_cell

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("pam", "b1", "b2", "pam_spec")


def _reproduce(*args: str, folders: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tools.reproduce", "--experiments=synthetic",
         "--criteria=magnitude", "--seeds=0,1", "--set=criterion=magnitude", "--variant=shard",
         f"--results={folders['results']}", f"--runs={folders['runs']}",
         f"--cache={folders['cache']}", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, TF_USE_LEGACY_KERAS="1"))


def _numbers(path: str) -> dict:
    """A results file without what legitimately differs between two runs of one cell: when it
    was written, and the checksums of the trained nets (a .keras file records when it was saved,
    so two trainings of one net differ in bytes, not in weights: every number below agrees)."""
    with open(path) as f:
        result = json.load(f)
    result.pop("written")
    result["models"] = [m["file"] for m in result["models"]]
    return result


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    base = tmp_path_factory.mktemp("sharded")
    folders = {k: str(base / k) for k in ("runs", "results", "cache")}
    procs = [_reproduce(f"--shard={i}/2", folders=folders) for i in (1, 2)]
    outs = [p.communicate(timeout=900) for p in procs]
    return folders, procs, outs


def test_each_shard_runs_its_own_cells_and_both_succeed(sharded):
    _, procs, outs = sharded
    for proc, (stdout, stderr) in zip(procs, outs):
        assert proc.returncode == 0, stderr
    assert "1 of 1 cell(s) of shard 1/2 to run" in outs[0][0]
    assert "synthetic / magnitude / seed 0" in outs[0][0] and "seed 1" not in outs[0][0]
    assert "1 of 1 cell(s) of shard 2/2 to run" in outs[1][0]
    assert "synthetic / magnitude / seed 1" in outs[1][0] and "seed 0" not in outs[1][0]


def test_merged_shards_equal_the_unsharded_grid(sharded, tmp_path):
    folders, _, _ = sharded
    whole = {k: str(tmp_path / k) for k in ("runs", "results", "cache")}
    exp = get_experiment("synthetic")
    for seed in (0, 1):
        run_cell(exp, "magnitude", seed, runs=whole["runs"], results=whole["results"],
                 cache=whole["cache"], settings={"criterion": "magnitude"},
                 log=lambda _l: None, variant="shard")
    names = sorted(cell_name("synthetic", m, "magnitude", s, "shard")
                   for m in METHODS for s in (0, 1))
    assert sorted(os.listdir(folders["results"])) == names
    assert sorted(os.listdir(whole["results"])) == names
    for name in names:
        assert _numbers(os.path.join(folders["results"], name)) == \
            _numbers(os.path.join(whole["results"], name)), name


def test_a_rerun_of_a_finished_shard_does_nothing(sharded):
    folders, _, _ = sharded
    stdout, stderr = _reproduce("--shard=2/2", folders=folders).communicate(timeout=300)
    assert "all 1 cell(s) of shard 2/2 already have results" in stdout, stderr


def test_a_shard_beyond_the_grid_has_nothing_to_do(sharded):
    folders, _, _ = sharded
    stdout, stderr = _reproduce("--shard=3/3", folders=folders).communicate(timeout=300)
    assert "shard 3/3 has no cells (the grid has 2): nothing to do" in stdout, stderr


@pytest.mark.parametrize("shard", ["3/2", "2", "a/b"])
def test_a_bad_shard_is_refused_with_what_is_expected(shard, tmp_path):
    folders = {k: str(tmp_path / k) for k in ("runs", "results", "cache")}
    proc = _reproduce(f"--shard={shard}", folders=folders)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert (f"reproduce: error: --shard={shard!r}: expected i/k with whole numbers "
            "1 <= i <= k, e.g. --shard=1/4 ... --shard=4/4 (1-based)") in stderr
    assert not os.path.exists(folders["results"])
