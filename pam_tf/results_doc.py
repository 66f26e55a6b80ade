"""docs/results.md, rendered from the experiments' results JSON files (never typed by hand).

Per experiment and criterion: per task combination, each method's FLOPs as mean ± std over
seeds, the ratio of every baseline to PAM per combination (mean over seeds, with its minimum and
maximum), each task's test accuracy against its budget, host latency; a plot of the ratios.
The README's result table is the fashion2 part of the same rendering (:func:`readme_table`),
checked by a test against the committed results.
"""
from __future__ import annotations

import glob
import json
import os
from collections import defaultdict
from typing import Iterable

import numpy as np

from pam_tf import io

PRIMARY = "pam"
# method.md §10, LeNet-5 / Fashion-MNIST, P-Taylor: B1 / PAM MFLOPs per combination
PAPER_FASHION2_RATIO = {"a": 28.34 / 28.49, "b": 28.34 / 26.16, "a+b": 56.69 / 48.68}

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
    base = [l for l in labels if l != PRIMARY]
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


def _paper_comparison(exp: str, by_method: dict[str, list[dict]]) -> list[str]:
    """Where the measured B1/PAM ratios differ from the paper's (fashion2 only: its setting)."""
    if exp != "fashion2" or "b1" not in by_method:
        return []
    rat = ratios(by_method, "b1")
    rows = [f"{c}: measured {np.mean(rat[c]):.2f}×, paper {p:.2f}×"
            for c, p in PAPER_FASHION2_RATIO.items() if rat.get(c)]
    worse = [c for c, p in PAPER_FASHION2_RATIO.items() if rat.get(c) and np.mean(rat[c]) < p]
    text = ["", "Against the paper (B1/PAM): " + "; ".join(rows) + "."]
    if worse:
        text.append(f"Below the paper on {', '.join(worse)}: after pruning, pam-tf's PAM network "
                    "is nearly one shared trunk (see the groups below), so a single task pays "
                    "for features the other task needed, while the paper's pruned nets keep "
                    "exclusive neurons in every layer (method.md §7); pam-tf's B1 is also "
                    "stronger than the paper's (FLOPs-aware ranking keeps about 13 % of a "
                    "net's FLOPs, the paper's 17-27 %).")
    return text


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

    base = [l for l in by_method if l != PRIMARY]
    rat = {b: ratios(by_method, b) for b in base}
    combos = list(next(iter(by_method.values()))[0]["combinations"])
    if not any(rat.values()):
        return False
    plot_bars(path, combos, {f"{b.upper()}/PAM": [float(np.mean(rat[b][c])) if rat[b].get(c)
                                                  else None for c in combos] for b in base},
              ylabel="FLOPs ratio (>1: PAM cheaper)", title=title,
              reference={c: 1.0 for c in combos}, reference_label="equal cost")
    return True


def experiment_section(key: tuple[str, str], by_method: dict[str, list[dict]],
                       plots: str) -> list[str]:
    """The page's section of one (experiment, criterion)."""
    exp, criterion = key
    labels = sorted(by_method, key=lambda l: (l != PRIMARY, l))
    first = by_method[labels[0]][0]
    seeds = sorted({r["seed"] for runs in by_method.values() for r in runs})
    lines = ["", f"## {exp} ({criterion})", "",
             f"Suite `{first['suite']}`, {first['arch']}, tasks {', '.join(first['tasks'])}; "
             f"seeds {', '.join(map(str, seeds))}; code at "
             f"`{(first.get('git_commit') or 'unknown')[:10]}`.", "",
             f"Command: `python -m tools.reproduce --experiments={exp} --criteria={criterion} "
             f"--seeds={','.join(map(str, seeds))}`", "",
             "FLOPs in the paper's convention (method.md §9), mean ± std over seeds; ratios are "
             "the mean over seeds of baseline FLOPs / PAM FLOPs (> 1: PAM is cheaper).", ""]
    lines += _flops_table(by_method, labels)
    name = f"ratio_{exp}_{criterion}.png"
    if _ratio_plot(os.path.join(plots, name), by_method, f"{exp} ({criterion})"):
        lines += ["", f"![ratio per combination](results_plots/{name})"]
    lines += _paper_comparison(exp, by_method)
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


