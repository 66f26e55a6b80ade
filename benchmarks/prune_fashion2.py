"""Acceptance benchmark of structured pruning on the fashion2 LeNet-5 pair (method.md §7-§10).

For each pruning criterion (Taylor, VIB, magnitude) and a plan producer:

- ``none`` (B1, method.md §8): each single-task net is pruned **alone** (a one-task plan per net)
  inside the accuracy budget; cost(A&B) = cost(pruned A) + cost(pruned B);
- ``pam`` / ``shared``: the merged plan of both nets is pruned once on the joint loss; every
  combination's cost is read from the pruned plan.

Budget: every task within ``--budget`` points of its reference, the unpruned single-task net's
accuracy on the same validation images. Validation = the first ``--n-val`` held-out (test-split)
images, which no net was trained on; the remaining held-out images are the reported test set.
Fine-tuning uses the first ``--n-train`` training images (a short run, not the paper's schedule).
FLOPs follow the paper's convention (method.md §9) at the 28×28 input; MACs and weight
parameters are reported too.

Rows are merged into ``--out`` by (producer, criterion, variant = ranking [+flops_aware]
[+backtracksN]): running ``--producer pam`` later adds the PAM rows next to the B1 rows, and rows
of other producers, criteria or variants are kept. ``--backtracks N`` (default 2) lets a pruning
step that leaves the budget be retried up to N times with half the removal (see
:func:`pam_tf.prune.prune`); ``--backtracks 0`` is the plain budget rule, whose rows keep the
variant name they had before backtracking existed. Per-run checkpoints go to
``--checkpoint-root`` (default ``runs/prune_fashion2``, git-ignored) so an interrupted benchmark
resumes where it stopped.

    .venv/bin/python benchmarks/prune_fashion2.py --producer none
    .venv/bin/python benchmarks/prune_fashion2.py --producer pam --criteria taylor
    .venv/bin/python benchmarks/prune_fashion2.py --producer pam --criteria taylor --flops-aware \
        --backtracks 0
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from pam_tf.compat import tf  # (sets up Keras 2 before anything else)
from pam_tf import io
from pam_tf.build import inherit_weights
from pam_tf.chain import check_same_chain, trace_model
from pam_tf.cost import Cost
from pam_tf.data import load_suite
from pam_tf.plan import Plan, no_merge_plan, shared_plan
from pam_tf.config import PruneSettings
from pam_tf.prune import evaluate, make_importance, prune
from pam_tf.train import load_single_task_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PRODUCERS = ("none", "pam", "shared")
CRITERIA = ("taylor", "vib", "magnitude")


def _subset(x, ys, lo, hi):
    return x[lo:hi], {k: v[lo:hi] for k, v in ys.items()}


def _cost(c: Cost) -> dict:
    return {"flops": c.flops, "flops_M": round(c.flops / 1e6, 4), "macs": c.macs,
            "params": c.params}


def _single_plan(traced, task) -> Plan:
    return no_merge_plan(traced.chain, [task.name], [task.n_outputs],
                         [traced.chain.head.activation])


def _merged_plan(producer: str, models, traced, tasks, ds, args) -> Plan:
    chain = check_same_chain(traced)
    names = [t.name for t in tasks]
    units = [t.n_outputs for t in tasks]
    acts = [tr.chain.head.activation for tr in traced]
    if producer == "shared":
        return shared_plan(chain, names, units, acts)
    try:
        from pam_tf.merge import pam_plan
    except ImportError:
        raise SystemExit("producer 'pam' needs pam_tf.merge.pam_plan, which is not available "
                         "yet") from None
    x_info, y_info = ds.info_batch(args.info_samples, seed=args.seed)
    return pam_plan(models, traced, tasks, x_info, y_info, progress=print)


def _prune_args(args, criterion: str, checkpoint_dir: str | None) -> dict:
    """This benchmark's own settings (it predates the main job's defaults; the experiments of
    the main job itself use pam_tf.config's defaults)."""
    kwargs = {"steps": args.vib_steps} if criterion == "vib" else {}
    settings = PruneSettings(budget=args.budget, finetune_steps=args.finetune_steps,
                             initial_finetune_steps=args.finetune_steps,
                             final_finetune_steps=args.final_finetune_steps,
                             batch_size=args.batch_size, lr=args.lr,
                             max_prune_steps=args.max_steps, flops_aware=args.flops_aware,
                             ranking=args.ranking, backtracks=args.backtracks,
                             empty_groups=False)
    return dict(settings=settings, importance=make_importance(criterion, **kwargs),
                seed=args.seed, checkpoint_dir=checkpoint_dir)


