"""docs/results.md, rendered from the experiments' results JSON files (never typed by hand).

Per experiment and criterion: per task combination, each method's FLOPs as mean ± std over
seeds, the ratio of every baseline to PAM per combination (mean over seeds, with its minimum and
maximum), each task's test accuracy against its budget, host latency; a plot of the ratios.
The README's result table is the fashion2 part of the same rendering (:func:`readme_table`),
checked by a test against the committed results.

Two experiments get sections of their own: the relatedness sweep (`fashion-related-k`, k = 0..5,
rendered as one table and two plots against k instead of six sections, since its point is the
trend), and PAM's paper mode against its subsets mode wherever an experiment runs subsets mode by
default and has a variant that differs from it in the mode only.
"""
from __future__ import annotations

import glob
import json
import os
import re
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from pam_tf import io

PRIMARY = "pam"
SPECIALISED = "pam_spec"  # PAM-S: shown beside PAM, never as a baseline ratio over PAM
# method.md §10, LeNet-5 / Fashion-MNIST, P-Taylor: B1 / PAM MFLOPs per combination
#: The paper's LeNet-5 / Fashion-MNIST P-Taylor row (method.md §10), MFLOPs at its input size.
PAPER_FASHION2_FLOPS = {"pam": {"a": 28.49, "b": 26.16, "a+b": 48.68},
                        "b1": {"a": 28.34, "b": 28.34, "a+b": 56.69},
                        "b2": {"a": 52.58, "b": 52.58, "a+b": 52.58}}
PAPER_FASHION2_RATIO = {c: PAPER_FASHION2_FLOPS["b1"][c] / f
                        for c, f in PAPER_FASHION2_FLOPS["pam"].items()}

PAPER = ("The paper (method.md §10) reports up to 4.87× less computation than B1 and up to 2.01× "
         "less than B2 (maxima over all its experiments and combinations); on LeNet-5 / "
         "Fashion-MNIST with P-Taylor, A&B 1.16× cheaper than B1 and single tasks about as "
         "cheap (A 28.49 vs 28.34, B 26.16 vs 28.34 MFLOPs at its larger input).")


def load_results(folder: str) -> list[dict]:
    """Every results JSON in `folder` (sorted by file name, so the page is stable)."""
    out = []
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        with open(path, encoding="utf-8") as f:
            out.append(json.load(f))
    return out


def _groups(results: Iterable[dict]) -> dict[tuple[str, str], dict[str, list[dict]]]:
    """(experiment, criterion) → method label → results over seeds (sorted by seed)."""
    table: dict = defaultdict(lambda: defaultdict(list))
    for r in results:
        if not r.get("variant"):  # variants (ablations) have their own section
            table[(r["experiment"], r["criterion"])][r["label"]].append(r)
    for by_method in table.values():
        for runs in by_method.values():
            runs.sort(key=lambda r: r["seed"])
    return table


def _mean_std(values: list[float]) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.4f}"


def ratios(by_method: dict[str, list[dict]], baseline: str) -> dict[str, list[float]]:
    """Per combination, baseline FLOPs / PAM FLOPs for every seed both have."""
    pam = {r["seed"]: r for r in by_method.get(PRIMARY, [])}
    out: dict[str, list[float]] = {}
    for b in by_method.get(baseline, []):
        p = pam.get(b["seed"])
        if p is None:
            continue
        for combo, e in b["combinations"].items():
            if combo in p["combinations"]:
                out.setdefault(combo, []).append(e["flops"] / p["combinations"][combo]["flops"])
    return out


