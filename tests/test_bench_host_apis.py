"""benchmarks/bench_host_apis.py at toy size: all three host paths time the same file and agree
on the order of magnitude (the real numbers: benchmarks/results/host_apis.json)."""
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_host_apis.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_host_apis", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_three_paths_side_by_side_on_one_file(tmp_path):
    bench = _bench()
    doc = bench.run(size=16, rounds=1, num_runs=5, min_secs=0.0, folder=tmp_path)
    assert doc["tool_available"]  # ai_edge_litert 2.3.0 ships benchmark_litert_model
    assert list(doc["results"]) == ["interpreter", "compiled_model", "benchmark_litert_model"]
    assert doc["model"]["macs"] > 1e6
    for row in doc["results"].values():
        assert row["runs"] >= 5 and 0 < row["min_ms"] <= row["median_ms"]
        assert 0.1 < row["median_vs_tool"] < 10 and 0.1 < row["min_vs_tool"] < 10
    table = bench.render(doc)
    assert all(name in table for name in doc["results"]) and "median/tool" in table and "min/tool" in table
