"""The experiments tool: a tiny grid on synthetic data, its results files, resume, rendering."""
import json
import os
import subprocess
import sys

import pytest

from pam_tf.experiments import cell_labels, cell_name, get_experiment, run_cell
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


def reproduce_grid(folders, *flags):
    """`python -m tools.reproduce` on the fixture's synthetic grid (later flags win)."""
    return subprocess.run(
        [sys.executable, "-m", "tools.reproduce", "--experiments=synthetic",
         "--criteria=magnitude", "--seeds=0,1", f"--results={folders['results']}",
         f"--runs={folders['runs']}", f"--cache={folders['cache']}", *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_USE_LEGACY_KERAS="1"))


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
    if r["git_commit"] is not None:  # in a checkout (CI's clean clone is one)
        assert r["git_dirty"] in (True, False) and len(r["git_commit"]) == 40
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
    proc = reproduce_grid(folders)
    assert proc.returncode == 0, proc.stderr
    assert "all 2 cell(s) already have results" in proc.stdout


def test_a_cell_expects_the_results_files_of_the_methods_its_own_settings_run():
    """An experiment may leave PAM-S out (VGG_LIGHT) or compare with B1 alone (graph nets): a
    finished cell of it must count as done, so its labels come from its settings."""
    assert cell_labels(get_experiment("fashion2"), {}) == ["pam", "b1", "b2", "pam_spec"]
    assert cell_labels(get_experiment("composite-vgg"), {}) == ["pam", "b1", "b2"]
    assert cell_labels(get_experiment("composite-resnet"), {}) == ["pam", "b1"]
    assert cell_labels(get_experiment("fashion2"), {"specialise": False}) == ["pam", "b1", "b2"]


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


# --- the relatedness sweep and the paper/subsets comparison, on hand-made results (no pruning) --

def _result(exp, label, seed, flops, *, tasks=("a", "b"), groups=None, groups_merged=None,
            settings=None, variant="", ok=True):
    """A results dict with just the fields the renderer reads (FLOPs per combination in M)."""
    groups = groups or [{"+".join(tasks): 1}]
    return {"experiment": exp, "suite": exp, "arch": "lenet5", "label": label, "method": label,
            "title": label.upper(), "criterion": "taylor", "seed": seed, "variant": variant,
            "tasks": list(tasks), "git_commit": "0" * 40, "budget_points": 1.0,
            "combinations": {c: {"flops": f * 1e6, "latency": None} for c, f in flops.items()},
            "accuracy": {t: 0.9 for t in tasks}, "reference_accuracy": {t: 0.9 for t in tasks},
            "reference_accuracy_test": {t: 0.9 for t in tasks},
            "within_budget": {t: ok for t in tasks},
            "groups": groups, "groups_merged": groups_merged or groups,
            "settings": {"mode": "paper", "seed": seed, **(settings or {})}}


def _write(folder, results):
    os.makedirs(folder, exist_ok=True)
    for i, r in enumerate(results):
        with open(os.path.join(folder, f"{i:03d}.json"), "w") as f:
            json.dump(r, f)


def _sweep(gain_of_k, groups_of_k=None):
    """Results of k = 0, 2, 4, two seeds each: B1 a+b costs gain_of_k(k) × PAM's."""
    out = []
    for k in (0, 2, 4):
        for seed in (0, 1):
            g = gain_of_k(k) + 0.1 * seed
            pam_groups = (groups_of_k(k) if groups_of_k else
                          [{"a+b": 6 - k, "a": k}, {"b+a": 10 - k, "b": 1}])
            merged = [{"a+b": 10, "a": 1}, {"a+b": 20}]
            out += [_result(f"fashion-related-{k}", "pam", seed, {"a": 1.0, "b": 1.0, "a+b": 1.0},
                            groups=pam_groups, groups_merged=merged, ok=seed == 0),
                    _result(f"fashion-related-{k}", "b1", seed,
                            {"a": 0.5 * g, "b": 0.5 * g, "a+b": g})]
    return out


