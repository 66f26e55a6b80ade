"""Host mode: real small .tflite files timed with the LiteRT interpreter, same result format."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from android_bench.cli import main as cli_main
from android_bench.errors import HostModeError
from android_bench.host import run_host_sweep, time_model
from android_bench.models import load_manifest
from android_bench.plan import PlanConfig
from android_bench.results import ResultsLog
from android_bench.summary import read_csv

QUICK = dict(num_runs=20, min_secs=0.02, warmup_runs=2, warmup_min_secs=0.0)


@pytest.fixture(scope="module")
def tflite_dir(tmp_path_factory) -> Path:
    """Two tiny Keras models (one per task) converted to .tflite, and a no-merge manifest."""
    from pam_tf.compat import keras, tf

    out = tmp_path_factory.mktemp("tflite")
    for name, units, seed in (("nomerge__a.tflite", 16, 0), ("nomerge__b.tflite", 32, 1)):
        keras.utils.set_random_seed(seed)
        inp = keras.Input((28, 28, 1))
        x = keras.layers.Flatten()(inp)
        x = keras.layers.Dense(units, activation="relu")(x)
        model = keras.Model(inp, keras.layers.Dense(10, name="head")(x))
        (out / name).write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    (out / "manifest.json").write_text(json.dumps({
        "version": 1, "method": "nomerge", "tasks": ["a", "b"], "input_shape": [28, 28, 1],
        "combinations": [
            {"tasks": ["a"], "files": ["nomerge__a.tflite"], "accuracy": {"a": 0.9}},
            {"tasks": ["b"], "files": ["nomerge__b.tflite"], "accuracy": {"b": 0.8}},
            {"tasks": ["a", "b"], "files": ["nomerge__a.tflite", "nomerge__b.tflite"],
             "accuracy": {"a": 0.9, "b": 0.8}}]}))
    return out


def test_host_sweep_reports_p50_p90_per_combination(tflite_dir, tmp_path):
    lines: list[str] = []
    out = tmp_path / "host"
    report = run_host_sweep(load_manifest(tflite_dir / "manifest.json"), out,
                            PlanConfig(threads=(1, 2), repeats=2, **QUICK), progress=lines.append)
    assert (report.ok, report.failed) == (8, 0) and sum(line.startswith("[") for line in lines) == 8
    records = ResultsLog(out).read()
    for r in records:
        m = r["metrics"]
        assert r["settings"]["target"] == "host" and r["status"] == "ok"
        assert m["count"] >= 20 and 0 < m["min_ms"] <= m["p50_ms"] <= m["p90_ms"] <= m["max_ms"]
        assert m["init_ms"] > 0 and m["warmup_count"] >= 2 and m["delegate_status"] == "host_default"
    combos = read_csv(out / "summary_combinations.csv")
    assert sorted((c["combination"], c["threads"]) for c in combos) == [
        (c, t) for c in ("a", "a+b", "b") for t in ("1", "2")]
    for row in combos:
        assert row["n"] == "2" and float(row["p50_ms"]) > 0 and float(row["p90_ms"]) >= float(row["p50_ms"])
        threads = int(row["threads"])
        files = row["files"].split(" + ")
        sums = [sum(r["metrics"]["avg_ms"] for r in records
                    if r["repeat"] == rep and r["settings"]["threads"] == threads and r["model"]["name"] in files)
                for rep in (0, 1)]
        assert float(row["mean_ms"]) == pytest.approx(sum(sums) / 2, abs=1e-4)
    models = read_csv(out / "summary_models.csv")
    assert len(models) == 4 and all(float(m["bench_p50_ms"]) > 0 and float(m["bench_p90_ms"]) > 0 for m in models)


def test_host_inputs_follow_the_model_and_the_seed(tflite_dir):
    metrics, text = time_model(tflite_dir / "nomerge__a.tflite", threads=1, num_runs=3, min_secs=0.0,
                               warmup_min_secs=0.0, delegate="cpu")
    assert metrics["count"] >= 3 and metrics["delegate_status"] == "not_requested"
    assert "threads=1 delegate=cpu" in text


def test_host_mode_refuses_phone_only_delegates(tflite_dir, tmp_path):
    with pytest.raises(HostModeError, match="delegate 'gpu' is not available in host mode"):
        run_host_sweep(load_manifest(tflite_dir / "manifest.json"), tmp_path / "x", PlanConfig(delegates=("gpu",)))


def test_cli_host_with_models_dir(tflite_dir, tmp_path, capsys):
    rc = cli_main(["host", "--models_dir", str(tflite_dir), "--out", str(tmp_path / "out"), "--threads", "1",
                   "--repeats", "1", "--num_runs", "5", "--min_secs", "0", "--warmup_min_secs", "0"])
    assert rc == 0 and "2 runs done now" in capsys.readouterr().out
    assert [row["model"] for row in read_csv(tmp_path / "out" / "summary_models.csv")] == [
        "nomerge__a.tflite", "nomerge__b.tflite"]


def test_compiled_model_runner_computes_what_the_interpreter_computes(tflite_dir):
    """Inputs really reach the CompiledModel's TensorBuffers: same outputs as the Interpreter."""
    import numpy as np

    from android_bench.host import _CompiledModelRunner, _InterpreterRunner, _random_inputs

    path = str(tflite_dir / "nomerge__b.tflite")
    interp, compiled = _InterpreterRunner(path, 1, "xnnpack"), _CompiledModelRunner(path, 1, "xnnpack")
    assert [s for _, _, s, _ in compiled.inputs] == [s for _, _, s, _ in interp.inputs] == [[1, 28, 28, 1]]
    x = _random_inputs(compiled.inputs, seed=3)
    assert np.array_equal(x[0], _random_inputs(interp.inputs, seed=3)[0])
    for runner in (interp, compiled):
        runner.set_inputs(x)
        runner.invoke()
    want = interp.interpreter.get_tensor(interp.interpreter.get_output_details()[0]["index"])
    got = compiled.output_buffers[0].read(10, np.float32)
    np.testing.assert_allclose(got.reshape(want.shape), want, atol=1e-5)
    assert float(np.abs(want).sum()) > 0