def _variant_rows(results: list[dict], label: str = PRIMARY
                  ) -> dict[tuple[str, str], dict[str, list[dict]]]:
    """(experiment, criterion) → variant ("" = defaults) → one method's results over seeds."""
    table: dict = defaultdict(lambda: defaultdict(list))
    for r in results:
        if r["label"] == label:
            table[(r["experiment"], r["criterion"])][r.get("variant", "")].append(r)
    return {k: v for k, v in table.items() if len(v) > 1 or label != PRIMARY}


def _config_defaults() -> dict:
    """Every main-job setting at its default (a results file written before a setting existed
    ran with its default)."""
    from pam_tf.config import RunConfig

    return RunConfig.from_flat((), "").flat()


def ablation_section(key: tuple[str, str], variants: dict[str, list[dict]],
                     b1_variants: dict[str, list[dict]]) -> list[str]:
    """One row per variant of PAM: its settings that differ from the defaults, FLOPs and the
    B1/PAM ratio per combination (B1 of the same seeds and variant when the variant ran B1 too
    (e.g. distillation, applied to every method), else with the default settings)."""
    exp, criterion = key
    default = variants.get("", [])
    combos = list(next(iter(variants.values()))[0]["combinations"])
    lines = ["", f"## Ablation: {exp} ({criterion})", "",
             "PAM under each variant (`python -m tools.reproduce --variant NAME --set ...`); "
             "B1/PAM uses B1 of the same seeds (and of the same variant where it ran B1 too). "
             "Cells: PAM MFLOPs (B1/PAM), means over seeds.", "",
             "| variant | settings | seeds | " + " | ".join(combos) + " | within budget |",
             "|---|---|---|" + "---|" * (len(combos) + 1)]
    for name, runs in sorted(variants.items()):
        b1 = {r["seed"]: r for r in b1_variants.get(name) or b1_variants.get("", [])}
        ref = {**_config_defaults(), **(default[0]["settings"] if default else {})}
        diff = ", ".join(f"{k}={v}" for k, v in runs[0]["settings"].items()
                         if k != "seed" and ref.get(k) != v) if name else "defaults"
        cells = []
        for c in combos:
            flops = np.mean([r["combinations"][c]["flops"] for r in runs]) / 1e6
            rat = [b1[r["seed"]]["combinations"][c]["flops"] / r["combinations"][c]["flops"]
                   for r in runs if r["seed"] in b1]
            cells.append(f"{flops:.4f} ({np.mean(rat):.2f}×)" if rat else f"{flops:.4f}")
        ok = sum(all((r.get("within_budget") or {}).values()) for r in runs)
        lines.append(f"| {name or 'default'} | {diff or '–'} | "
                     f"{','.join(str(r['seed']) for r in runs)} | " + " | ".join(cells)
                     + f" | {ok}/{len(runs)} |")
    return lines


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
    groups = _groups(results)
    for key, by_method in sorted(groups.items()):
        lines += experiment_section(key, by_method, plots)
    b1 = _variant_rows(results, "b1")
    for key, variants in sorted(_variant_rows(results).items()):
        lines += ablation_section(key, variants, b1.get(key, {}))
    io.write_text(doc, "\n".join(lines) + "\n")
    return doc


def readme_table(results_dir: str, experiment: str = "fashion2",
                 criterion: str = "taylor") -> str:
    """The README's table: one experiment's FLOPs and ratios (the same numbers as the page)."""
    by_method = _groups(load_results(results_dir)).get((experiment, criterion))
    if not by_method:
        return ""
    labels = sorted(by_method, key=lambda l: (l != PRIMARY, l))
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