def test_relatedness_row_holds_the_ratios_and_shared_neurons():
    from pam_tf.results_doc import _groups, relatedness_row, relatedness_sets

    by_k = relatedness_sets(_groups(_sweep(lambda k: 2.0 - 0.2 * k)))["taylor"]
    assert sorted(by_k) == [0, 2, 4]
    row = relatedness_row(2, by_k[2])
    assert row["ratio_seeds"] == [0, 1]
    assert row["ratio"]["a+b"] == pytest.approx([1.6, 1.7])
    assert row["ratio"]["a"] == pytest.approx([0.8, 0.85])
    # the all-task group is found whatever the order of its owners ("b+a" in layer 2)
    assert row["shared_after"] == [[4, 8], [4, 8]] and row["total_after"] == [[6, 9], [6, 9]]
    assert row["shared_before"] == [[10, 20], [10, 20]]
    assert row["within_budget"] == {"pam": (1, 2), "b1": (2, 2)}


def test_relatedness_sweep_is_one_section_with_its_numbers_and_plots(tmp_path):
    _write(tmp_path / "res", _sweep(lambda k: 2.0 - 0.2 * k))
    text = open(render(str(tmp_path / "res"), str(tmp_path / "doc" / "results.md"))).read()
    assert "## Relatedness sweep: fashion-related-k (taylor)" in text
    assert "## fashion-related-0 (taylor)" not in text  # folded into the sweep's section
    row = next(l for l in text.splitlines() if l.startswith("| 2 | 3 of 5 |"))
    assert "0,1 (n=2)" in row and "1.65 ± 0.07" in row and "1/2 / 2/2" in row
    shared = next(l for l in text.splitlines() if l.startswith("| 4 | ") and "→" in l)
    assert "10.0/11.0 → 2.0/6.0" in shared and "30.0/31.0 → 8.0/13.0" in shared
    assert "Here the a+b gain falls over the sweep by more than the seed-to-seed spread " \
           "(fitted change -0.80, spread 0.07), as predicted." in text
    assert "Single tasks cost more with PAM than with B1 (ratio below 1) at k = 2, 4," in text
    assert "mostly its all-task group" in text
    for name in ("relatedness_ratio_taylor.png", "relatedness_shared_taylor.png"):
        assert os.path.exists(tmp_path / "doc" / "results_plots" / name)


def test_relatedness_findings_say_when_the_gain_does_not_fall():
    from pam_tf.results_doc import _groups, relatedness_findings, relatedness_row, \
        relatedness_sets

    by_k = relatedness_sets(_groups(_sweep(lambda k: 1.0 + 0.2 * k)))["taylor"]
    text = " ".join(relatedness_findings([relatedness_row(k, bm) for k, bm in by_k.items()]))
    assert "**rises** over the sweep" in text and "slope +0.200 per k" in text
    assert "from 1.05× at k = 0 to 1.85× at k = 4" in text
    assert "(fitted change +0.80, spread 0.07), **unlike** that prediction." in text


COMBOS3 = {"x": 1.0, "y": 1.0, "z": 1.0, "x+y": 1.5, "x+z": 1.5, "y+z": 1.5, "x+y+z": 2.0}


def _modes(paper_scale, paper_settings=None):
    tasks = ("x", "y", "z")
    sub = [{"x+y+z": 4, "x+y": 2, "z": 1}]
    out = []
    for seed in (0, 1):
        out += [
            _result("comp", "pam", seed, COMBOS3, tasks=tasks, groups=sub,
                    settings={"mode": "subsets", "compare": True}),
            _result("comp", "b1", seed, {c: 2 * f for c, f in COMBOS3.items()}, tasks=tasks,
                    settings={"mode": "subsets", "compare": True}),
            _result("comp", "pam", seed, {c: paper_scale(c) * f for c, f in COMBOS3.items()},
                    tasks=tasks, groups=[{"x+y+z": 6, "x": 1}], variant="paper_mode",
                    settings={"mode": "paper", "compare": False, **(paper_settings or {})})]
    return out


def test_mode_comparison_per_combination_kind():
    from pam_tf.results_doc import _groups, _variant_rows, mode_comparison, mode_variants

    results = _modes(lambda c: 0.5 if len(c) == 1 else 1.0)
    found = mode_variants(_variant_rows(results)[("comp", "taylor")])
    assert found and found[1] == "paper_mode"
    b1 = _groups(results)[("comp", "taylor")]["b1"]
    rows = mode_comparison(found[0], found[2], b1)
    assert [(r["tasks"], r["combinations"]) for r in rows] == [(1, 3), (2, 3), (3, 1)]
    assert rows[0]["paper_over_subsets"] == pytest.approx([0.5] * 6)
    assert rows[0]["b1_over_paper"] == pytest.approx([4.0] * 6)
    assert rows[2]["paper_over_subsets"] == pytest.approx([1.0, 1.0])
    assert rows[2]["b1_over_subsets"] == pytest.approx([2.0, 2.0])
    assert rows[1]["subsets_mflops"] == pytest.approx([1.5] * 6)


