"""Phone sweeps end to end against the fake adb: results, summaries, resume, faults, CLI."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fake_adb"))
import fakeadb  # noqa: E402

from android_bench.android import REMOTE_ROOT, run_android_sweep  # noqa: E402
from android_bench.cli import main as cli_main  # noqa: E402
from android_bench.errors import (BinaryNotExecutableError, BinaryNotFoundError,  # noqa: E402
                                  DeviceDisconnectedError, MultipleDevicesError, NoDeviceError,
                                  UnauthorizedDeviceError)
from android_bench.models import load_manifest, load_models_dir  # noqa: E402
from android_bench.plan import Cooldown, CpuProfile, PlanConfig  # noqa: E402
from android_bench.results import ResultsLog  # noqa: E402
from android_bench.summary import percentile, read_csv  # noqa: E402

FAKE = fakeadb.fake_module()
ODD = "it's a \"model\".tflite"
# Sizes are multiples of 40 so the fake's timings are whole microseconds at 1 and 2 threads.
MODELS = {"a.tflite": 8000, "b b.tflite": 16000, ODD: 24000}
QUICK = dict(num_runs=5, min_secs=0.0, warmup_runs=1, warmup_min_secs=0.0)


@pytest.fixture()
def models_dir(tmp_path: Path) -> Path:
    return fakeadb.fake_models_dir(tmp_path, MODELS)


def _sweep(fake, models, out, binary, **kw):
    config = kw.pop("config", PlanConfig(threads=(1,), repeats=1, **QUICK))
    lines: list[str] = []
    report = run_android_sweep(models, out, binary, config, adb_path=str(fake.adb), progress=lines.append, **kw)
    return report, lines


def _strip_clock(records):
    return [{k: v for k, v in r.items() if k != "clock"} for r in records]


def test_sweep_3_models_2_threads_2_repeats_results_and_summary(tmp_path, models_dir):
    fake = fakeadb.install(tmp_path)
    binary = fakeadb.fake_benchmark_binary(tmp_path)
    report, lines = _sweep(fake, load_models_dir(models_dir), tmp_path / "out", binary,
                           config=PlanConfig(threads=(1, 2), repeats=2, seed=3, **QUICK))
    assert (report.total, report.ok, report.failed, report.stopped) == (12, 12, 0, None)
    assert any(line.startswith("[1/12] ") and "avg" in line for line in lines)

    records = ResultsLog(tmp_path / "out").read()
    assert len(records) == 12 and {r["status"] for r in records} == {"ok"}
    assert sorted((r["model"]["name"], r["settings"]["threads"], r["repeat"]) for r in records) == sorted(
        (m, t, rep) for m in MODELS for t in (1, 2) for rep in (0, 1))
    for r in records:
        expected_us = FAKE.fake_avg_us(MODELS[r["model"]["name"]], r["settings"]["threads"], r["run_id"])
        assert r["metrics"]["avg_ms"] == pytest.approx(expected_us / 1000)
        assert r["metrics"]["delegate_status"] == "full" and not r["metrics"]["cpu_fallback"]
        assert set(r["thermal_before"]) == {"thermal_zone0", "thermal_zone1", "thermal_zone2"}
        assert r["thermal_before"]["thermal_zone1"] == 38.5 and len(r["cpufreq_after"]) == 8
        assert r["device"] == {"serial": "FAKE0001", "model": "Pixel 7", "soc": "GS201"}
        assert "Inference timings in us" in r["raw_output"]

    rows = read_csv(tmp_path / "out" / "summary_models.csv")
    assert len(rows) == 6
    for row in rows:
        runs = [r["metrics"]["avg_ms"] for r in records
                if r["model"]["name"] == row["model"] and r["settings"]["threads"] == int(row["threads"])]
        assert int(row["n"]) == 2
        assert float(row["mean_ms"]) == pytest.approx(sum(runs) / 2, abs=1e-4)
        assert float(row["p50_ms"]) == pytest.approx(percentile(runs, 50), abs=1e-4)
        assert float(row["p90_ms"]) == pytest.approx(percentile(runs, 90), abs=1e-4)
        assert float(row["std_ms"]) == pytest.approx(abs(runs[0] - runs[1]) / 2 ** 0.5, abs=1e-4)
    assert (tmp_path / "out" / "summary_combinations.md").read_text().count("| android |") == 6
    # the odd file name went through the device shell quoted, and the work folder is gone
    assert any("'\"'\"'s a \"model\".tflite'" in c[-1] for c in fake.calls() if "shell" in c)
    assert not (fake.fs() / REMOTE_ROOT.lstrip("/")).exists()


def test_disconnect_mid_sweep_then_rerun_resumes_to_the_same_results(tmp_path, models_dir):
    models = load_models_dir(models_dir)
    config = PlanConfig(threads=(1,), repeats=2, seed=1, **QUICK)
    ref_fake = fakeadb.install(tmp_path / "ref")
    _sweep(ref_fake, models, tmp_path / "ref_out", fakeadb.fake_benchmark_binary(tmp_path / "ref"), config=config)

    fake = fakeadb.install(tmp_path / "flaky")
    binary = fakeadb.fake_benchmark_binary(tmp_path / "flaky")
    fake.set_faults(disconnect_on_run=3, disconnect_mode="during")
    with pytest.raises(DeviceDisconnectedError) as e:
        _sweep(fake, models, tmp_path / "out", binary, config=config)
    assert "2 of 6 runs are saved" in str(e.value)
    assert "reconnect the phone and rerun the same command to resume" in str(e.value)
    assert len(ResultsLog(tmp_path / "out").read()) == 2
    assert (tmp_path / "out" / "summary_models.csv").exists()

    fake.reconnect()
    report, lines = _sweep(fake, models, tmp_path / "out", binary, config=config)
    assert (report.skipped, report.ok) == (2, 4)
    assert any(line.startswith("resuming: 2 of 6 runs already done") for line in lines)
    assert _strip_clock(ResultsLog(tmp_path / "out").read()) == _strip_clock(ResultsLog(tmp_path / "ref_out").read())
    assert read_csv(tmp_path / "out" / "summary_models.csv") == read_csv(tmp_path / "ref_out" / "summary_models.csv")


def test_hung_run_times_out_is_recorded_and_the_sweep_goes_on(tmp_path, models_dir):
    fake = fakeadb.install(tmp_path)
    fake.set_faults(hang_on_runs=[2])
    report, lines = _sweep(fake, load_models_dir(models_dir), tmp_path / "out",
                           fakeadb.fake_benchmark_binary(tmp_path), timeout_secs=1.5)
    assert (report.ok, report.failed, report.stopped) == (2, 1, None)
    assert "benchmark_model did not finish within 1.5 s" in report.failures[0]
    records = ResultsLog(tmp_path / "out").read()
    assert [r["status"] for r in records] == ["ok", "timeout", "ok"]
    assert records[1]["error"]["type"] == "RunTimeoutError"
    assert "killed it on the device (checked: gone)" in report.failures[0]
    assert ["-s", "FAKE0001", "shell", f"pkill -f '{REMOTE_ROOT}/[b]enchmark_model'"] in fake.calls()
    assert fake.procs() == []  # the hung benchmark_model no longer runs on the phone
    rows = read_csv(tmp_path / "out" / "summary_models.csv")
    assert sorted(row["failed_runs"] for row in rows) == ["0", "0", "1"]


def test_garbage_output_is_recorded_with_raw_output(tmp_path, models_dir):
    fake = fakeadb.install(tmp_path)
    fake.set_faults(garbage_on_runs=[1])
    report, _ = _sweep(fake, load_models_dir(models_dir), tmp_path / "out", fakeadb.fake_benchmark_binary(tmp_path))
    first = ResultsLog(tmp_path / "out").read()[0]
    assert report.failed == 1 and first["status"] == "error"
    assert first["error"]["type"] == "MalformedOutputError" and "Segmentation fault" in first["raw_output"]


def test_repeated_failures_stop_the_sweep(tmp_path, models_dir):
    fake = fakeadb.install(tmp_path)
    fake.set_faults(garbage_on_runs=[1, 2, 3])
    report, _ = _sweep(fake, load_models_dir(models_dir), tmp_path / "out", fakeadb.fake_benchmark_binary(tmp_path),
                       max_consecutive_failures=2)
    assert report.failed == 2 and "stopped after 2 failed runs in a row" in report.stopped


def test_missing_local_binary_fails_before_touching_the_phone(tmp_path, models_dir):
    fake = fakeadb.install(tmp_path)
    with pytest.raises(BinaryNotFoundError, match="benchmark_model binary not found at .*no_such_binary"):
        _sweep(fake, load_models_dir(models_dir), tmp_path / "out", tmp_path / "no_such_binary")
    assert fake.calls() == []


def test_binary_not_executable_on_the_device(tmp_path, models_dir):
    fake = fakeadb.install(tmp_path)
    fake.set_faults(binary_not_executable=True)
    with pytest.raises(BinaryNotExecutableError, match="not executable: 64-bit ELF file"):
        _sweep(fake, load_models_dir(models_dir), tmp_path / "out", fakeadb.fake_benchmark_binary(tmp_path))
    assert ResultsLog(tmp_path / "out").read() == []


def test_wrong_abi_elf_is_rejected_before_the_sweep(tmp_path, models_dir):
    fake = fakeadb.install(tmp_path)
    elf = tmp_path / "benchmark_model_x86_64"
    elf.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 11 + (62).to_bytes(2, "little") + b"\0" * 40)
    with pytest.raises(BinaryNotExecutableError, match="built for x86_64 but device FAKE0001 runs arm64-v8a"):
        _sweep(fake, load_models_dir(models_dir), tmp_path / "out", elf)
    assert not any(c[2:3] == ["push"] for c in fake.calls())


def test_no_device(tmp_path, models_dir):
    fake = fakeadb.install(tmp_path, devices=[])
    with pytest.raises(NoDeviceError, match="no Android device found"):
        _sweep(fake, load_models_dir(models_dir), tmp_path / "out", fakeadb.fake_benchmark_binary(tmp_path))


def test_unauthorized_device(tmp_path, models_dir):
    fake = fakeadb.install(tmp_path, devices=[fakeadb.device(state="unauthorized")])
    with pytest.raises(UnauthorizedDeviceError, match="accept the 'Allow USB debugging\\?' RSA key prompt"):
        _sweep(fake, load_models_dir(models_dir), tmp_path / "out", fakeadb.fake_benchmark_binary(tmp_path))


def test_several_devices_need_a_serial(tmp_path, models_dir):
    fake = fakeadb.install(tmp_path, devices=[fakeadb.device("FAKE0001"), fakeadb.device("FAKE0002", state="unauthorized")])
    with pytest.raises(MultipleDevicesError) as e:
        _sweep(fake, load_models_dir(models_dir), tmp_path / "out", fakeadb.fake_benchmark_binary(tmp_path))
    assert str(e.value) == ("2 devices connected: FAKE0001 (device, Pixel_7), FAKE0002 (unauthorized); "
                            "choose one with --serial SERIAL")


def test_gpu_silent_fallback_is_flagged_in_records_and_summary(tmp_path, models_dir):
    fake = fakeadb.install(tmp_path, gpu="none")
    report, lines = _sweep(fake, load_models_dir(models_dir), tmp_path / "out", fakeadb.fake_benchmark_binary(tmp_path),
                           config=PlanConfig(delegates=("gpu",), repeats=1, **QUICK))
    assert report.cpu_fallback == 3 and all("CPU FALLBACK" in line for line in lines if line.startswith("["))
    assert all(r["metrics"]["cpu_fallback"] for r in ResultsLog(tmp_path / "out").read())
    assert [row["cpu_fallback_runs"] for row in read_csv(tmp_path / "out" / "summary_models.csv")] == ["1"] * 3


def test_affinity_runs_under_taskset_with_the_profile_mask(tmp_path, models_dir):
    fake = fakeadb.install(tmp_path)
    profile = CpuProfile.from_dict({"big": [4, 5, 6, 7], "little": [0, 1, 2, 3]})
    report, _ = _sweep(fake, load_models_dir(models_dir), tmp_path / "out", fakeadb.fake_benchmark_binary(tmp_path),
                       cpu_profile=profile, config=PlanConfig(affinities=("big",), repeats=1, **QUICK))
    assert report.ok == 3
    runs = [c[-1] for c in fake.calls() if "shell" in c and "--graph=" in c[-1]]
    assert len(runs) == 3 and all(r.startswith(f"taskset f0 {REMOTE_ROOT}/benchmark_model ") for r in runs)
    assert {r["settings"]["affinity_mask"] for r in ResultsLog(tmp_path / "out").read()} == {"f0"}


def test_temperature_cooldown_waits_for_the_phone(tmp_path, models_dir):
    fake = fakeadb.install(tmp_path, heat_per_run_c=10.0, cool_per_read_c=2.0)
    cooldown = Cooldown(temp_c=40.0, poll_secs=0.0, max_wait_secs=30.0)
    _sweep(fake, load_models_dir(models_dir), tmp_path / "out", fakeadb.fake_benchmark_binary(tmp_path), cooldown=cooldown)
    records = ResultsLog(tmp_path / "out").read()
    assert records[0]["cooldown"]["polls"] == 1  # cool phone: first reading is fine
    assert all(r["cooldown"]["reached"] for r in records)
    assert records[1]["cooldown"]["polls"] > 1 and max(records[1]["thermal_before"].values()) < 40.0


def test_op_profiling_csv_is_pulled(tmp_path, models_dir):
    fake = fakeadb.install(tmp_path)
    _sweep(fake, load_models_dir(models_dir), tmp_path / "out", fakeadb.fake_benchmark_binary(tmp_path),
           op_profiling=True)
    for r in ResultsLog(tmp_path / "out").read():
        assert (tmp_path / "out" / r["profile_csv"]).read_text().startswith("node type,")


def test_cli_run_with_manifest_sums_files_of_a_combination(tmp_path, models_dir, capsys):
    manifest = models_dir / "manifest.json"
    manifest.write_text(json.dumps({
        "version": 1, "method": "nomerge", "tasks": ["a", "b"], "input_shape": [28, 28, 1],
        "combinations": [
            {"tasks": ["a"], "files": ["a.tflite"], "flops": 10, "accuracy": {"a": 0.97}},
            {"tasks": ["b"], "files": ["b b.tflite"], "flops": 20, "accuracy": {"b": 0.91}},
            {"tasks": ["a", "b"], "files": ["a.tflite", "b b.tflite"], "flops": 30, "macs": 15, "params": 7,
             "bytes": 24000, "gzip_bytes": 900, "accuracy": {"a": 0.97, "b": 0.91}, "max_abs_diff": 1e-7}]}))
    fake = fakeadb.install(tmp_path)
    binary = fakeadb.fake_benchmark_binary(tmp_path)
    out = tmp_path / "out"
    rc = cli_main(["run", "--manifest", str(manifest), "--out", str(out), "--benchmark_binary", str(binary),
                   "--adb", str(fake.adb), "--threads", "2", "--repeats", "2", "--num_runs", "5",
                   "--min_secs", "0", "--warmup_min_secs", "0"])
    printed = capsys.readouterr().out
    assert rc == 0 and "[1/4] " in printed and "4 runs done now" in printed
    records = ResultsLog(out).read()
    per_repeat = {rep: sum(r["metrics"]["avg_ms"] for r in records if r["repeat"] == rep) for rep in (0, 1)}
    combos = {row["combination"]: row for row in read_csv(out / "summary_combinations.csv")}
    both = combos["a+b"]
    assert float(both["mean_ms"]) == pytest.approx((per_repeat[0] + per_repeat[1]) / 2, abs=1e-4)
    assert (both["files"], both["flops"], both["gzip_bytes"], both["accuracy"]) == (
        "a.tflite + b b.tflite", "30", "900", "a=0.97 b=0.91")
    assert "sum over its files" in (out / "summary_combinations.md").read_text()
    assert load_manifest(manifest).combinations[2].files == ("a.tflite", "b b.tflite")
    # summarize rewrites the same files from the results folder alone
    before = (out / "summary_combinations.csv").read_text()
    assert cli_main(["summarize", "--out", str(out)]) == 0
    assert (out / "summary_combinations.csv").read_text() == before


def test_cli_reports_setup_errors_with_exit_code_2(tmp_path, models_dir, capsys):
    fake = fakeadb.install(tmp_path, devices=[])
    rc = cli_main(["run", "--models_dir", str(models_dir), "--out", str(tmp_path / "out"),
                   "--benchmark_binary", str(fakeadb.fake_benchmark_binary(tmp_path)), "--adb", str(fake.adb)])
    assert rc == 2 and capsys.readouterr().err.startswith("error: no Android device found")


def test_cli_devices_lists_facts(tmp_path, capsys):
    fake = fakeadb.install(tmp_path, devices=[fakeadb.device("FAKE0001"), fakeadb.device("FAKE0002", state="unauthorized")])
    assert cli_main(["devices", "--adb", str(fake.adb)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["FAKE0001\tdevice\tGoogle Pixel 7\tSoC GS201\tAndroid 14\tarm64-v8a",
                   "FAKE0002\tunauthorized\t(accept the RSA key prompt on the phone)"]


@pytest.mark.parametrize("message", [
    "/system/bin/sh: /data/local/tmp/pam_tf_bench/benchmark_model: not executable: 32-bit ELF file",
    "/system/bin/sh: /data/local/tmp/pam_tf_bench/benchmark_model: Exec format error",
    'CANNOT LINK EXECUTABLE "/data/local/tmp/pam_tf_bench/benchmark_model": library "libc++_shared.so" not found',
])
def test_shell_messages_that_mean_the_binary_cannot_run(message):
    from android_bench.android import _exec_failure
    assert _exec_failure("INFO: STARTING!\n" + message + "\n") == message
    assert _exec_failure("INFO: Loaded model /data/local/tmp/pam_tf_bench/1234abcd_no such file.tflite\n") is None
