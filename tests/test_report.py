"""The report's pruning trajectory and step-cap hint, on hand-written pruning summaries."""
from __future__ import annotations

import pytest

from pam_tf.prune.loop import REASONS
from pam_tf.report import MethodResult, plot_pruning, pruning_series, step_cap_hint


def attempt(step, frac, acc, ref, inside, retry=0):
    return {"step": step, "retry": retry, "flops_fraction": frac, "accuracy": acc,
            "reference": ref, "within_budget": inside}


def result(title, prune):
    return MethodResult(method=title.lower(), title=title, plan_merged=None, plan=None,
                        manifest={"combinations": []}, prune=prune)


REF = {"a": 0.90, "b": 0.80}
PAM = result("PAM", {"reason": "max_steps", "message": f"{REASONS['max_steps']} after step 2",
                     "budget_points": 1.0, "history": [
                         attempt(0, 1.0, {"a": 0.91, "b": 0.80}, REF, True),
                         attempt(1, 0.5, {"a": 0.88, "b": 0.79}, REF, False),
                         attempt(1, 0.7, {"a": 0.90, "b": 0.795}, REF, True, retry=1)]})
B1 = result("B1", {"reason": "per-task", "message": "a: step 3 left the budget",
                   "history": {"a": [attempt(0, 1.0, {"a": 0.9}, {"a": 0.9}, True)],
                               "b": [attempt(0, 1.0, {"b": 0.8}, {"b": 0.8}, True),
                                     attempt(1, 0.4, {"b": 0.7}, {"b": 0.8}, False)]}})
# a graph run's history: FLOPs and accuracy only, the run's references apply
GRAPH = result("PAM graph", {"reason": "budget", "message": "step 1 left the budget",
                             "reference_accuracy": REF,
                             "history": [{"step": 0, "flops": 400, "accuracy": REF},
                                         {"step": 1, "attempt": 0, "removed": 3, "flops": 100,
                                          "accuracy": {"a": 0.85, "b": 0.80}}]})


def test_series_have_one_line_per_pruning_run_with_fraction_margin_and_verdict():
    series = pruning_series([PAM, B1, GRAPH])
    assert list(series) == ["PAM", "B1 / a", "B1 / b", "PAM graph"]
    pam = series["PAM"]
    assert [(p.step, p.flops_fraction, p.inside) for p in pam] == [
        (0, 1.0, True), (1, 0.5, False), (1, 0.7, True)]
    # worst task: a at -2 points in the failed attempt, b at -0.5 in the retry
    assert pam[1].margin == pytest.approx(-2.0) and pam[2].margin == pytest.approx(-0.5)
    assert series["B1 / b"][1].margin == pytest.approx(-10.0)
    graph = series["PAM graph"]
    assert graph[1].flops_fraction == pytest.approx(0.25)
    assert graph[1].margin == pytest.approx(-5.0) and graph[1].inside


def test_no_history_no_line():
    assert pruning_series([result("X", {"reason": "budget", "message": ""})]) == {}


def test_trajectory_plot_is_a_png(tmp_path):
    path = tmp_path / "pruning_trajectory.png"
    plot_pruning(str(path), pruning_series([PAM, B1, GRAPH]), 1.0)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_step_cap_hint_names_the_runs_that_stopped_on_the_cap_inside_the_budget():
    hint = step_cap_hint([PAM, B1])
    assert hint is not None and "PAM" in hint and "B1" not in hint
    assert "--max_prune_steps" in hint
    capped_b1 = result("B1", {"reason": "per-task",
                              "message": f"a: {REASONS['max_steps']} after step 40; b: budget"})
    assert "B1" in step_cap_hint([capped_b1])
    assert step_cap_hint([B1, GRAPH]) is None
