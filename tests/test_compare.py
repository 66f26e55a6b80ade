"""The CI comparison's checks (pam_tf.compare) on hand-made numbers: a sound comparison passes,
each way of being broken fails with its own message. No training, no TensorFlow: milliseconds.
"""
import json
import math

import pytest

from pam_tf import compare
from pam_tf.compare import MethodNumbers

TASKS = ["a", "b"]
COMBOS = ["a", "b", "a+b"]


def method(label="pam", title="PAM", primary=True, flops=None, acc=0.95, ref=0.955,
           budget=1.0, latency=0.01, layout="split") -> MethodNumbers:
    """A method's numbers: `flops` per combination (MACs = FLOPs / 2), one file per combination."""
    flops = flops or {"a": 100_000, "b": 120_000, "a+b": 150_000}
    combos = {c: {"flops": flops[c], "macs": flops[c] // 2, "flatbuffer_macs": flops[c] // 2,
                  "accuracy": {t: acc for t in c.split("+")}, "latency_ms": latency}
              for c in COMBOS}
    files = [{"file": f"{label}__{c}.tflite", "tasks": c.split("+"), "plan_macs": flops[c] // 2,
              "manifest_macs": flops[c] // 2, "counted_macs": flops[c] // 2} for c in COMBOS]
    return MethodNumbers(label=label, title=title, primary=primary, tasks=list(TASKS),
                         layout=layout, combinations=combos, files=files,
                         reference_accuracy={t: ref for t in TASKS}, budget_points=budget)


def b1(**kw) -> MethodNumbers:
    kw.setdefault("flops", {"a": 90_000, "b": 100_000, "a+b": 190_000})
    return method("b1", "B1 (no merging)", False, **kw)


def failing(methods, **kw) -> dict[str, list[str]]:
    """Check name -> problems, for the checks that fail."""
    return {c.name: c.problems for c in compare.run_checks(methods, **kw) if not c.ok}


def test_a_sound_comparison_passes_and_renders():
    methods = [method(), b1()]
    checks = compare.run_checks(methods)
    assert compare.problems(checks) == []
    text = compare.render(methods, checks)
    assert "| a+b | PAM | 0.1500 | 75,000 | 75,000 | a 95.00, b 95.00 | 0.0100 |" in text
    assert "| a+b | 1.267× |" in text and "B1/PAM FLOPs" in text
    assert "VERDICT: SOUND" in text
    assert compare.flops_ratios(methods)["b1"]["a"] == pytest.approx(0.9)


def test_a_non_finite_or_missing_number_fails():
    pam = method()
    pam.combinations["a+b"]["latency_ms"] = float("nan")
    pam.combinations["b"]["flops"] = None
    base = b1()
    base.combinations["a"]["accuracy"]["a"] = math.inf
    got = failing([pam, base])
    assert set(got) == {"complete"}
    assert "PAM a+b: latency_ms not finite (nan)" in got["complete"]
    assert "PAM b: flops missing" in got["complete"]
    assert "B1 (no merging) a: accuracy of a not finite (inf)" in got["complete"]


def test_a_missing_combination_or_baseline_fails():
    base = b1()
    del base.combinations["a+b"]
    assert "B1 (no merging): no combination a+b" in failing([method(), base])["complete"]
    assert any("no baseline" in p for p in failing([method()])["complete"])


def test_a_file_whose_macs_disagree_with_its_plan_fails():
    pam = method()
    pam.files[2]["counted_macs"] += 6
    pam.combinations["a"]["flatbuffer_macs"] += 1
    got = failing([pam, b1()])
    assert set(got) == {"macs"}
    assert "PAM file pam__a+b.tflite: counted 75006 MACs in the file, its plan (a+b) has 75000" \
        in got["macs"]
    assert "PAM a: its files count 50001 MACs, its plan 50000" in got["macs"]


def test_the_fused_layout_is_refused():
    got = failing([method(layout="fused"), b1()])
    assert got["macs"] == ["PAM: exported with layout 'fused', not 'split' (only there must the "
                           "files' MACs equal the plan's)"]


def test_an_accuracy_outside_the_budget_fails():
    # floor = 95.5 % - 1 point = 94.5 %: 94.49 % on the test half is out, 94.5 % is in
    got = failing([method(acc=0.9449), b1(acc=0.945)])
    assert set(got) == {"accuracy"}
    assert got["accuracy"] == [
        f"PAM a+b: {t} test-half accuracy 94.49 % is below 94.50 % (validation reference "
        "95.50 % minus the 1-point budget)" for t in TASKS]


def test_an_accuracy_slack_turns_a_small_shortfall_into_a_note():
    methods = [method(acc=0.9445), b1(acc=0.9395)]  # 0.05 and 0.55 points below the floor
    checks = compare.run_checks(methods, accuracy_slack=0.5)
    accuracy = checks[2]
    assert [p.split(":")[0] for p in accuracy.problems] == ["B1 (no merging) a+b"] * 2
    assert accuracy.notes[0].endswith("budget), within the 0.5-point slack")
    assert len(accuracy.notes) == 2


def test_pam_not_cheaper_on_all_tasks_fails_unless_not_required():
    methods = [method(), b1(flops={"a": 90_000, "b": 100_000, "a+b": 150_000})]
    got = failing(methods)
    assert got == {"pam_cheaper": ["PAM is not cheaper than B1 (no merging) on a+b: 0.1500 vs "
                                   "0.1500 MFLOPs (B1/PAM = 1.000x)"]}
    checks = compare.run_checks(methods, require_pam_cheaper=False)
    assert compare.problems(checks) == []
    verdict = compare.render_verdict(checks)
    assert "- pam_cheaper: ok, with notes" in verdict and "note: PAM is not cheaper" in verdict
    assert verdict.endswith("VERDICT: SOUND")


def test_cheaper_than_requires_only_the_named_baselines():
    b2 = method("b2", "B2 (MTZ)", False, flops={"a": 60_000, "b": 60_000, "a+b": 61_000})
    methods = [method(), b1(), b2]
    assert failing(methods) == {"pam_cheaper": [
        "PAM is not cheaper than B2 (MTZ) on a+b: 0.1500 vs 0.0610 MFLOPs (B2/PAM = 0.407x)"]}
    checks = compare.run_checks(methods, cheaper_than=["b1"])
    assert compare.problems(checks) == []
    assert checks[3].notes == ["PAM is not cheaper than B2 (MTZ) on a+b: 0.1500 vs 0.0610 "
                               "MFLOPs (B2/PAM = 0.407x)"]
    slower_b1 = [method(), b1(flops={"a": 90_000, "b": 100_000, "a+b": 140_000}), b2]
    assert "B1 (no merging)" in failing(slower_b1, cheaper_than=["b1"])["pam_cheaper"][0]


def test_every_problem_is_listed_at_once_and_the_summary_is_strict_json(tmp_path):
    pam = method(acc=0.5)
    pam.combinations["a"]["latency_ms"] = float("nan")
    pam.files[0]["counted_macs"] = 1
    methods = [pam, b1(flops={"a": 2, "b": 2, "a+b": 2})]
    checks = compare.run_checks(methods)
    found = compare.problems(checks)
    assert {p.split("]")[0] + "]" for p in found} == {
        "[complete]", "[macs]", "[accuracy]", "[pam_cheaper]"}
    assert "VERDICT: BROKEN (6 problem(s)):" in compare.render_verdict(checks)
    path = compare.write_summary(str(tmp_path), methods, checks, seconds=1.0)
    data = json.loads(open(path).read(), parse_constant=lambda c: pytest.fail(c))
    assert data["ok"] is False and data["problems"] == found
    assert data["methods"][0]["combinations"]["a"]["latency_ms"] is None


def test_read_errors_are_problems():
    pam = method()
    pam.read_errors.append("PAM: tflite/manifest.json: manifest not found")
    assert "PAM: tflite/manifest.json: manifest not found" in failing([pam, b1()])["complete"]


def test_the_settings_keep_the_comparison_honest():
    assert compare.CI_SETTINGS["layout"] == "split" and compare.CI_SETTINGS["mode"] == "subsets"
    # the accuracy budget and the criterion are the main job's, never shrunk for CI
    assert not {"budget", "criterion", "target_flops", "combinations"} & set(compare.CI_SETTINGS)
