"""PAM regrouping on real single-task networks: group sizes per layer and cost per combination.

    python benchmarks/pam_groups.py --suite fashion2                  # the shipped LeNet-5 pair
    python benchmarks/pam_groups.py --suite composite --mode subsets  # trains 4 nets (cached)
    python benchmarks/pam_groups.py --suite composite --mode subsets --sigma2_scale layer

For suites without shipped models, single-task LeNet-5 nets are trained once (seeded) and cached
under $PAM_TF_DATA_DIR/models/. Results go to benchmarks/results/pam_groups_<suite>_<mode>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import time

from pam_tf import io
from pam_tf.chain import trace_model
from pam_tf.data import load_suite
from pam_tf.data.sources import data_dir
from pam_tf.config import DataConfig, InfoConfig, MergeConfig
from pam_tf.merge import pam_plan
from pam_tf.methods import MergeInputs, get_method
from pam_tf.train import load_single_task_model, save_single_task_model, train_single_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def single_task_models(ds, epochs: int, seed: int):
    """The shipped example models when there are some, else trained once and cached."""
    shipped = os.path.join(ROOT, "examples", ds.suite)
    models = []
    for task in ds.tasks:
        path = os.path.join(shipped, f"lenet5_{task.name}.keras")
        if not os.path.exists(path):
            path = os.path.join(str(data_dir()), "models", ds.suite, f"lenet5_{task.name}.keras")
        if not os.path.exists(path):
            print(f"training lenet5 for {ds.suite}/{task.name} ({epochs} epochs) -> {path}")
            model, metrics = train_single_task(ds, task.name, "lenet5", epochs=epochs, seed=seed,
                                               verbose=0)
            save_single_task_model(model, path, dataset=ds, task_name=task.name, arch="lenet5",
                                   metrics=metrics, seed=seed, epochs=epochs, batch_size=128,
                                   lr=1e-3)
            print(f"  accuracy {metrics['accuracy']:.4f}")
        models.append(load_single_task_model(path))
    return models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="fashion2")
    merge, info = MergeConfig(), InfoConfig()  # the main job's defaults, from one place
    ap.add_argument("--mode", default=merge.mode, choices=["paper", "subsets"])
    ap.add_argument("--alpha", type=float, default=merge.alpha)
    ap.add_argument("--absolute", action="store_true", help="alpha in nats, not relative")
    ap.add_argument("--samples", type=int, default=DataConfig().info_samples)
    ap.add_argument("--sigma2", type=float, default=info.sigma2)
    ap.add_argument("--sigma2_scale", default=info.sigma2_scale, choices=["absolute", "layer"])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    ds = load_suite(args.suite)
    loaded = single_task_models(ds, args.epochs, args.seed)
    models = [m for m, _ in loaded]
    traced = [trace_model(m, name=f"lenet5_{t.name}") for m, t in zip(models, ds.tasks)]
    x, y = ds.info_batch(args.samples, seed=args.seed)
    merge = MergeConfig(mode=args.mode, alpha=args.alpha, alpha_relative=not args.absolute)
    info = InfoConfig(sigma2=args.sigma2, sigma2_scale=args.sigma2_scale)
    start = time.perf_counter()
    plan = pam_plan(models, traced, ds.tasks, x, y, merge, info)
    seconds = time.perf_counter() - start
    b1 = get_method("none").produce(MergeInputs(traced, ds.tasks))
    result = {
        "suite": ds.suite, "mode": args.mode, "alpha": args.alpha, "relative": not args.absolute,
        "samples": args.samples, "sigma2": args.sigma2, "sigma2_scale": args.sigma2_scale, "data_checksum": ds.checksum, "seconds": round(seconds, 2),
        "single_task_accuracy": {t.name: s.get("accuracy") for t, (_, s) in
                                 zip(ds.tasks, loaded)},
        "groups": {layer.name: {g.key.replace(".", "+"): g.width for g in groups}
                   for layer, groups in zip(plan.chain.hidden, plan.layers)},
        "flops": {"+".join(c): {"pam_unpruned": plan.cost(c).flops,
                                "original_nets": b1.cost(c).flops}
                  for c in plan.combinations()},
    }
    out = args.out or os.path.join(ROOT, "benchmarks", "results",
                                   f"pam_groups_{args.suite}_{args.mode}"
                                   + ("_sigma2_layer" if args.sigma2_scale == "layer" else "")
                                   + ".json")
    io.write_json(out, result)
    print(json.dumps(result["groups"], indent=1))
    for c, v in result["flops"].items():
        print(f"{c:>28}: PAM unpruned {v['pam_unpruned'] / 1e6:.3f} M, "
              f"original nets {v['original_nets'] / 1e6:.3f} M")
    print(f"wrote {out} ({seconds:.1f} s regrouping)")


if __name__ == "__main__":
    main()
