"""android_bench.plan and summary statistics: run ids, order, affinity, cool-down, stats."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from android_bench.models import ModelFile, load_manifest
from android_bench.errors import ManifestError
from android_bench.plan import (Cooldown, CpuProfile, PlanConfig, PlanError, RunSettings, build_plan,
                                make_run_id, wait_for_cooldown)
from android_bench.results import ResultsLog, atomic_write_text
from android_bench.summary import describe, percentile


def _models(n: int = 3) -> list[ModelFile]:
    return [ModelFile(f"m{i}.tflite", Path(f"/x/m{i}.tflite"), f"{i:064x}", 100 * (i + 1)) for i in range(n)]


def _settings(**kw) -> RunSettings:
    base = dict(target="android", runtime="r", threads=1, delegate="xnnpack")
    base.update(kw)
    return RunSettings(**base)


def test_run_id_is_stable_and_changes_with_model_settings_and_repeat():
    s = _settings()
    rid = make_run_id("a" * 64, s, 0)
    assert rid == make_run_id("a" * 64, _settings(), 0) and len(rid) == 20
    assert len({rid, make_run_id("b" * 64, s, 0), make_run_id("a" * 64, _settings(threads=4), 0),
                make_run_id("a" * 64, s, 1), make_run_id("a" * 64, _settings(runtime="other"), 0)}) == 5


def test_plan_is_seeded_and_each_repeat_block_covers_every_cell():
    config = PlanConfig(threads=(1, 4), repeats=3, seed=7)
    plan = build_plan(_models(), config, target="android", runtime="r")
    again = build_plan(_models(), config, target="android", runtime="r")
    other = build_plan(_models(), PlanConfig(threads=(1, 4), repeats=3, seed=8), target="android", runtime="r")
    assert [s.run_id for s in plan] == [s.run_id for s in again]
    assert [s.run_id for s in plan] != [s.run_id for s in other]
    assert len(plan) == 18 and len({s.run_id for s in plan}) == 18
    for r in range(3):
        block = plan[6 * r:6 * (r + 1)]
        assert {s.repeat for s in block} == {r}
        assert {(s.model.name, s.settings.threads) for s in block} == {(m.name, t) for m in _models() for t in (1, 4)}
    assert [s.index for s in plan] == list(range(18))


def test_cpu_profile_masks_go_into_the_settings(tmp_path):
    path = tmp_path / "pixel7.json"
    path.write_text(json.dumps({"big": [6, 7], "mid": [4, 5], "little": [0, 1, 2, 3]}))
    profile = CpuProfile.load(path)
    assert (profile.mask("big"), profile.mask("mid"), profile.mask("little")) == ("c0", "30", "f")
    plan = build_plan(_models(1), PlanConfig(affinities=("big", None), repeats=1), target="android",
                      runtime="r", cpu_profile=profile)
    assert sorted((s.settings.affinity or "", s.settings.affinity_mask or "") for s in plan) == [("", ""), ("big", "c0")]
    with pytest.raises(PlanError, match="CPU group 'prime' is not in the profile"):
        profile.mask("prime")


def test_affinity_without_profile_is_refused():
    with pytest.raises(PlanError, match="needs a CPU profile"):
        build_plan(_models(1), PlanConfig(affinities=("big",)), target="android", runtime="r")


def test_benchmark_flags_per_delegate():
    assert _settings(delegate="gpu", threads=4, require_full_delegation=True).benchmark_flags() == [
        "--num_threads=4", "--use_gpu=true", "--warmup_runs=1", "--warmup_min_secs=0.5", "--num_runs=50",
        "--min_secs=1", "--max_secs=150", "--require_full_delegation=true"]
    assert "--use_xnnpack=true" in _settings().benchmark_flags()
    assert "--use_nnapi=true" in _settings(delegate="nnapi").benchmark_flags()
    assert "--use_xnnpack=false" in _settings(delegate="cpu").benchmark_flags()
    with pytest.raises(PlanError, match="unknown delegate 'hexagon'"):
        PlanConfig(delegates=("hexagon",)).validate(None)


class _FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def sleep(self, s: float) -> None:
        self.t += s

    def now(self) -> float:
        return self.t


def test_cooldown_polls_until_below_target():
    clock, temps = _FakeClock(), iter([48.0, 44.0, 41.0, 39.5, 30.0])
    info = wait_for_cooldown(Cooldown(temp_c=40.0, poll_secs=2.0, max_wait_secs=60), lambda: next(temps),
                             sleep=clock.sleep, clock=clock.now)
    assert info["reached"] and info["polls"] == 4 and info["hottest_c"] == 39.5 and clock.t == 6.0


def test_cooldown_gives_up_after_max_wait():
    clock = _FakeClock()
    info = wait_for_cooldown(Cooldown(secs=1.0, temp_c=40.0, poll_secs=2.0, max_wait_secs=5.0), lambda: 55.0,
                             sleep=clock.sleep, clock=clock.now)
    assert not info["reached"] and info["hottest_c"] == 55.0 and clock.t == 5.0


def test_statistics_across_repeats():
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 90) == pytest.approx(3.7)
    d = describe([2.0, 4.0, 6.0])
    assert d["n"] == 3 and d["mean_ms"] == 4.0 and d["std_ms"] == 2.0 and d["cv"] == 0.5
    assert d["p50_ms"] == 4.0 and d["p90_ms"] == pytest.approx(5.6)
    assert describe([3.0])["std_ms"] == 0.0


def test_results_log_skips_a_torn_last_line_and_only_counts_ok_runs(tmp_path):
    log = ResultsLog(tmp_path)
    log.append({"run_id": "a", "status": "ok"})
    log.append({"run_id": "b", "status": "timeout"})
    with open(log.path, "a") as f:
        f.write('{"run_id": "c", "sta')  # the host died mid-write
    assert [r["run_id"] for r in log.read()] == ["a", "b"]
    assert log.completed_ids() == {"a"}


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_text(tmp_path / "s.csv", "a,b\n")
    atomic_write_text(tmp_path / "s.csv", "a,b\n1,2\n")
    assert (tmp_path / "s.csv").read_text() == "a,b\n1,2\n" and [p.name for p in tmp_path.iterdir()] == ["s.csv"]


def test_manifest_errors_name_the_problem(tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"version": 1, "combinations": [{"tasks": ["a"], "files": ["missing.tflite"]}]}))
    with pytest.raises(ManifestError, match="model file 'missing.tflite' not found"):
        load_manifest(manifest)
    manifest.write_text(json.dumps({"version": 2, "combinations": []}))
    with pytest.raises(ManifestError, match="unsupported version 2"):
        load_manifest(manifest)


def test_results_folder_refuses_another_device_or_benchmark_length(tmp_path):
    from android_bench.errors import ResultsMismatchError
    from android_bench.results import check_and_write_meta

    meta = {"target": "android", "device_serial": "A", "runtime": "r1",
            "measurement": PlanConfig().measurement()}
    check_and_write_meta(tmp_path, meta)
    check_and_write_meta(tmp_path, dict(meta))  # same sweep again: fine
    with pytest.raises(ResultsMismatchError, match="already holds results for device_serial='A', not 'B'"):
        check_and_write_meta(tmp_path, {**meta, "device_serial": "B"})
    with pytest.raises(ResultsMismatchError, match="measurement"):
        check_and_write_meta(tmp_path, {**meta, "measurement": PlanConfig(num_runs=10).measurement()})