def _run_info(res) -> dict:
    """What a PruneResult says about how pruning went (attempts, retries, why it stopped)."""
    retries = [e for e in res.history if e.get("retry", 0) > 0]
    return {"reason": res.reason, "step": res.step, "widths": res.plan.widths(),
            "message": res.message, "attempts": len(res.history) - 1,
            "retries": len(retries),
            "successful_retries": sum(1 for e in retries if e["within_budget"])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--producer", choices=PRODUCERS, default="none")
    p.add_argument("--criteria", default=",".join(CRITERIA))
    p.add_argument("--models", default=os.path.join(ROOT, "examples", "fashion2"))
    p.add_argument("--n-train", type=int, default=10_000)
    p.add_argument("--n-val", type=int, default=5_000)
    p.add_argument("--budget", type=float, default=1.0)
    p.add_argument("--finetune-steps", type=int, default=150)
    p.add_argument("--final-finetune-steps", type=int, default=0)
    p.add_argument("--vib-steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-steps", type=int, default=20)
    p.add_argument("--ranking", choices=("global", "per_layer"), default="global")
    p.add_argument("--flops-aware", action="store_true")
    p.add_argument("--backtracks", type=int, default=2,
                   help="retries (each with half the removal) of a step that leaves the budget; "
                        "0: stop at the first such step (default: %(default)s)")
    p.add_argument("--info-samples", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-root", default=os.path.join(ROOT, "runs", "prune_fashion2"))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results",
                                                 "prune_fashion2.json"))
    args = p.parse_args(argv)
    if args.backtracks < 0:
        p.error("--backtracks must be >= 0")
    criteria = [c.strip() for c in args.criteria.split(",") if c.strip()]
    for c in criteria:
        if c not in CRITERIA:
            p.error(f"unknown criterion {c!r}; choose from {', '.join(CRITERIA)}")

    ds = load_suite("fashion2")
    tasks = ds.tasks
    models, traced = [], []
    for t in tasks:
        m, _ = load_single_task_model(os.path.join(args.models, f"lenet5_{t.name}.keras"),
                                      compile=False)
        models.append(m)
        traced.append(trace_model(m, name=f"lenet5_{t.name}"))
    train = _subset(ds.x_train, ds.y_train, 0, args.n_train)
    val = _subset(ds.x_test, ds.y_test, 0, args.n_val)
    test = _subset(ds.x_test, ds.y_test, args.n_val, len(ds.x_test))

    # references: each unpruned single-task net, through the same build/evaluate code path
    singles = {t.name: (_single_plan(tr, t), inherit_weights(_single_plan(tr, t), [tr]))
               for t, tr in zip(tasks, traced)}
    reference = {"val": {}, "test": {}}
    for t in tasks:
        sp, sw = singles[t.name]
        reference["val"][t.name] = evaluate(sp, sw, [t], val)[t.name]
        reference["test"][t.name] = evaluate(sp, sw, [t], test)[t.name]
    unpruned = {t.name: _cost(singles[t.name][0].cost([t.name])) for t in tasks}
    print("references (val / test): " + ", ".join(
        f"{t} {100 * reference['val'][t]:.2f} / {100 * reference['test'][t]:.2f}%"
        for t in reference["val"]))

    variant = (args.ranking + ("+flops_aware" if args.flops_aware else "")
               + (f"+backtracks{args.backtracks}" if args.backtracks else ""))
    rows = []
    for criterion in criteria:
        start = time.perf_counter()
        tag = f"{args.producer}/{criterion}/{variant}"
        if args.producer == "none":
            results = {}
            for t in tasks:
                sp, sw = singles[t.name]
                print(f"--- {tag}: pruning {t.name} alone")
                ck = os.path.join(args.checkpoint_root, args.producer, variant, criterion,
                                  t.name)
                results[t.name] = prune(sp, sw, [t], train, val,
                                        reference_accuracy={t.name: reference["val"][t.name]},
                                        **_prune_args(args, criterion, ck))
            cost = {t.name: results[t.name].plan.cost([t.name]) for t in tasks}
            acc_val = {t.name: results[t.name].accuracy[t.name] for t in tasks}
            acc_test = {t.name: evaluate(results[t.name].plan, results[t.name].weights, [t],
                                         test)[t.name] for t in tasks}
            info = {t.name: _run_info(results[t.name]) for t in tasks}
            combos = {"A": ["a"], "B": ["b"], "A&B": ["a", "b"]}
            combo_cost = {k: sum((cost[t] for t in v), Cost()) for k, v in combos.items()}
        else:
            plan = _merged_plan(args.producer, models, traced, tasks, ds, args)
            weights = inherit_weights(plan, traced)
            print(f"--- {tag}: pruning the merged plan (widths {plan.widths()})")
            ck = os.path.join(args.checkpoint_root, args.producer, variant, criterion)
            res = prune(plan, weights, tasks, train, val, reference_accuracy=reference["val"],
                        **_prune_args(args, criterion, ck))
            acc_val = dict(res.accuracy)
            acc_test = evaluate(res.plan, res.weights, tasks, test)
            info = {"merged": {**_run_info(res),
                               "groups": [[(g.key, g.width) for g in groups]
                                          for groups in res.plan.layers]}}
            combos = {"A": ["a"], "B": ["b"], "A&B": ["a", "b"]}
            combo_cost = {k: res.plan.cost(v) for k, v in combos.items()}
        seconds = round(time.perf_counter() - start, 1)
        for label, combo in combos.items():
            rows.append({
                "producer": args.producer, "criterion": criterion, "variant": variant,
                "backtracks": args.backtracks, "tasks": label,
                **_cost(combo_cost[label]),
                "accuracy_val": {t: round(acc_val[t], 5) for t in combo},
                "accuracy_test": {t: round(acc_test[t], 5) for t in combo},
                "mean_accuracy_test": round(sum(acc_test[t] for t in combo) / len(combo), 5),
                "within_budget_val": all(acc_val[t] >= reference["val"][t] - args.budget / 100
                                         for t in combo),
            })
        print(f"=== {tag} ({seconds} s): " + "; ".join(
            f"{r['tasks']} {r['flops_M']:.4f} MFLOPs, test acc {100 * r['mean_accuracy_test']:.2f}%"
            for r in rows if r["criterion"] == criterion))
        for r in rows:
            if r["criterion"] == criterion:
                r["seconds"] = seconds
                r["runs"] = info

    out = {}
    if os.path.exists(args.out):
        import json
        with open(args.out, encoding="utf-8") as f:
            out = json.load(f)
    def key(r):
        return r["producer"], r["criterion"], r.get("variant", "global")
    done = {key(r) for r in rows}
    kept = [r for r in out.get("rows", []) if key(r) not in done]
    out.update({
        "suite": "fashion2", "architecture": "lenet5", "input_shape": list(ds.input_shape),
        "flops_convention": "paper (method.md §9): conv (2·kh·kw·Cin−1)·Hout·Wout·Cout, dense "
                            "(2·nin−1)·nout; heads of the executed tasks counted",
        "data_checksum": ds.checksum,
        "reference_accuracy": reference,
        "unpruned_cost": {**unpruned, "A&B (B1)": _cost(sum(
            (singles[t.name][0].cost([t.name]) for t in tasks), Cost()))},
        "rows": kept + rows,
    })
    out.setdefault("settings", {})[f"{args.producer}/{variant}"] = {
        "n_train": args.n_train, "n_val": args.n_val, "n_test": len(test[0]),
        "budget_points": args.budget, "finetune_steps": args.finetune_steps,
        "final_finetune_steps": args.final_finetune_steps, "vib_steps": args.vib_steps,
        "batch_size": args.batch_size, "lr": args.lr, "max_steps": args.max_steps,
        "ranking": args.ranking, "flops_aware": args.flops_aware, "seed": args.seed,
        "backtracks": args.backtracks,
        "schedule": "default: tfmot PolynomialDecay 0.10 -> 0.95 of the starting neurons, "
                    "steps 1..20, power 3",
        "command": "python benchmarks/prune_fashion2.py " + " ".join(argv or sys.argv[1:]),
        "tensorflow": tf.__version__, "machine": platform.machine(),
    }
    io.write_json(args.out, out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
