"""Issue 14's targets scored on hand-made results files (no pruning)."""
from pam_tf import results_doc
from pam_tf.targets import TARGETS, Target, score, scope, with_specialised
from tests.test_reproduce import _result, _write

ALL = Target("fashion2", "b1", "all", 1.16)
SINGLES = Target("fashion2", "b1", "singles", 1.0)
SHARED = Target("fashion2", "b2", "shared_singles", 1.85)


def runs(label, flops, seeds=(0, 1, 2), ok=True, groups=None, variant=""):
    return [_result("fashion2", label, s, flops, ok=ok if s == 0 else True, groups=groups,
                    variant=variant) for s in seeds]


PAM = {"a": 1.0, "b": 1.0, "a+b": 1.2}
B1 = {"a": 1.1, "b": 0.9, "a+b": 2.0}  # a+b 1.67x, a 1.1x, b 0.9x


def test_a_target_is_judged_on_its_weakest_combination():
    s = score(SINGLES, runs("pam", PAM), runs("b1", B1))
    assert (s.weakest, round(s.value, 3), s.seeds, s.within, s.met) == ("b", 0.9, 3, 3, False)
    s = score(ALL, runs("pam", PAM), runs("b1", B1))
    assert s.weakest == "a+b" and round(s.value, 3) == round(2.0 / 1.2, 3) and s.met


def test_fewer_seeds_or_pam_outside_its_budget_is_not_met_but_a_baseline_outside_is():
    assert not score(ALL, runs("pam", PAM, seeds=(0, 1)), runs("b1", B1)).met
    outside = score(ALL, runs("pam", PAM, ok=False), runs("b1", B1))
    assert (outside.within, outside.met) == (2, False)
    base_outside = score(ALL, runs("pam", PAM), runs("b1", B1, ok=False))
    assert (base_outside.within, base_outside.base_within, base_outside.met) == (3, 2, True)


def test_shared_singles_count_only_where_b2_is_fully_shared():
    shared = runs("b2", {"a": 2.0, "b": 2.0, "a+b": 2.0}, groups=[{"a+b": 3}, {"a+b": 2}])
    split = runs("b2", {"a": 2.0, "b": 2.0, "a+b": 2.0}, groups=[{"a+b": 3, "a": 1}])
    assert scope(SHARED, runs("pam", PAM), shared) == ["a", "b"]
    assert score(SHARED, runs("pam", PAM), shared).met
    assert scope(SHARED, runs("pam", PAM), split) == []
    assert score(SHARED, runs("pam", PAM), split).value is None


def test_the_page_lists_every_target_with_its_defaults_and_best_variant(tmp_path):
    folder = str(tmp_path / "results")
    better = {"a": 0.8, "b": 0.8, "a+b": 1.0}  # a variant PAM-only: set against default B1
    _write(folder, runs("pam", PAM) + runs("b1", B1)
           + runs("pam", better, variant="v"))
    doc = results_doc.render(folder, str(tmp_path / "results.md"))
    with open(doc, encoding="utf-8") as f:
        text = f.read()
    rows = [l for l in text.splitlines() if l.startswith("| fashion2 | B1/PAM")]
    assert rows[0] == ("| fashion2 | B1/PAM ≥ 1.16× on all tasks | 1.67× (a+b) | 3/3 (3/3) | "
                       "**yes** | v: 2.00× (a+b) (met) | – |")
    assert "| 0.90× (b) | 3/3 (3/3) | no | v: 1.12× (b) (met) | – |" in rows[1]
    assert sum(l.startswith("| ") and "/PAM ≥" in l for l in text.splitlines()) == len(TARGETS)
    # no fashion5 results here
    assert "| fashion5 | B1/PAM ≥ 3× on all tasks | – | – | – | – | – |" in text


def test_pam_with_pam_s_files_takes_the_cheaper_file_only_where_pam_s_is_inside_its_budget():
    pam = runs("pam", PAM)
    spec = runs("pam_spec", {"a": 0.5, "b": 0.5, "a+b": 1.0})
    spec[0]["within_budget"] = {"a": True, "b": False}  # seed 0: b's own file left the budget
    both = with_specialised(pam, spec)
    flops = [{c: e["flops"] / 1e6 for c, e in r["combinations"].items()} for r in both]
    assert flops[0] == {"a": 0.5, "b": 1.0, "a+b": 1.2}
    assert flops[1] == flops[2] == {"a": 0.5, "b": 0.5, "a+b": 1.0}
    assert pam[0]["combinations"]["a"]["flops"] == 1.0e6  # PAM's own results are untouched
    assert with_specialised(pam, spec[1:])[0]["seed"] == 1  # seeds without PAM-S are left out


def test_the_page_scores_pam_with_pam_s_files_in_its_own_column(tmp_path):
    folder = str(tmp_path / "results")
    _write(folder, runs("pam", PAM) + runs("b1", B1)
           + runs("pam_spec", {"a": 0.5, "b": 0.5, "a+b": 1.0}))
    doc = results_doc.render(folder, str(tmp_path / "results.md"))
    with open(doc, encoding="utf-8") as f:
        rows = [l for l in f.read().splitlines() if l.startswith("| fashion2 | B1/PAM")]
    # singles: PAM alone 0.90x (b), with PAM-S's files 1.8x (b: 0.9 / 0.5), met
    assert rows[1].endswith("| no | default: 0.90× (b) | 1.80× (b) (met) |")