def test_host_sweep_with_compiled_model_keeps_its_own_runtime_and_run_ids(tflite_dir, tmp_path):
    from android_bench.errors import ResultsMismatchError

    models = load_manifest(tflite_dir / "manifest.json")
    config = PlanConfig(threads=(1,), repeats=1, **QUICK)
    report = run_host_sweep(models, tmp_path / "cm", config, host_api="compiled_model", progress=lambda _l: None)
    assert (report.ok, report.failed) == (2, 0)
    cm = ResultsLog(tmp_path / "cm").read()
    assert all(r["command"][0] == "ai_edge_litert.compiled_model.CompiledModel.from_file" for r in cm)
    assert all(r["settings"]["runtime"].endswith(" CompiledModel") and r["metrics"]["avg_ms"] > 0 for r in cm)
    assert all("api=compiled_model" in r["raw_output"] for r in cm)
    run_host_sweep(models, tmp_path / "it", config, progress=lambda _l: None)
    it = ResultsLog(tmp_path / "it").read()
    assert {r["run_id"] for r in cm}.isdisjoint(r["run_id"] for r in it)
    with pytest.raises(ResultsMismatchError):  # one folder, one API
        run_host_sweep(models, tmp_path / "it", config, host_api="compiled_model", progress=lambda _l: None)
    with pytest.raises(HostModeError, match="host API 'tflite' is unknown"):
        run_host_sweep(models, tmp_path / "x", config, host_api="tflite")


def test_cli_host_api_compiled_model(tflite_dir, tmp_path, capsys):
    rc = cli_main(["host", "--models_dir", str(tflite_dir), "--out", str(tmp_path / "out"), "--repeats", "1",
                   "--num_runs", "5", "--min_secs", "0", "--warmup_min_secs", "0", "--host_api", "compiled_model"])
    assert rc == 0 and "2 runs done now" in capsys.readouterr().out
    assert all(r["settings"]["runtime"].endswith(" CompiledModel") for r in ResultsLog(tmp_path / "out").read())
