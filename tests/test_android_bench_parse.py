"""android_bench.parse: benchmark_model output, old and new formats (fixtures reconstructed from the
tool's source; see tests/fixtures/benchmark_model/README.md)."""
from __future__ import annotations

from pathlib import Path

import pytest

from android_bench.errors import BenchmarkFailedError, MalformedOutputError
from android_bench.parse import output_metrics, parse_benchmark_output, parse_stat_line

FIXTURES = Path(__file__).parent / "fixtures" / "benchmark_model"


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_old_tf1_format_exact_values():
    out = parse_benchmark_output(_fixture("old_tf1_cpu_threads4.txt"))
    assert out.format == "old" and out.timings_style == "average"
    assert out.init_session_ms == 3.217 and out.init_us == 3217
    assert out.warmup_avg_us == 8123 and out.inference_avg_us == 1301.44
    assert out.warmup.count == 1 and out.warmup.all_same and out.first_inference_us == 8123
    st = out.steady
    assert (st.count, st.first, st.curr, st.min, st.max, st.avg, st.std) == (50, 1322, 1290, 1268, 1507, 1301.44, 41)
    assert st.percentiles == {}
    assert out.params["Num threads"] == "4" and out.params["Use nnapi"] == "0"
    assert out.delegate_status == "not_requested" and not out.cpu_fallback
    assert out.avg_us == 1301.44


def test_old_tf2_format_exact_values_and_partial_delegation():
    out = parse_benchmark_output(_fixture("old_tf2_nnapi_partial.txt"), requested_delegate="nnapi")
    assert out.format == "old" and out.timings_style == "inference"
    assert (out.init_us, out.first_inference_us, out.warmup_avg_us, out.inference_avg_us) == (
        31870, 1204512, 1.20451e6, 2243.7)
    assert out.init_session_ms == 31.87
    assert out.steady.count == 446 and out.steady.min == 2104 and out.steady.std == 118
    assert (out.memory_init_mb, out.memory_overall_mb, out.peak_memory_mb) == (2.98047, 9.82422, None)
    assert out.model_size_mb == 0.412336
    assert out.delegate_status == "partial" and out.delegated_kernels == 3
    assert not out.cpu_fallback


def test_new_format_with_percentiles_exact_values():
    out = parse_benchmark_output(_fixture("new_xnnpack_full_percentiles.txt"), requested_delegate="xnnpack")
    assert out.format == "new" and out.timings_style == "inference"
    assert (out.init_us, out.first_inference_us, out.warmup_avg_us, out.inference_avg_us) == (12514, 584, 266.4, 262.9)
    assert out.warmup.count == 1873 and out.warmup.percentiles == {"p5": 254, "p50": 263, "p95": 281}
    st = out.steady
    assert (st.count, st.first, st.curr, st.min, st.max, st.avg, st.std) == (3794, 266, 259, 249, 412, 262.9, 9)
    assert st.percentiles == {"p5": 252, "p50": 261, "p95": 276}
    assert (out.memory_init_mb, out.memory_overall_mb) == (4.22656, 4.97266)
    assert out.delegate_status == "full" and not out.cpu_fallback
    m = output_metrics(out)
    assert m["avg_ms"] == pytest.approx(0.2629) and m["p50_ms"] == pytest.approx(0.261)
    assert m["p95_ms"] == pytest.approx(0.276) and m["p90_ms"] is None


def test_new_format_gpu_not_executed_is_flagged_as_cpu_fallback():
    out = parse_benchmark_output(_fixture("new_gpu_not_executed.txt"), requested_delegate="gpu")
    assert out.inference_avg_us == 84.7 and out.steady.count == 11748 and out.steady.percentiles == {}
    assert out.peak_memory_mb == 31.6875 and out.memory_overall_mb == 24.1055
    assert out.delegate_status == "none" and out.delegated_kernels == 0
    assert out.cpu_fallback
    assert "silent CPU fallback" in out.fallback_reason


def test_requested_delegate_never_mentioned_is_flagged_as_cpu_fallback():
    # The TF 1.x output never mentions a delegate: asking for GPU and getting this is a fallback.
    out = parse_benchmark_output(_fixture("old_tf1_cpu_threads4.txt"), requested_delegate="gpu")
    assert out.delegate_status == "not_reported" and out.cpu_fallback


def test_cpu_delegate_request_is_never_a_fallback():
    out = parse_benchmark_output(_fixture("new_gpu_not_executed.txt"), requested_delegate="cpu")
    assert out.delegate_status == "not_requested" and not out.cpu_fallback


def test_garbage_output_raises_malformed_output_error():
    with pytest.raises(MalformedOutputError, match="no steady-state timing"):
        parse_benchmark_output("Segmentation fault\nxyzzy 12 34\n")


def test_truncated_output_raises_malformed_output_error():
    text = _fixture("new_xnnpack_full_percentiles.txt").split("INFO: Running benchmark")[0]
    with pytest.raises(MalformedOutputError):
        parse_benchmark_output(text)


def test_tool_reported_failure_raises_benchmark_failed_error():
    text = ("INFO: STARTING!\nINFO: Though GPU delegate is explicitly applied, the model graph will not be "
            "executed by the delegate.\nERROR: Disallowed CPU fallback detected.\nERROR: Benchmarking failed.\n")
    with pytest.raises(BenchmarkFailedError, match="Disallowed CPU fallback detected"):
        parse_benchmark_output(text, requested_delegate="gpu")


def test_all_same_stat_line():
    st = parse_stat_line("count=5 curr=80(all same)")
    assert st.all_same and st.count == 5 and st.avg == 80 and st.min == 80 and st.std == 0


def test_labelled_steady_state_and_separate_percentile_line_are_accepted():
    text = ("Initialized session in 3.2ms.\n"
            "Steady-state: count=50 first=100 curr=80 min=75 max=120 avg=82.3 std=5\n"
            "Percentiles: p5=76 p50=81 p90=95 p95=101 p99=118\n")
    out = parse_benchmark_output(text)
    assert out.steady.avg == 82.3 and out.avg_us == 82.3 and out.init_session_ms == 3.2
    assert out.steady.percentiles == {"p5": 76, "p50": 81, "p90": 95, "p95": 101, "p99": 118}


def test_op_profiling_summary_lines_do_not_replace_steady_state():
    text = _fixture("old_tf1_cpu_threads4.txt").replace(
        "Average inference", "Timings (microseconds): count=50 first=1 curr=1 min=1 max=9 avg=2 std=1\n"
        "Memory (bytes): count=0\nAverage inference")
    out = parse_benchmark_output(text)
    assert out.steady.avg == 1301.44 and out.steady.count == 50