def _flops_table(by_method: dict[str, list[dict]], labels: list[str]) -> list[str]:
    combos = list(by_method[labels[0]][0]["combinations"])
    base = [l for l in labels if l not in (PRIMARY, SPECIALISED)]
    head = ["combination", *[f"{by_method[l][0]['title']} MFLOPs" for l in labels],
            *[f"{l.upper()}/PAM (min–max)" for l in base if PRIMARY in labels]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rat = {b: ratios(by_method, b) for b in base}
    for c in combos:
        cells = [_mean_std([r["combinations"][c]["flops"] / 1e6 for r in by_method[l]])
                 for l in labels]
        if PRIMARY in labels:
            cells += [f"**{np.mean(rat[b][c]):.2f}×** ({min(rat[b][c]):.2f}–{max(rat[b][c]):.2f})"
                      if rat[b].get(c) else "–" for b in base]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    for b in base:
        if PRIMARY in labels and rat[b]:
            means = {c: float(np.mean(v)) for c, v in rat[b].items()}
            best = max(means, key=means.get)
            lines.append("")
            lines.append(f"{b.upper()}/PAM over the combinations: maximum **{means[best]:.2f}×** "
                         f"({best}), mean {np.mean(list(means.values())):.2f}×, minimum "
                         f"{min(means.values()):.2f}× ({min(means, key=means.get)}).")
    return lines


def _accuracy_table(by_method: dict[str, list[dict]], labels: list[str]) -> list[str]:
    tasks = by_method[labels[0]][0]["tasks"]
    lines = ["| method | " + " | ".join(f"{t}: test acc (ref) %" for t in tasks)
             + " | seeds within budget |", "|---|" + "---|" * (len(tasks) + 1)]
    for l in labels:
        runs = by_method[l]
        cells = []
        for t in tasks:
            acc = [100 * r["accuracy"][t] for r in runs]
            ref = [100 * r.get("reference_accuracy_test", r["reference_accuracy"])[t]
                   for r in runs]
            cells.append(f"{np.mean(acc):.2f} ({np.mean(ref):.2f})")
        ok = sum(all((r.get("within_budget") or {}).values()) for r in runs)
        lines.append(f"| {runs[0]['title']} | " + " | ".join(cells) + f" | {ok}/{len(runs)} |")
    budget = by_method[labels[0]][0].get("budget_points")
    lines += ["", f"Budget: {budget} point(s) below each unpruned single-task net. Pruning "
              "judges it on the validation half; here test accuracy is set against the unpruned "
              "net's test accuracy (in brackets), the same half on both sides."]
    return lines


def _latency_table(by_method: dict[str, list[dict]], labels: list[str]) -> list[str]:
    combos = list(by_method[labels[0]][0]["combinations"])
    lines = ["| combination | " + " | ".join(f"{by_method[l][0]['title']} p50 (ms)"
                                              for l in labels) + " |",
             "|---|" + "---|" * len(labels)]
    have = False
    for c in combos:
        cells = []
        for l in labels:
            vals = [r["combinations"][c]["latency"]["p50_ms"] for r in by_method[l]
                    if r["combinations"][c].get("latency")]
            have |= bool(vals)
            cells.append(f"{np.mean(vals):.4f}" if vals else "–")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return lines if have else []


def _paper_comparison(exp: str, by_method: dict[str, list[dict]],
                      criterion: str = "taylor") -> list[str]:
    """Where the measured B1/PAM ratios differ from the paper's (fashion2 with P-Taylor only:
    the paper's row is P-Taylor's, and it has no magnitude row to compare with)."""
    if exp != "fashion2" or "b1" not in by_method:
        return []
    if criterion != "taylor":
        return ["", f"The paper's fashion2 ratios are P-Taylor's (method.md §10); it reports no "
                f"{criterion} row with all combinations, so this section has nothing of the "
                f"paper's to set against."]
    rat = ratios(by_method, "b1")
    rows = [f"{c}: measured {np.mean(rat[c]):.2f}×, paper {p:.2f}×"
            for c, p in PAPER_FASHION2_RATIO.items() if rat.get(c)]
    worse = [c for c, p in PAPER_FASHION2_RATIO.items() if rat.get(c) and np.mean(rat[c]) < p]
    text = ["", "Against the paper (B1/PAM): " + "; ".join(rows) + "."]
    text += _paper_b2_rows(by_method)
    if worse:
        text.append(f"Below the paper on {', '.join(worse)}: after pruning, pam-tf's PAM network "
                    "is nearly one shared trunk (see the groups below), so a single task pays "
                    "for features the other task needed, while the paper's pruned nets keep "
                    "exclusive neurons in every layer (method.md §7); pam-tf's B1 is also "
                    "stronger than the paper's (FLOPs-aware ranking keeps about 13 % of a "
                    "net's FLOPs, the paper's 17-27 %).")
    return text


def _paper_b2_rows(by_method: dict[str, list[dict]]) -> list[str]:
    """The paper's B2 column (its MTZ trunk costs the same for A, B and A&B) beside ours."""
    if "b2" not in by_method:
        return []
    rat = ratios(by_method, "b2")
    paper = PAPER_FASHION2_FLOPS
    rows = [f"{c}: measured {np.mean(rat[c]):.2f}×, paper {paper['b2'][c] / paper['pam'][c]:.2f}×"
            for c in paper["pam"] if rat.get(c)]
    b2 = {c: np.mean([r["combinations"][c]["flops"] for r in by_method["b2"]]) / 1e6
          for c in paper["b2"]}
    return ["", "The paper's B2 column (MFLOPs at its input): " + ", ".join(
        f"{c} {f:.2f}" for c, f in paper["b2"].items()) + "; here (28×28): " + ", ".join(
        f"{c} {f:.4f}" for c, f in b2.items()) + ". Against the paper (B2/PAM): "
        + "; ".join(rows) + ". Both B2 trunks cost about the same for every combination; the "
        "paper's PAM single tasks are 1.85-2.01× cheaper than its B2, ours about as cheap, "
        "because our pruned PAM net is itself nearly one shared trunk."]


def _attribution_rows(parts: dict[str, int]) -> tuple[float, float, float]:
    """(shared, exclusive, heads) shares of a combination's FLOPs."""
    total = sum(parts.values()) or 1
    shared = sum(v for k, v in parts.items() if k != "heads" and "+" in k)
    return shared / total, (total - shared - parts.get("heads", 0)) / total, \
        parts.get("heads", 0) / total


def _attribution_table(by_method: dict[str, list[dict]]) -> list[str]:
    """Where PAM's FLOPs come from, per single task and the all-task combination, before and
    after pruning (mean over seeds): groups shared by several tasks, exclusive groups, heads."""
    runs = [r for r in by_method.get(PRIMARY, []) if r.get("attribution")]
    if not runs:
        return []
    tasks = runs[0]["tasks"]
    combos = [*tasks, "+".join(tasks)]
    lines = ["", "Where PAM's FLOPs come from (share of each combination's FLOPs, mean over "
             "seeds; before → after pruning):", "",
             "| combination | MFLOPs | shared groups | exclusive groups | heads |", "|---|---|---|---|---|"]
    for c in combos:
        before = np.mean([_attribution_rows(r["attribution_merged"][c]) for r in runs], axis=0)
        after = np.mean([_attribution_rows(r["attribution"][c]) for r in runs], axis=0)
        mf = [np.mean([sum(r[k][c].values()) for r in runs]) / 1e6
              for k in ("attribution_merged", "attribution")]
        lines.append(f"| {c} | {mf[0]:.3f} → {mf[1]:.3f} | " + " | ".join(
            f"{100 * b:.0f} % → {100 * a:.0f} %" for b, a in zip(before, after)) + " |")
    return lines


def _ratio_plot(path: str, by_method: dict[str, list[dict]], title: str) -> bool:
    from pam_tf.report import plot_bars

    base = [l for l in by_method if l not in (PRIMARY, SPECIALISED)]
    rat = {b: ratios(by_method, b) for b in base}
    combos = list(next(iter(by_method.values()))[0]["combinations"])
    if not any(rat.values()):
        return False
    plot_bars(path, combos, {f"{b.upper()}/PAM": [float(np.mean(rat[b][c])) if rat[b].get(c)
                                                  else None for c in combos] for b in base},
              ylabel="FLOPs ratio (>1: PAM cheaper)", title=title,
              reference={c: 1.0 for c in combos}, reference_label="equal cost")
    return True


def best_of_pam(by_method: dict[str, list[dict]]) -> dict[int, dict[str, float]]:
    """Per seed and combination, the cheaper way to run it with PAM's files: the shared PAM
    file, or PAM-S's specialised files of its tasks (a deployment that ships both)."""
    spec = {r["seed"]: r for r in by_method.get(SPECIALISED, [])}
    out = {}
    for p in by_method.get(PRIMARY, []):
        s = spec.get(p["seed"])
        if s is None:
            continue
        out[p["seed"]] = {c: min(e["flops"], s["combinations"][c]["flops"])
                          for c, e in p["combinations"].items() if c in s["combinations"]}
    return out


def _specialised_table(by_method: dict[str, list[dict]]) -> list[str]:
    """PAM-S and PAM + PAM-S (the cheaper of the two per combination) against the baselines."""
    best = best_of_pam(by_method)
    if not best:
        return []
    bases = [l for l in by_method if l not in (PRIMARY, SPECIALISED)]
    spec = {r["seed"]: r for r in by_method[SPECIALISED]}
    combos = list(next(iter(best.values())))
    head = ["combination", "PAM-S MFLOPs", "PAM + PAM-S MFLOPs",
            *[f"{b.upper()} / (PAM + PAM-S) (min–max)" for b in bases]]
    lines = ["", "PAM-S cuts each task's sub-network out of the pruned PAM net and prunes it "
             "further for that task alone (`--specialise`; one more file per task). "
             "PAM + PAM-S runs each combination with whichever is cheaper: the shared PAM file "
             "or the specialised files of its tasks.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = {b: {r["seed"]: r for r in by_method[b]} for b in bases}
    for c in combos:
        cells = [_mean_std([spec[s]["combinations"][c]["flops"] / 1e6 for s in best]),
                 _mean_std([best[s][c] / 1e6 for s in best])]
        for b in bases:
            rat = [rows[b][s]["combinations"][c]["flops"] / best[s][c]
                   for s in best if s in rows[b]]
            cells.append(f"**{np.mean(rat):.2f}×** ({min(rat):.2f}–{max(rat):.2f})"
                         if rat else "–")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return lines


SEPARATE = "b1"  # the separately pruned nets, whose largest sets the all-task reference below


def one_net_reference(by_method: dict[str, list[dict]]) -> dict[int, float]:
    """Per seed, Σ_t B1(t) / max_t B1(t): the all-task B1/PAM ratio a merged net reaches when it
    costs as much as the dearest of the separately pruned nets, i.e. when the hardest task's own
    pruned net could carry every task. It is no bound (a merged net can be cheaper than that
    net, B1's nets carry pruning noise), but it says what an all-task ratio means: n tasks of
    equal cost give n×, one task much dearer than the rest gives little more than 1×."""
    out = {}
    for r in by_method.get(SEPARATE, []):
        tasks = r["tasks"]
        if len(tasks) < 2:
            continue
        singles = [r["combinations"][t]["flops"] for t in tasks]
        out[r["seed"]] = r["combinations"]["+".join(tasks)]["flops"] / max(singles)
    return out


def _one_net_line(by_method: dict[str, list[dict]]) -> list[str]:
    ref = one_net_reference(by_method)
    if not ref:
        return []
    v = list(ref.values())
    return ["", f"One-net reference for the all-task combination: Σ B1 / max B1 = "
                f"**{np.mean(v):.2f}×** (seeds {min(v):.2f}–{max(v):.2f}), the B1/PAM ratio of a "
                f"merged net that costs what the dearest separately pruned net costs."]


def experiment_section(key: tuple[str, str], by_method: dict[str, list[dict]],
                       plots: str) -> list[str]:
    """The page's section of one (experiment, criterion)."""
    exp, criterion = key
    labels = sorted(by_method, key=lambda l: (l != PRIMARY, l))
    first = by_method[labels[0]][0]
    seeds = sorted({r["seed"] for runs in by_method.values() for r in runs})
    set_arg, why = _defaults_note([r for runs in by_method.values() for r in runs])
    lines = ["", f"## {exp} ({criterion})", "",
             f"Suite `{first['suite']}`, {first['arch']}, tasks {', '.join(first['tasks'])}; "
             f"seeds {', '.join(map(str, seeds))}; code at "
             f"`{(first.get('git_commit') or 'unknown')[:10]}`"
             + (" (**uncommitted changes** in some cells)" if any(
                 r.get("git_dirty") for runs in by_method.values() for r in runs) else "")
             + ".", "",
             f"Command: `python -m tools.reproduce --experiments={exp} --criteria={criterion} "
             f"--seeds={','.join(map(str, seeds))}{set_arg}`", *why, "",
             "FLOPs in the paper's convention (method.md §9), mean ± std over seeds; ratios are "
             "the mean over seeds of baseline FLOPs / PAM FLOPs (> 1: PAM is cheaper).", ""]
    lines += _flops_table(by_method, [l for l in labels if l != SPECIALISED])
    lines += _specialised_table(by_method)
    lines += _one_net_line(by_method)
    name = f"ratio_{exp}_{criterion}.png"
    if _ratio_plot(os.path.join(plots, name), by_method, f"{exp} ({criterion})"):
        lines += ["", f"![ratio per combination](results_plots/{name})"]
    lines += _paper_comparison(exp, by_method, criterion)
    lines += ["", "Accuracy on the test half, all-task combination:", ""]
    lines += _accuracy_table(by_method, labels)
    lat = _latency_table(by_method, labels)
    if lat:
        lines += ["", "Host LiteRT latency (1 thread), mean over seeds:", ""] + lat
    lines += _attribution_table(by_method)
    lines += ["", "PAM groups per layer after pruning (first seed): " + "; ".join(
        ", ".join(f"{k}: {v}" for k, v in g.items()) or "–"
        for g in by_method.get(PRIMARY, [first])[0]["groups"])]
    return lines


def by_variant(results: list[dict], label: str
               ) -> dict[tuple[str, str], dict[str, list[dict]]]:
    """(experiment, criterion) → variant ("" = defaults) → one method's results over seeds."""
    table: dict = defaultdict(lambda: defaultdict(list))
    for r in results:
        if r["label"] == label:
            table[(r["experiment"], r["criterion"])][r.get("variant", "")].append(r)
    return {k: dict(v) for k, v in table.items()}


def _variant_rows(results: list[dict], label: str = PRIMARY
                  ) -> dict[tuple[str, str], dict[str, list[dict]]]:
    """:func:`by_variant`; for PAM only the experiments that have an ablation row."""
    return {k: v for k, v in by_variant(results, label).items()
            if len(v) > 1 or label != PRIMARY}


def _config_defaults() -> dict:
    """Every main-job setting at its default (a results file written before a setting existed
    ran with its default), as the experiments run it (their cell defaults included)."""
    from pam_tf.config import RunConfig
    from pam_tf.experiments import CELL_DEFAULTS

    return RunConfig.from_flat((), "", **CELL_DEFAULTS).flat()


def todays_settings(result: dict) -> dict:
    """The settings `result`'s cell would run with today without --set: the main job's
    defaults, the cell defaults and its experiment's own (hand-made results of tests name no
    registered experiment: the defaults alone)."""
    from pam_tf.experiments import EXPERIMENTS, cell_flat

    exp = EXPERIMENTS.get(result["experiment"])
    if exp is None:
        return {**_config_defaults(), "criterion": result["criterion"], "seed": result["seed"]}
    return cell_flat(exp, result["criterion"], result["seed"], {})


def full_settings(result: dict) -> dict:
    """Every setting `result` ran with: those its file records, the rest at today's defaults
    (a setting a file does not record did not exist yet, so it ran as its default does)."""
    return {**todays_settings(result), **(result.get("settings") or {})}


def off_defaults(results: Iterable[dict]) -> tuple[dict[str, tuple], list[str]]:
    """What the files of one section ran with that today's defaults differ in: ({setting:
    (recorded value, today's value)} of the first file that has any, and the settings in which
    the files differ among themselves). A section run before the defaults changed stays on
    the page, saying with what it ran, and its command reruns exactly that."""
    from pam_tf.experiments import settings_diff

    diffs = [settings_diff(r.get("settings") or {}, todays_settings(r)) for r in results]
    first = next((d for d in diffs if d), {})
    mixed = sorted({k for d in diffs for k in set(d) | set(first)
                    if d.get(k, (None,))[0] != first.get(k, (None,))[0]})
    return first, mixed


def _defaults_note(results: list[dict]) -> tuple[str, list[str]]:
    """(the ``--set`` part of a section's command, the lines that say why) for results that
    ran with settings other than today's defaults; ('', []) for results of today's."""
    from pam_tf.experiments import format_settings

    diff, mixed = off_defaults(results)
    if not diff and not mixed:
        return "", []
    text = ("Run with settings that differ from today's defaults: " + ", ".join(
        f"{k}={v[0]} (today {v[1]})" for k, v in diff.items())
        + " (earlier defaults, or --set without --variant); the command sets them.")
    if mixed:
        text += (" Its files differ among themselves in " + ", ".join(mixed)
                 + "; the command sets the first file's values.")
    return (f" --set={format_settings({k: v[0] for k, v in diff.items()})}" if diff else "",
            ["", text])


#: Settings B1 does not read: how networks merge (B1 merges none), B2's zipping, and the
#: per-task fine-tuning scale (B1's nets serve one task each, so 'task' and 'network' agree).
NOT_B1 = frozenset({"finetune_scale", "mode", "alpha", "alpha_conv", "alpha_dense",
                    "alpha_relative", "sigma2", "sigma2_scale", "reduce", "per_task_budget",
                    "prune_only_shared", "mtz_samples", "mtz_retrain_steps", "mtz_merge",
                    "mtz_damping", "mtz_lr", "mtz_batch_size"})


def closest_b1(pam_runs: list[dict], b1_variants: dict[str, list[dict]]) -> str | None:
    """The B1 variant to set a PAM variant against: its own where it ran B1, else the one whose
    settings differ least from it (B1 alone merges nothing, so a PAM-only variant borrows the
    B1 that ran with the rest of its settings: fine-tuning data, budget); ties go to the
    defaults."""
    from pam_tf.experiments import NOT_MEASURED, settings_diff

    name = pam_runs[0].get("variant", "")
    if name in b1_variants:
        return name
    if not b1_variants:
        return None
    mine = full_settings(pam_runs[0])
    return min(b1_variants, key=lambda v: (
        len(settings_diff(full_settings(b1_variants[v][0]), mine, NOT_MEASURED | NOT_B1)),
        v != "", v))


def targets_lines(results: list[dict]) -> list[str]:
    """The page's targets table (:mod:`pam_tf.targets`) on the results of its criterion: B1 set
    against each PAM variant as in the ablation rows (:func:`closest_b1`), B2 only where the
    variant ran B2 itself (B2 reads most settings PAM does, so no other variant stands in)."""
    from pam_tf.targets import CRITERION, targets_section, with_specialised

    def of_criterion(label: str) -> dict[str, dict[str, list[dict]]]:
        return {exp: v for (exp, c), v in by_variant(results, label).items() if c == CRITERION}
    bases = {b: of_criterion(b) for b in ("b1", "b2")}

    def base_of(baseline: str, exp: str, name: str, runs: list[dict]) -> str | None:
        mine = bases[baseline].get(exp, {})
        if baseline == "b1":
            return closest_b1(runs, mine)
        return name if name in mine else None
    pam, spec = of_criterion(PRIMARY), of_criterion(SPECIALISED)
    specialised = {exp: with_specialised(v[""], spec[exp][""]) for exp, v in pam.items()
                   if "" in v and "" in spec.get(exp, {})}
    return targets_section(pam, bases, base_of, specialised)


def ablation_section(key: tuple[str, str], variants: dict[str, list[dict]],
                     b1_variants: dict[str, list[dict]]) -> list[str]:
    """One row per variant of PAM: its settings that differ from today's defaults, FLOPs and
    the B1/PAM ratio per combination (B1 of the same seeds and variant when the variant ran B1
    too (e.g. distillation, applied to every method), else of the variant closest in settings,
    named in the row)."""
    from pam_tf.experiments import settings_diff

    exp, criterion = key
    combos = list(next(iter(variants.values()))[0]["combinations"])
    lines = ["", f"## Ablation: {exp} ({criterion})", "",
             "PAM under each variant (`python -m tools.reproduce --variant NAME --set ...`); "
             "settings: what the variant ran with that differs from today's defaults; B1/PAM "
             "uses B1 of the same seeds and of the variant in the \"B1 of\" column (the "
             "variant's own where it ran B1, else the one closest to it in settings). "
             "Cells: PAM MFLOPs (B1/PAM), means over seeds.", "",
             "| variant | settings | seeds | B1 of | " + " | ".join(combos) + " | within budget |",
             "|---|---|---|---|" + "---|" * (len(combos) + 1)]
    for name, runs in sorted(variants.items()):
        b1_name = closest_b1(runs, b1_variants)
        b1 = {r["seed"]: r for r in b1_variants.get(b1_name, [])} if b1_name is not None else {}
        diff = ", ".join(f"{k}={v[0]}" for k, v in settings_diff(
            runs[0]["settings"], todays_settings(runs[0]),
            frozenset({"models", "seed", "distribute"})).items())
        cells = []
        for c in combos:
            flops = np.mean([r["combinations"][c]["flops"] for r in runs]) / 1e6
            rat = [b1[r["seed"]]["combinations"][c]["flops"] / r["combinations"][c]["flops"]
                   for r in runs if r["seed"] in b1]
            cells.append(f"{flops:.4f} ({np.mean(rat):.2f}×)" if rat else f"{flops:.4f}")
        ok = sum(all((r.get("within_budget") or {}).values()) for r in runs)
        b1_label = "–" if b1_name is None else (b1_name or "default")
        lines.append(f"| {name or 'default'} | {diff or 'defaults'} | "
                     f"{','.join(str(r['seed']) for r in runs)} | {b1_label} | "
                     + " | ".join(cells) + f" | {ok}/{len(runs)} |")
    for name, (cpu, base) in other_cpus(variants).items():
        lines += ["", f"Variant `{name}` ran on {cpu}; the default row's files "
                  + (f"ran on {base}" if base else "do not record their CPU")
                  + ": the same code, seed and nets can end elsewhere on another CPU (a "
                  "decision at the budget's edge flips with the kernels' rounding; README, "
                  "\"What to expect\"), so compare its B1/PAM, not its MFLOPs, with the "
                  "other rows."]
    for name, seeds in other_nets(variants).items():
        lines += ["", f"Variant `{name}` ran on other trained single-task nets than the "
                  f"default row (model checksums differ for seed(s) "
                  f"{', '.join(map(str, seeds))}: the nets were retrained, e.g. on another "
                  "machine): its B1/PAM sets it against B1 on its own nets, but its MFLOPs "
                  "are not comparable with the other rows'."]
    return lines


def _cpu(result: dict) -> str | None:
    m = result.get("machine") or {}
    return f"{m['cpu']} ({', '.join(m.get('simd') or []) or 'no AVX'})" if m.get("cpu") else None


def other_cpus(variants: dict[str, list[dict]]) -> dict[str, tuple[str, str | None]]:
    """Variant → (the CPU its files record, the default row's CPU or None when they record
    none) for variants measured on another CPU than the default row (or on a recorded CPU
    where the default row's files predate the field)."""
    recorded = sorted({_cpu(r) for r in variants.get("", [])} - {None})
    base_cpu = " and ".join(recorded) or None
    out = {}
    for name, runs in sorted(variants.items()):
        mine = {_cpu(r) for r in runs} - {None}
        if name and len(mine) == 1 and next(iter(mine)) != base_cpu:
            out[name] = (next(iter(mine)), base_cpu)
    return out


def _checksums(result: dict) -> tuple[str, ...]:
    return tuple(m.get("sha256", "") for m in result.get("models") or [])


def other_nets(variants: dict[str, list[dict]]) -> dict[str, list[int]]:
    """Variant → the seeds at which its results ran on other model files than the default
    row's (compared by checksum; seeds either side lacks, or files without checksums, are
    not compared)."""
    base = {r["seed"]: _checksums(r) for r in variants.get("", [])}
    out = {}
    for name, runs in sorted(variants.items()):
        seeds = sorted(r["seed"] for r in runs if name and r["seed"] in base
                       and all(_checksums(r)) and all(base[r["seed"]])
                       and _checksums(r) != base[r["seed"]])
        if seeds:
            out[name] = seeds
    return out


# --- the relatedness sweep (fashion-related-k) ------------------------------------------------

RELATED = re.compile(r"^fashion-related-(\d+)$")
RELATED_COMBOS = ("a", "b", "a+b")


def related_k(experiment: str) -> int | None:
    """k of a `fashion-related-k` experiment, None for any other experiment."""
    m = RELATED.match(experiment)
    return int(m.group(1)) if m else None


def relatedness_sets(groups: dict[tuple[str, str], dict[str, list[dict]]]
                     ) -> dict[str, dict[int, dict[str, list[dict]]]]:
    """criterion → k → method label → results over seeds, for the sweep's experiments only
    (they are rendered together, as one curve, rather than as six sections)."""
    out: dict = defaultdict(dict)
    for (exp, criterion), by_method in groups.items():
        k = related_k(exp)
        if k is not None:
            out[criterion][k] = by_method
    return {c: dict(sorted(v.items())) for c, v in out.items()}


def shared_widths(layers: list[dict[str, int]], tasks: list[str]) -> list[int]:
    """Per layer, the neurons of the group owned by every task (0 where a layer has none)."""
    everyone = set(tasks)
    return [sum(w for key, w in layer.items() if set(key.split("+")) == everyone)
            for layer in layers]


def _total_widths(layers: list[dict[str, int]]) -> list[int]:
    return [sum(layer.values()) for layer in layers]


def relatedness_row(k: int, by_method: dict[str, list[dict]]) -> dict:
    """The numbers of one k: B1/PAM per combination over the seeds both methods ran, PAM's
    all-task ("shared") and total neurons per layer before and after pruning (per seed), budget
    counts. Kept apart from the formatting so tests can check the numbers themselves."""
    pam = by_method.get(PRIMARY, [])
    rat = ratios(by_method, "b1") if "b1" in by_method else {}
    tasks = pam[0]["tasks"] if pam else []
    return {
        "k": k,
        "ratio_seeds": sorted({r["seed"] for r in pam}
                              & {r["seed"] for r in by_method.get("b1", [])}),
        "ratio": {c: rat.get(c, []) for c in RELATED_COMBOS},
        "flops": {l: {c: [r["combinations"][c]["flops"] for r in runs
                          if c in r["combinations"]] for c in RELATED_COMBOS}
                  for l, runs in by_method.items()},
        "shared_before": [shared_widths(r["groups_merged"], tasks) for r in pam],
        "shared_after": [shared_widths(r["groups"], tasks) for r in pam],
        "total_before": [_total_widths(r["groups_merged"]) for r in pam],
        "total_after": [_total_widths(r["groups"]) for r in pam],
        "within_budget": {l: (sum(all((r.get("within_budget") or {}).values()) for r in runs),
                              len(runs)) for l, runs in by_method.items()},
    }


def _pm(values: list[float], spec: str = ".2f") -> str:
    """mean ± std (ddof 1) of `values`; the mean alone for a single value, '–' for none."""
    if not values:
        return "–"
    v = np.asarray(values, float)
    if len(v) == 1:
        return f"{v[0]:{spec}}"
    return f"{v.mean():{spec}} ± {v.std(ddof=1):{spec}}"


def _layer_means(per_seed: list[list[int]]) -> list[float]:
    return list(np.mean(per_seed, axis=0)) if per_seed else []


def _ratio_table(rows: list[dict]) -> list[str]:
    lines = ["| k | shared classes | seeds | B1/PAM a | B1/PAM b | B1/PAM a+b | PAM a+b MFLOPs "
             "| B1 a+b MFLOPs | within budget PAM / B1 |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        fl = row["flops"]
        ok = row["within_budget"]
        cells = [_pm(row["ratio"][c]) for c in RELATED_COMBOS]
        cells += [_pm([v / 1e6 for v in fl.get(l, {}).get("a+b", [])], ".4f")
                  for l in (PRIMARY, "b1")]
        budget = " / ".join(f"{ok[l][0]}/{ok[l][1]}" if l in ok else "–" for l in (PRIMARY, "b1"))
        seeds = ",".join(map(str, row["ratio_seeds"])) or "–"
        n = len(row["ratio_seeds"])
        lines.append(f"| {row['k']} | {5 - row['k']} of 5 | {seeds} (n={n}) | "
                     + " | ".join(cells) + f" | {budget} |")
    return lines


def _shared_table(rows: list[dict]) -> list[str]:
    n_layers = max((len(r["shared_after"][0]) for r in rows if r["shared_after"]), default=0)
    head = ["k", *[f"layer {i + 1}" for i in range(n_layers)], "all layers"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        if not row["shared_after"]:
            continue
        sb, sa = _layer_means(row["shared_before"]), _layer_means(row["shared_after"])
        tb, ta = _layer_means(row["total_before"]), _layer_means(row["total_after"])
        cells = [f"{b:.1f}/{tb_:.1f} → {a:.1f}/{ta_:.1f}"
                 for b, a, tb_, ta_ in zip(sb, sa, tb, ta)]
        cells.append(f"{sum(sb):.1f}/{sum(tb):.1f} → {sum(sa):.1f}/{sum(ta):.1f}")
        lines.append(f"| {row['k']} | " + " | ".join(cells) + " |")
    return lines


def _trend(ks: list[int], values: list[float]) -> float | None:
    """Least-squares slope of `values` against k (None with fewer than two points)."""
    if len(ks) < 2:
        return None
    return float(np.polyfit(np.asarray(ks, float), np.asarray(values, float), 1)[0])


def trend_verdict(ks: list[int], per_k: list[list[float]]
                  ) -> tuple[str, float, float | None]:
    """('falls' | 'rises' | 'flat' | 'unknown', fitted change over the k range, spread): the
    least-squares line through the per-k means is compared with the mean seed-to-seed std
    of one k, so that one lucky seed is not read as a trend ('unknown' without any k of two
    or more seeds)."""
    means = [float(np.mean(v)) for v in per_k]
    change = (_trend(ks, means) or 0.0) * (max(ks) - min(ks)) if ks else 0.0
    stds = [float(np.std(v, ddof=1)) for v in per_k if len(v) > 1]
    if not stds or len(ks) < 2:
        return "unknown", change, None
    spread = float(np.mean(stds))
    if abs(change) <= spread:
        return "flat", change, spread
    return ("falls" if change < 0 else "rises"), change, spread


def relatedness_findings(rows: list[dict]) -> list[str]:
    """Sentences read off the numbers: how the gain and the sharing move with k, and where that
    differs from what the paper's sweep (method.md §10) and fashion2 row lead one to expect."""
    rows = [r for r in rows if r["ratio"]["a+b"] and r["shared_after"]]
    if not rows:
        return []
    ks = [r["k"] for r in rows]
    both = [float(np.mean(r["ratio"]["a+b"])) for r in rows]
    single = [float(np.mean(r["ratio"]["a"] + r["ratio"]["b"])) for r in rows]
    frac = [float(np.mean([sum(s) / max(1, sum(t)) for s, t in
                           zip(r["shared_after"], r["total_after"])])) for r in rows]
    out = [f"Measured: B1/PAM for a+b goes from {both[0]:.2f}× at k = {ks[0]} to {both[-1]:.2f}× "
           f"at k = {ks[-1]} (least-squares slope {_trend(ks, both) or 0.0:+.3f} per k); for a "
           f"single task from {single[0]:.2f}× to {single[-1]:.2f}× (slope "
           f"{_trend(ks, single) or 0.0:+.3f}). After pruning, the all-task group holds "
           f"{100 * frac[0]:.0f} % of PAM's hidden neurons at k = {ks[0]} and {100 * frac[-1]:.0f} "
           f"% at k = {ks[-1]} (slope {100 * (_trend(ks, frac) or 0.0):+.1f} points per k)."]
    verdict, change, spread = trend_verdict(ks, [r["ratio"]["a+b"] for r in rows])
    shared_per_k = [[sum(s) / max(1, sum(t)) for s, t in zip(r["shared_after"], r["total_after"])]
                    for r in rows]
    s_verdict, s_change, s_spread = trend_verdict(ks, shared_per_k)
    said = {
        "falls": f"Here the a+b gain falls over the sweep by more than the seed-to-seed spread (fitted change "
                 f"{change:+.2f}, spread {spread or 0:.2f}), as predicted.",
        "rises": f"Here the a+b gain **rises** over the sweep by more than the seed-to-seed spread (fitted change "
                 f"{change:+.2f}, spread {spread or 0:.2f}), **unlike** that prediction.",
        "flat": f"Here the a+b gain changes over the sweep by less than the seed-to-seed spread (fitted change "
                f"{change:+.2f}, spread {spread or 0:.2f}): **no** trend against relatedness "
                f"is shown, unlike that prediction.",
        "unknown": "Whether the a+b gain falls here cannot be told from seed-to-seed "
                   "variation yet (one seed per k)."}
    out.append("method.md §10 records the paper's own sweep (LFW, VGG-16) but not its numbers, "
               "so this is set against what its conditions (§3) predict: information useful to "
               "both tasks lives once, in the shared group, so the less related the tasks, the "
               "less there is to share and the smaller PAM's gain over B1 on the combination. "
               + said[verdict]
               + (f" The sharing itself does follow relatedness: the all-task group's share of "
                  f"PAM's neurons after pruning falls by {-100 * s_change:.0f} points over the "
                  f"sweep (spread {100 * (s_spread or 0):.0f} points)."
                  if s_verdict == "falls" else ""))
    whole = [i + 1 for i in range(len(rows[0]["shared_after"][0]))
             if all(s[i] == t_[i] for r in rows for s, t_ in zip(r["shared_after"],
                                                                 r["total_after"]))]
    if whole and s_verdict == "falls" and verdict != "falls":
        out.append(f"Where the sharing changes matters: after pruning, layer(s) "
                   f"{', '.join(map(str, whole))} are wholly in the all-task group at every k and "
                   f"seed, so the neurons that become exclusive as the tasks drift apart are in "
                   f"the later layers, whose neurons are the cheapest (a conv neuron is computed "
                   f"at every position of its output map, method.md §9). A reading of these "
                   f"counts, not a per-layer FLOPs measurement: PAM's saving over B1 comes from "
                   f"computing those early layers once, whatever k is.")
    lows = [(r["k"], f) for r, s, f in zip(rows, single, frac) if s < 1.0]
    if lows:
        paper = PAPER_FASHION2_RATIO
        text = (f"Single tasks cost more with PAM than with B1 (ratio below 1) at k = "
                f"{', '.join(str(k) for k, _ in lows)}, unlike the paper's fashion2 row (A "
                f"{paper['a']:.2f}×, B {paper['b']:.2f}×, method.md §10)")
        if min(f for _, f in lows) >= 0.5:
            text += (": there the pruned PAM net is mostly its all-task group (table above), so "
                     "running one task computes the other's features as well, while the paper's "
                     "pruned nets keep exclusive neurons in every layer (method.md §7).")
        out.append(text if text.endswith(".") else text + ".")
    return out


def _relatedness_plots(plots: str, criterion: str, rows: list[dict]) -> list[str]:
    """Two line plots (B1/PAM against k; all-task neurons per layer against k); their file
    names, [] when there is nothing to plot."""
    from pam_tf.report import _plt, _save

    rows = [r for r in rows if r["shared_after"]]
    if not rows:
        return []
    plt = _plt()
    ks = [r["k"] for r in rows]
    names = []
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for c in RELATED_COMBOS:
        pts = [(r["k"], np.mean(r["ratio"][c]),
                np.std(r["ratio"][c], ddof=1) if len(r["ratio"][c]) > 1 else 0.0)
               for r in rows if r["ratio"][c]]
        if pts:
            x, y, e = zip(*pts)
            ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=c)
    ax.axhline(1.0, color="k", linestyle="--", linewidth=1, label="equal cost")
    ax.set_xlabel("k (task b's classes swapped for unrelated ones)")
    ax.set_ylabel("B1 / PAM FLOPs (>1: PAM cheaper)")
    ax.set_title(f"relatedness sweep ({criterion})")
    ax.set_xticks(ks)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    name = f"relatedness_ratio_{criterion}.png"
    _save(fig, os.path.join(plots, name))
    names.append(name)
    n_layers = len(rows[0]["shared_after"][0])
    # one panel per layer, each on its own linear scale (c1 has a few neurons, f3 a hundred)
    fig, axes = plt.subplots(1, n_layers, figsize=(2.6 * n_layers, 3.2), squeeze=False)
    for i, ax in enumerate(axes[0]):
        ax.plot(ks, [_layer_means(r["shared_before"])[i] for r in rows], marker="x",
                linestyle=":", label="before pruning")
        ax.plot(ks, [_layer_means(r["shared_after"])[i] for r in rows], marker="o",
                label="after pruning")
        ax.set_title(f"layer {i + 1}", fontsize=9)
        ax.set_xticks(ks)
        ax.set_xlabel("k")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("neurons in the all-task group")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"shared neurons against k, mean over seeds ({criterion})", fontsize=10,
                 y=1.03)
    name = f"relatedness_shared_{criterion}.png"
    _save(fig, os.path.join(plots, name))
    names.append(name)
    return names


def like_sweep(results: list[dict], criterion: str,
               by_k: dict[int, dict[str, list[dict]]]) -> dict[str, list[dict]] | None:
    """fashion2's results (method label → runs) of the variant that ran with the sweep's
    settings (the suite and what chooses methods aside), so that the k = 5 line compares like
    with like; None when no fashion2 variant did."""
    from pam_tf.experiments import NOT_MEASURED, settings_diff

    sweep = next(iter(next(iter(by_k.values())).values()))[0].get("settings") or {}
    table: dict = defaultdict(lambda: defaultdict(list))
    for r in results:
        if r["experiment"] == "fashion2" and r["criterion"] == criterion:
            table[r.get("variant", "")][r["label"]].append(r)
    for name in sorted(table, key=lambda n: (n != "", n)):
        first = table[name].get(PRIMARY, [None])[0]
        if first and not settings_diff(first.get("settings") or {}, sweep,
                                       NOT_MEASURED | {"suite"}):
            return table[name]
    return None


def _fashion2_line(rows: list[dict], fashion2: dict[str, list[dict]] | None) -> list[str]:
    """k = 5 has fashion2's two tasks: set its a+b ratio beside fashion2's, whose nets differ
    (shipped at seed 0), as a measure of how much the nets alone move the ratio."""
    last = next((r for r in rows if r["k"] == 5 and r["ratio"]["a+b"]), None)
    ref = ratios(fashion2, "b1").get("a+b") if fashion2 and "b1" in fashion2 else None
    if not last or not ref:
        return []
    variant = fashion2["b1"][0].get("variant", "")
    where = f"fashion2's variant `{variant}` (the same settings)" if variant else \
        "the fashion2 section"
    return [f"k = 5 has fashion2's tasks: B1/PAM for a+b is {_pm(last['ratio']['a+b'])} here "
            f"(n = {len(last['ratio']['a+b'])}) and {_pm(ref)} in {where} "
            f"(n = {len(ref)}, other nets)."]


def relatedness_section(criterion: str, by_k: dict[int, dict[str, list[dict]]],
                        plots: str, fashion2: dict[str, list[dict]] | None = None) -> list[str]:
    """The sweep's section: one row per k instead of one section per experiment (its point is
    the trend against k); `fashion2`: that experiment's results of the same criterion."""
    rows = [relatedness_row(k, by_method) for k, by_method in sorted(by_k.items())]
    seeds = sorted({r["seed"] for bm in by_k.values() for runs in bm.values() for r in runs})
    exps = ",".join(f"fashion-related-{k}" for k in sorted(by_k))
    first = next(iter(next(iter(by_k.values())).values()))[0]
    budget = first.get("budget_points")
    set_arg, why = _defaults_note([r for bm in by_k.values() for runs in bm.values()
                                   for r in runs])
    lines = ["", f"## Relatedness sweep: fashion-related-k ({criterion})", "",
             f"LeNet-5 on Fashion-MNIST; task a = classes 0-4, task b = task a with its last k "
             f"classes swapped for classes 5 .. 4+k (k = 5 is fashion2's pair, with nets trained "
             f"here rather than the shipped ones). Each k trains its own pair of single-task nets "
             f"per seed, each task's net from its own seed (task a's from the same seed at every "
             f"k, so across the sweep only task b changes). Seeds present: "
             f"{', '.join(map(str, seeds))}; k present: "
             f"{', '.join(map(str, sorted(by_k)))}.", "",
             f"Command: `python -m tools.reproduce --experiments={exps} --criteria={criterion} "
             f"--seeds={','.join(map(str, seeds))}{set_arg}`", *why, "",
             "B1/PAM FLOPs per combination, mean ± std over the seeds both methods ran (> 1: PAM "
             f"is cheaper); MFLOPs mean ± std; seeds whose all-task accuracy is within the "
             f"budget ({budget} point(s), test half).", ""]
    lines += _ratio_table(rows)
    lines += ["", "PAM's neurons in the all-task (shared) group per layer, over all its hidden "
              "neurons in that layer, before pruning (after regrouping) → after pruning, mean "
              "over seeds (LeNet-5's layers 1-4 are c1, c2, f3, f4):", ""]
    lines += _shared_table(rows)
    for name, alt in zip(_relatedness_plots(plots, criterion, rows),
                         ("B1/PAM against k", "shared neurons against k")):
        lines += ["", f"![{alt}](results_plots/{name})"]
    for text in relatedness_findings(rows) + _fashion2_line(rows, fashion2):
        lines += ["", text]  # one paragraph each
    return lines


# --- PAM's paper mode (two group kinds) against subsets mode -----------------------------------

def mode_variants(variants: dict[str, list[dict]]
                  ) -> tuple[list[dict], str, list[dict], str] | None:
    """(subsets-mode runs, paper-mode variant name, its runs, the subsets variant's name) when
    an experiment has both: a variant in subsets mode (the defaults first) and one that
    differs from it in the mode only (settings that measure nothing aside, as the grid's)."""
    from pam_tf.experiments import NOT_MEASURED, settings_diff

    def mode_only(runs: list[dict], base: list[dict]) -> bool:
        return not settings_diff(full_settings(runs[0]), full_settings(base[0]),
                                 NOT_MEASURED | {"mode"})

    bases = sorted((n for n, runs in variants.items()
                    if runs[0]["settings"].get("mode") == "subsets"), key=lambda n: (n != "", n))
    for base in bases:
        for name, runs in sorted(variants.items()):
            if name != base and runs[0]["settings"].get("mode") == "paper" and \
                    mode_only(runs, variants[base]):
                return variants[base], name, runs, base
    return None


def mode_comparison(subsets: list[dict], paper: list[dict], b1: list[dict]) -> list[dict]:
    """Per combination kind (number of tasks): over the combinations of that kind and the seeds
    both modes ran, PAM MFLOPs of each mode, paper/subsets FLOPs and B1/PAM for each mode
    (B1 does not depend on the mode). One dict per kind, for the table and for tests."""
    sub = {r["seed"]: r for r in subsets}
    pap = {r["seed"]: r for r in paper}
    base = {r["seed"]: r for r in b1}
    seeds = sorted(set(sub) & set(pap))
    if not seeds:
        return []
    combos = list(sub[seeds[0]]["combinations"])
    out = []
    for size in sorted({len(c.split("+")) for c in combos}):
        kind = [c for c in combos if len(c.split("+")) == size]
        row: dict = {"tasks": size, "combinations": len(kind), "seeds": seeds,
                     "subsets_mflops": [], "paper_mflops": [], "paper_over_subsets": [],
                     "b1_over_subsets": [], "b1_over_paper": []}
        for s in seeds:
            for c in kind:
                fs = sub[s]["combinations"][c]["flops"]
                fp = pap[s]["combinations"][c]["flops"]
                row["subsets_mflops"].append(fs / 1e6)
                row["paper_mflops"].append(fp / 1e6)
                row["paper_over_subsets"].append(fp / fs)
                if s in base:
                    fb = base[s]["combinations"][c]["flops"]
                    row["b1_over_subsets"].append(fb / fs)
                    row["b1_over_paper"].append(fb / fp)
        out.append(row)
    return out


def mode_section(key: tuple[str, str], subsets: list[dict], name: str, paper: list[dict],
                 b1: list[dict], base: str = "") -> list[str]:
    """PAM in the paper's mode (exclusive + one all-task group) against subsets mode (a group
    per task subset), per combination kind."""
    exp, criterion = key
    rows = mode_comparison(subsets, paper, b1)
    if not rows:
        return []
    seeds = rows[0]["seeds"]
    from pam_tf.experiments import format_settings, settings_diff

    runs_with = {k: v[0] for k, v in settings_diff(
        paper[0]["settings"], todays_settings(paper[0]),
        frozenset({"models", "seed", "distribute"})).items()}
    who = f"`{exp}`" if not base else f"Variant `{base}` of `{exp}`"
    lines = ["", f"## PAM paper mode against subsets mode: {exp} ({criterion})", "",
             f"{who} runs PAM in subsets mode (a group for any set of tasks); variant `{name}` "
             "runs it in the paper's mode (exclusive groups and one all-task group, method.md "
             "§2), "
             "all else equal. B1 is the same for both (it does not merge). Seeds "
             f"{', '.join(map(str, seeds))}; per row, means over the combinations of that kind "
             "and the seeds (± std over those values).", "",
             f"Command: `python -m tools.reproduce --experiments={exp} --criteria={criterion} "
             f"--seeds={','.join(map(str, seeds))} --variant={name} "
             f"--set={format_settings(runs_with)}`", "",
             "| tasks per combination | combinations | PAM subsets MFLOPs | PAM paper MFLOPs | "
             "paper / subsets FLOPs | B1/PAM subsets | B1/PAM paper |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['tasks']} | {r['combinations']} | {_pm(r['subsets_mflops'], '.4f')} "
                     f"| {_pm(r['paper_mflops'], '.4f')} | {_pm(r['paper_over_subsets'])} | "
                     f"{_pm(r['b1_over_subsets'])} | {_pm(r['b1_over_paper'])} |")
    ok = {m: (sum(all((r.get("within_budget") or {}).values()) for r in runs), len(runs))
          for m, runs in (("subsets", [r for r in subsets if r["seed"] in seeds]),
                          ("paper", [r for r in paper if r["seed"] in seeds]))}
    lines += ["", f"Seeds within the budget (all-task accuracy, test half): subsets "
              f"{ok['subsets'][0]}/{ok['subsets'][1]}, paper {ok['paper'][0]}/{ok['paper'][1]}.",
              "", "PAM's hidden neurons by group kind, summed over layers, before pruning → "
              "after "
              "pruning (mean over seeds):", "",
              "| mode | all-task group | groups of 2..n-1 tasks | exclusive groups |",
              "|---|---|---|---|"]
    kinds, layers = {}, {}
    for mode, runs in (("subsets", subsets), ("paper", paper)):
        runs = [r for r in runs if r["seed"] in seeds]
        layers[mode] = _layer_means([_total_widths(r["groups"]) for r in runs])
        before = np.mean([group_kinds(r["groups_merged"], r["tasks"]) for r in runs], axis=0)
        after = np.mean([group_kinds(r["groups"], r["tasks"]) for r in runs], axis=0)
        kinds[mode] = after
        lines.append(f"| {mode} | " + " | ".join(f"{b:.1f} → {a:.1f}"
                                                for b, a in zip(before, after)) + " |")
    for text in mode_findings(rows, kinds, layers) + _mode_best(subsets, paper, b1, seeds):
        lines += ["", text]
    return lines


def group_kinds(layers: list[dict[str, int]], tasks: list[str]) -> tuple[int, int, int]:
    """Neurons, summed over layers, in (the all-task group, groups of some but not all tasks
    (subsets mode only), exclusive groups)."""
    n = len(tasks)
    counts = [0, 0, 0]
    for layer in layers:
        for key, width in layer.items():
            owners = len(key.split("+"))
            counts[0 if owners == n else 2 if owners == 1 else 1] += width
    return counts[0], counts[1], counts[2]


def _mode_best(subsets: list[dict], paper: list[dict], b1: list[dict],
               seeds: list[int]) -> list[str]:
    """Each mode's best combination (largest mean B1/PAM), beside the paper's 4.87× maximum,
    which the paper reached with its own two-group-kind PAM."""
    best = {}
    for mode, runs in (("subsets", subsets), ("paper", paper)):
        rat = ratios({PRIMARY: [r for r in runs if r["seed"] in seeds], "b1": b1}, "b1")
        if rat:
            means = {c: float(np.mean(v)) for c, v in rat.items()}
            top = max(means, key=means.get)
            best[mode] = f"{means[top]:.2f}× ({top})"
    if len(best) < 2:
        return []
    return [f"The paper's maximum, 4.87× less computation than B1 (method.md §10), is its own "
            f"paper-mode PAM's; here the best combination reaches {best['paper']} in paper mode "
            f"and {best['subsets']} in subsets mode (means over seeds)."]


def mode_findings(rows: list[dict], after: dict[str, Sequence[float]],
                  layers: dict[str, list[float]] | None = None) -> list[str]:
    """Which combination kinds each mode serves more cheaply, read off `rows`, and how that
    compares with what method.md §2 leads one to expect of the subsets mode (`after`: mode →
    neurons per group kind after pruning, as :func:`group_kinds`; `layers`: mode → mean
    neurons per layer after pruning)."""
    share = {m: float(k[0]) / max(1.0, float(sum(k))) for m, k in after.items()}
    neurons = {m: float(sum(k)) for m, k in after.items()}
    rel = {r["tasks"]: float(np.mean(r["paper_over_subsets"])) for r in rows}
    cheaper = [k for k, v in rel.items() if v < 1]
    dearer = [k for k, v in rel.items() if v > 1]
    full = rows[-1]
    if len(dearer) == len(rel):
        verdict = "Paper mode is dearer on every kind of combination."
    elif len(cheaper) == len(rel):
        verdict = "Paper mode is cheaper on every kind of combination."
    else:
        names = {k: ", ".join(map(str, v)) for k, v in (("c", cheaper), ("d", dearer))}
        verdict = (f"Paper mode is cheaper on combinations of {names['c'] or 'no'} task(s), "
                   f"dearer on {names['d'] or 'none'}.")
    text = ["Paper mode against subsets mode (mean paper / subsets FLOPs): "
            + "; ".join(f"{k} task(s) {v:.2f}×" for k, v in rel.items()) + ". " + verdict]
    text.append("The paper itself uses paper mode only (method.md §2); subsets mode is pam-tf's "
                "generalisation for n ≥ 3, meant to let a partial combination skip the groups of "
                "tasks it does not run. "
                + ("It pays off here on single tasks (paper mode dearer on them). "
                   if rows[0]["tasks"] in dearer else
                   "It does not pay off on single tasks here. ")
                + f"After pruning the all-task group holds {100 * share['subsets']:.0f} % "
                f"(subsets) and {100 * share['paper']:.0f} % (paper) of PAM's hidden neurons"
                + ("; with most neurons in it, a single task computes nearly the whole net in "
                   "either mode." if min(share.values()) >= 0.5 else ".")
                + " On the all-task combination B1/PAM is "
                f"{np.mean(full['b1_over_subsets']):.2f}× "
                f"in subsets mode and {np.mean(full['b1_over_paper']):.2f}× in paper mode.")
    n_rel = neurons["paper"] / max(1.0, neurons["subsets"])
    if rel[full["tasks"]] > 1.1 * n_rel and layers:
        more = [i + 1 for i, (s, p) in enumerate(zip(layers["subsets"], layers["paper"]))
                if p > s]
        text.append(
            f"Paper mode keeps about as many hidden neurons after pruning "
            f"({neurons['paper']:.0f} against {neurons['subsets']:.0f}, {n_rel:.2f}×), yet its "
            f"all-task combination costs {rel[full['tasks']]:.2f}× as much. Neurons per layer "
            "(mean over seeds), subsets: "
            + ", ".join(f"{v:.1f}" for v in layers["subsets"]) + "; paper: "
            + ", ".join(f"{v:.1f}" for v in layers["paper"]) + ". "
            + (f"Paper mode keeps more in layer(s) {', '.join(map(str, more))}; a conv neuron "
               "is computed at every position of its output map, so the early layers cost the "
               "most per neuron (method.md §9). " if more else "")
            + "Its groups are also connected more densely: each all-task neuron reads the whole "
            "previous all-task group, where a subset group reads only the groups whose owners "
            "include its own (§2). These results do not separate the two effects.")
    return text


def render(results_dir: str, doc: str) -> str:
    """Write `doc` (and its plots beside it) from the results in `results_dir`."""
    results = load_results(results_dir)
    plots = os.path.join(os.path.dirname(os.path.abspath(doc)), "results_plots")
    os.makedirs(plots, exist_ok=True)
    lines = ["# Results", "",
             "Rendered by `python -m tools.reproduce --render` from the results files in "
             f"`{os.path.relpath(results_dir, os.path.dirname(os.path.abspath(doc)))}/` "
             "(one per experiment, method, criterion and seed, written by "
             "`python -m tools.reproduce`); do not edit by hand.", "", PAPER]
    if not results:
        lines += ["", "No results yet."]
    else:
        lines += targets_lines(results)
    groups = _groups(results)
    for key, by_method in sorted(groups.items()):
        if related_k(key[0]) is None:  # the sweep's experiments: one section below
            lines += experiment_section(key, by_method, plots)
    for criterion, by_k in sorted(relatedness_sets(groups).items()):
        lines += relatedness_section(criterion, by_k, plots,
                                     like_sweep(results, criterion, by_k))
    b1 = _variant_rows(results, "b1")
    pam_variants = _variant_rows(results)
    for key, variants in sorted(pam_variants.items()):
        found = mode_variants(variants)
        if found:
            b1_of = closest_b1(found[0], b1.get(key, {}))
            lines += mode_section(key, found[0], found[1], found[2],
                                  b1.get(key, {}).get(b1_of, []) if b1_of is not None else [],
                                  base=found[3])
    for key, variants in sorted(pam_variants.items()):
        lines += ablation_section(key, variants, b1.get(key, {}))
    io.write_text(doc, "\n".join(lines) + "\n")
    return doc


def readme_table(results_dir: str, experiment: str = "fashion2",
                 criterion: str = "taylor") -> str:
    """The README's table: one experiment's FLOPs and ratios (the same numbers as the page)."""
    by_method = _groups(load_results(results_dir)).get((experiment, criterion))
    if not by_method:
        return ""
    labels = sorted((l for l in by_method if l != SPECIALISED), key=lambda l: (l != PRIMARY, l))
    return "\n".join(_flops_table(by_method, labels)) + "\n"


README_BEGIN = "<!-- results-table: fashion2 taylor; written by `python -m tools.reproduce --render` -->"
README_END = "<!-- /results-table -->"


def readme_block(readme_text: str) -> str:
    """The README's generated table (between the markers), '' when the markers are missing."""
    if README_BEGIN not in readme_text or README_END not in readme_text:
        return ""
    return readme_text.split(README_BEGIN, 1)[1].split(README_END, 1)[0].strip("\n") + "\n"


def update_readme(readme: str, results_dir: str) -> bool:
    """Rewrite the README's generated table from the results; False when it has no markers."""
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    if README_BEGIN not in text or README_END not in text:
        return False
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    table = readme_table(results_dir) or "(no fashion2 results yet)\n"
    io.write_text(readme, f"{head}{README_BEGIN}\n{table}{README_END}{tail}")
    return True