def test_mode_section_is_rendered_only_for_a_mode_only_variant(tmp_path):
    from pam_tf.results_doc import _variant_rows, mode_variants

    _write(tmp_path / "res", _modes(lambda c: 0.5 if len(c) == 1 else 1.0))
    text = open(render(str(tmp_path / "res"), str(tmp_path / "results.md"))).read()
    assert "## PAM paper mode against subsets mode: comp (taylor)" in text
    row = next(l for l in text.splitlines() if l.startswith("| 1 | 3 |"))
    assert ("| 1.0000 ± 0.0000 | 0.5000 ± 0.0000 | 0.50 ± 0.00 | 2.00 ± 0.00 | 4.00 ± 0.00 |"
            in row)
    assert "| subsets | 4.0 → 4.0 | 2.0 → 2.0 | 1.0 → 1.0 |" in text
    assert "Paper mode is cheaper on combinations of 1 task(s), dearer on none." in text
    assert "It does not pay off on single tasks here." in text
    other = _modes(lambda c: 1.0, paper_settings={"alpha": 0.3})  # differs in more than mode
    assert mode_variants(_variant_rows(other)[("comp", "taylor")]) is None


def test_mode_findings_when_paper_mode_is_dearer_at_equal_neurons(tmp_path):
    _write(tmp_path / "res", _modes(lambda c: 1.5))
    text = open(render(str(tmp_path / "res"), str(tmp_path / "results.md"))).read()
    assert "Paper mode is dearer on every kind of combination." in text
    assert "It pays off here on single tasks" in text
    assert "(7 against 7, 1.00×), yet its all-task combination costs 1.50× as much" in text
    assert "B1/PAM is 2.00× in subsets mode and 1.33× in paper mode" in text
    assert "reaches 1.33× (x) in paper mode and 2.00× (x) in subsets mode" in text


def test_a_change_within_the_seed_spread_is_no_trend():
    from pam_tf.results_doc import trend_verdict

    assert trend_verdict([0, 2, 4], [[1.0, 1.5], [1.1, 1.6], [1.2, 1.7]])[0] == "flat"
    verdict, change, spread = trend_verdict([0, 2, 4], [[2.0, 2.1], [1.6, 1.7], [1.2, 1.3]])
    assert verdict == "falls" and change == pytest.approx(-0.8)
    assert spread == pytest.approx(0.0707, abs=1e-4)
    assert trend_verdict([0, 5], [[2.0], [1.0]])[0] == "unknown"  # one seed each


def test_sharing_that_falls_without_the_gain_points_at_the_layers_that_stay_shared():
    from pam_tf.results_doc import _groups, relatedness_findings, relatedness_row, \
        relatedness_sets

    by_k = relatedness_sets(_groups(_sweep(lambda k: 2.0, lambda k: [
        {"a+b": 3}, {"a+b": 20 - 2 * k, "a": k, "b": k}])))["taylor"]
    text = " ".join(relatedness_findings([relatedness_row(k, bm) for k, bm in by_k.items()]))
    assert "**no** trend against relatedness is shown" in text
    assert "falls by 0 points" not in text and "The sharing itself does follow" in text
    assert "layer(s) 1 are wholly in the all-task group at every k and seed" in text


def test_only_the_taylor_section_of_fashion2_is_set_against_the_papers_taylor_row(tmp_path):
    flops = {"a": 1.0, "b": 1.0, "a+b": 1.5}
    _write(tmp_path / "res", [_result("fashion2", l, 0, flops, settings={"criterion": c})
                              | {"criterion": c} for l in ("pam", "b1")
                              for c in ("taylor", "magnitude")])
    text = open(render(str(tmp_path / "res"), str(tmp_path / "results.md"))).read()
    magnitude = text.split("## fashion2 (magnitude)")[1].split("## fashion2 (taylor)")[0]
    taylor = text.split("## fashion2 (taylor)")[1]
    assert "Against the paper" not in magnitude and "no magnitude row" in magnitude
    assert "Against the paper (B1/PAM): a: measured 1.00×, paper 0.99×" in taylor


def test_pam_s_is_shown_beside_pam_with_the_cheaper_of_the_two_per_combination(tmp_path):
    """PAM-S is no baseline: no PAM_SPEC/PAM column; PAM + PAM-S takes, per seed and
    combination, the cheaper of the shared file and the specialised files."""
    results = []
    for seed, (pam_a, spec_a) in enumerate([(0.4, 0.2), (0.5, 0.3)]):
        results += [_result("toy", "pam", seed, {"a": pam_a, "b": 0.4, "a+b": 0.5}),
                    _result("toy", "pam_spec", seed, {"a": spec_a, "b": 0.6, "a+b": spec_a + .6}),
                    _result("toy", "b1", seed, {"a": 0.3, "b": 0.3, "a+b": 0.6})]
    _write(str(tmp_path / "results"), results)
    text = open(render(str(tmp_path / "results"), str(tmp_path / "results.md"))).read()
    assert "PAM_SPEC/PAM" not in text and "B1 / (PAM + PAM-S)" in text
    row = {l.split(" | ")[0].strip("| "): l for l in text.splitlines()
           if l.startswith("| a") and "PAM-S" not in l}
    # a: min(0.4, 0.2)=0.2 and min(0.5, 0.3)=0.3 -> B1 ratios 1.5 and 1.0, mean 1.25
    assert "0.2500 ± 0.0707" in row["a"] and "**1.25×** (1.00–1.50)" in row["a"]
    # b: the shared file (0.4) beats the specialised one (0.6): ratio 0.3 / 0.4
    assert "**0.75×** (0.75–0.75)" in [l for l in text.splitlines() if l.startswith("| b |")][-1]
    assert "PAM_SPEC" not in readme_table(str(tmp_path / "results"), "toy")


def test_fashion2_section_sets_b2_against_the_papers_b2_column(tmp_path):
    results = []
    for seed in (0, 1):
        results += [_result("fashion2", "pam", seed, {"a": 0.10, "b": 0.10, "a+b": 0.12}),
                    _result("fashion2", "b1", seed, {"a": 0.08, "b": 0.08, "a+b": 0.16}),
                    _result("fashion2", "b2", seed, {"a": 0.15, "b": 0.15, "a+b": 0.15})]
    _write(str(tmp_path / "results"), results)
    text = open(render(str(tmp_path / "results"), str(tmp_path / "results.md"))).read()
    assert "here (28×28): a 0.1500, b 0.1500, a+b 0.1500" in text
    assert "a: measured 1.50×, paper 1.85×" in text and "a+b: measured 1.25×, paper 1.08×" in text


def test_one_net_reference_is_the_sum_of_b1_over_its_dearest_net(tmp_path):
    """Σ B1 / max B1 per seed: 0.6/0.4 = 1.5 and 0.5/0.3 ≈ 1.67, mean 1.58."""
    results = []
    for seed, (a, b) in enumerate([(0.2, 0.4), (0.3, 0.2)]):
        results += [_result("toy", "pam", seed, {"a": 0.4, "b": 0.4, "a+b": 0.5}),
                    _result("toy", "b1", seed, {"a": a, "b": b, "a+b": a + b})]
    _write(str(tmp_path / "results"), results)
    text = open(render(str(tmp_path / "results"), str(tmp_path / "results.md"))).read()
    assert "Σ B1 / max B1 = **1.58×** (seeds 1.50–1.67)" in text


def test_a_section_with_a_result_from_uncommitted_code_says_so(tmp_path):
    clean = [_result("toy", "pam", 0, {"a": 0.4, "b": 0.4, "a+b": 0.5}),
             _result("toy", "b1", 0, {"a": 0.3, "b": 0.3, "a+b": 0.6})]
    _write(str(tmp_path / "clean"), clean)
    assert "uncommitted" not in open(render(str(tmp_path / "clean"),
                                            str(tmp_path / "c.md"))).read()
    _write(str(tmp_path / "dirty"), [clean[0], {**clean[1], "git_dirty": True}])
    assert "(**uncommitted changes** in some cells)" in open(
        render(str(tmp_path / "dirty"), str(tmp_path / "d.md"))).read()


# --- results run under other settings than today's (defaults changed, --set without --variant) --

def test_settings_diff_names_what_differs_and_skips_what_a_file_predates():
    from pam_tf.experiments import format_settings, settings_diff

    recorded = {"train_samples": 12000, "mtz_merge": ["1"], "lr": 1e-3, "seed": 3,
                "method": "mtz"}
    expected = {"train_samples": 48000, "mtz_merge": ("1",), "lr": 1e-3, "seed": 0,
                "method": "pam", "finetune_scale": "task"}
    # seed and method are not what a method computes; finetune_scale postdates the file
    assert settings_diff(recorded, expected) == {"train_samples": (12000, 48000)}
    assert format_settings({"finetune_scale": "network", "mtz_merge": ["1"]}) == \
        "finetune_scale=network,mtz_merge=1"


def test_a_results_file_run_with_other_settings_stops_the_grid_and_is_kept(grid, tmp_path):
    """Today's defaults (or --set) differ from what a finished cell ran with: the grid must
    neither count the cell as done nor overwrite its only record."""
    import shutil

    folders, _ = grid
    results = tmp_path / "results"
    shutil.copytree(folders["results"], results)
    path = results / cell_name("synthetic", "b1", "magnitude", 1)
    r = json.load(open(path))
    r["settings"]["train_samples"] = 999
    path.write_text(json.dumps(r))
    before = path.read_bytes()
    proc = reproduce_grid(folders, f"--results={results}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "1 results file(s) of this grid were run with other settings" in proc.stderr
    assert f"{path}: ran with train_samples=999 (this grid: 256)" in proc.stderr
    assert path.read_bytes() == before
    # the same settings passed with --set (no --variant): every file matches, the grid is done
    for other in results.glob("*.json"):
        r = json.load(open(other))
        r["settings"]["train_samples"] = 999
        other.write_text(json.dumps(r))
    proc = reproduce_grid(folders, f"--results={results}", "--set=train_samples=999")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all 2 cell(s) already have results" in proc.stdout


def test_a_section_run_under_earlier_defaults_prints_them_in_its_command(tmp_path):
    old = {"finetune_scale": "network", "train_samples": 12000}
    _write(tmp_path / "res", [_result("toy", l, s, {"a": 0.4, "b": 0.4, "a+b": 0.5},
                                      settings=old) for l in ("pam", "b1") for s in (0, 1)]
           + [_result("now", l, 0, {"a": 0.4, "b": 0.4, "a+b": 0.5}) for l in ("pam", "b1")])
    text = open(render(str(tmp_path / "res"), str(tmp_path / "results.md"))).read()
    toy = text.split("## toy (taylor)")[1]
    assert ("--seeds=0,1 --set=finetune_scale=network,train_samples=12000`" in toy)
    assert "finetune_scale=network (today task), train_samples=12000 (today 48000)" in toy
    now = text.split("## now (taylor)")[1].split("## toy")[0]
    assert "--seeds=0`" in now and "differ from today's defaults" not in now


def test_a_pam_only_variant_is_set_against_the_b1_closest_to_it_in_settings(tmp_path):
    """After the defaults change, a PAM-only variant run on the earlier defaults must be
    compared with the B1 of the earlier defaults, not today's."""
    old = {"finetune_scale": "network", "train_samples": 12000}
    flops = {"a": 0.4, "b": 0.4, "a+b": 0.5}
    _write(tmp_path / "res", [
        _result("toy", "pam", 0, flops), _result("toy", "b1", 0, {"a": 0.4, "b": 0.4, "a+b": 1.0}),
        _result("toy", "pam", 0, flops, variant="old", settings=old),
        _result("toy", "b1", 0, {"a": 0.2, "b": 0.2, "a+b": 0.5}, variant="old", settings=old),
        _result("toy", "pam", 0, flops, variant="ptb_old",
                settings={**old, "per_task_budget": True, "compare": False}),
        # B1 reads no finetune_scale (one task per net): today's B1 is this one's
        _result("toy", "pam", 0, flops, variant="per_net",
                settings={"finetune_scale": "network", "compare": False})])
    text = open(render(str(tmp_path / "res"), str(tmp_path / "results.md"))).read()
    rows = {l.split(" | ")[0].strip("| "): l for l in text.split("## Ablation: toy")[1].splitlines()
            if l.startswith("| ")}
    assert "| defaults | 0 | default | 0.4000 (1.00×) |" in rows["default"]
    assert "| finetune_scale=network, train_samples=12000 | 0 | old | 0.4000 (0.50×) |" in \
        rows["old"]
    assert "per_task_budget=True" in rows["ptb_old"] and "| 0 | old | 0.4000 (0.50×) |" in \
        rows["ptb_old"]
    assert "| 0 | default | 0.4000 (1.00×) |" in rows["per_net"]


def test_mode_section_finds_its_subsets_side_in_a_variant_when_the_defaults_moved(tmp_path):
    from pam_tf.results_doc import _variant_rows, mode_variants

    moved = [dict(r, variant=r["variant"] or "old",  # files record every setting they ran with
                  settings={**r["settings"], "train_samples": 12000})
             for r in _modes(lambda c: 1.0)]
    moved += [_result("comp", "pam", s, COMBOS3, tasks=("x", "y", "z"),
                      settings={"mode": "subsets", "train_samples": 48000}) for s in (0, 1)]
    found = mode_variants(_variant_rows(moved)[("comp", "taylor")])
    assert found and found[1] == "paper_mode" and found[3] == "old"
    _write(tmp_path / "res", moved)
    text = open(render(str(tmp_path / "res"), str(tmp_path / "results.md"))).read()
    assert "Variant `old` of `comp` runs PAM in subsets mode" in text


def test_a_run_folder_summarises_with_the_model_checksums_it_recorded(tmp_path):
    """Its model files may be gone (a deleted worktree): the results name the files and
    checksums the run validated, never a path."""
    from types import SimpleNamespace

    from pam_tf.experiments import run_models

    (tmp_path / "inputs.json").write_text(json.dumps({"models": [
        {"path": "/gone/examples/fashion2/lenet5_a.keras", "sha256": "ab" * 32, "task": "a"}]}))
    pipeline = SimpleNamespace(folder=SimpleNamespace(path=lambda name: str(tmp_path / name)),
                               config=SimpleNamespace(models=("/gone/lenet5_a.keras",)))
    assert run_models(pipeline) == [{"file": "lenet5_a.keras", "sha256": "ab" * 32}]


def test_an_ablation_row_on_other_trained_nets_than_the_defaults_says_so(tmp_path):
    """Nets retrained elsewhere (other checksums) make a variant's MFLOPs incomparable with
    the default row: the page says so for that variant and seed only."""
    flops = {"a": 0.4, "b": 0.4, "a+b": 0.5}

    def nets(*sums):
        return [{"file": f"m{i}.keras", "sha256": s} for i, s in enumerate(sums)]
    results = [dict(_result("toy", "pam", s, flops), models=nets("x", "y")) for s in (0, 1)]
    results += [dict(_result("toy", "pam", 0, flops, variant="same"), models=nets("x", "y")),
                dict(_result("toy", "pam", 0, flops, variant="moved"), models=nets("x", "y")),
                dict(_result("toy", "pam", 1, flops, variant="moved"), models=nets("x", "z"))]
    _write(tmp_path / "res", results)
    text = open(render(str(tmp_path / "res"), str(tmp_path / "results.md"))).read()
    ablation = text.split("## Ablation: toy")[1]
    assert ("Variant `moved` ran on other trained single-task nets than the default row "
            "(model checksums differ for seed(s) 1:") in ablation
    assert "Variant `same`" not in ablation


def test_a_results_file_names_the_cpu_and_simd_features_it_ran_on(tmp_path):
    """Same code, seed and nets gave other results on another CPU: the file must say which."""
    from pam_tf.experiments import machine

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU 9000\n"
                    "flags\t\t: fpu sse2 avx2 avx512f\n")
    m = machine(str(info))
    assert (m["cpu"], m["simd"]) == ("Some CPU 9000", ["avx2", "avx512f"])
    bare = machine(str(tmp_path / "absent"))  # not Linux: what platform says
    assert "cpu" not in bare and {"system", "cpus", "processor"} <= set(bare)


def test_an_ablation_row_measured_on_another_cpu_says_so(tmp_path):
    epyc = {"cpu": "AMD EPYC", "simd": ["avx2", "avx512f"]}
    default = [_result("fashion2", "pam", s, {"a": 1.0, "b": 1.0, "a+b": 1.2}) for s in (0, 1)]
    here = _result("fashion2", "pam", 0, {"a": 2.0, "b": 2.0, "a+b": 2.2}, variant="here")
    same = _result("fashion2", "pam", 0, {"a": 2.0, "b": 2.0, "a+b": 2.2}, variant="same")
    here["machine"] = epyc
    _write(str(tmp_path / "res"), default + [here, same])
    text = open(render(str(tmp_path / "res"), str(tmp_path / "results.md"))).read()
    assert ("Variant `here` ran on AMD EPYC (avx2, avx512f); the default row's files do not "
            "record their CPU") in text
    assert "Variant `same` ran on" not in text  # records no CPU: nothing to compare
    for r in default:
        r["machine"] = epyc
    _write(str(tmp_path / "res"), default + [here, same])
    assert "ran on AMD" not in open(render(str(tmp_path / "res"),
                                           str(tmp_path / "results.md"))).read()
