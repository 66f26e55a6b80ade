"""Multi-Task Zipping (He, Zhou, Thiele, NeurIPS 2018) as pam-tf's baseline B2 (method.md §8).

Layer by layer from the input, for each task q after the first (in task order), the neurons of
q's network are zipped into the trunk (the neurons owned by exactly the tasks zipped so far):

1. the layer's input, computed by the network as zipped and retrained so far, gives the
   Hessian H = E[x̃ x̃ᵀ] of each side (:func:`pam_tf.mtz.linalg.layer_hessian`);
2. every trunk × q pair gets its cost ΔE, and the cheapest k = round(degree · width) pairs are
   matched one to one, greedily by ascending cost;
3. a matched pair becomes one neuron with weights (H_A + H_B)⁻¹ (H_A w_A + H_B w_B), owned by
   the trunk's tasks and q; the next layer (or the heads) reads it wherever it read either
   parent (the permutation of its inputs);
4. owners are re-derived (:meth:`ZipState.legalize`), then the whole network is retrained
   jointly for a few steps before the next layer is zipped.

Tasks are zipped in one at a time because the method is defined for two networks: task q meets
a trunk that already serves tasks 0..q-1. Doing it per layer (all tasks zipped at layer l, then
one retraining, then layer l+1) keeps the Hessians of every task's zip at layer l on the same,
already zipped, layer below. The order is the task order of the run (the order of --models), a
documented and reproducible choice: the paper names none.

In pam-tf every task sees the same images, so once the layer below is shared both sides of a
pair read the same input and H_A = H_B; the formulas are kept general (and tested so), which
then reduce to a cost ¼ δᵀ H δ and the mean of the two weight vectors.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from pam_tf.artifacts import Network
from pam_tf.build import inherit_weights
from pam_tf.chain import TracedModel, check_same_chain
from pam_tf.config import MtzConfig
from pam_tf.mtz.linalg import damp, greedy_match, layer_hessian, merged_weights, pair_costs
from pam_tf.mtz.state import ZipState, _positions
from pam_tf.plan import Plan, no_merge_plan
from pam_tf.tasks import Task

__all__ = ["zip_networks", "zip_layer", "degrees_per_layer", "METHOD"]

METHOD = "mtz"


def degrees_per_layer(config: MtzConfig, plan_layers: Sequence) -> list[float]:
    """--mtz_merge as one fraction per hidden layer (one value applies to every layer)."""
    degrees = config.merge_degrees()
    names = [layer.name for layer in plan_layers]
    if len(degrees) == 1:
        return list(degrees) * len(names)
    if len(degrees) != len(names):
        raise ValueError(f"--mtz_merge has {len(degrees)} values, the networks have "
                         f"{len(names)} hidden layers ({', '.join(names)}): give one value for "
                         "every layer or one per hidden layer")
    return list(degrees)


def _input_rows(state: ZipState, l: int, inputs: np.ndarray) -> np.ndarray:
    """Rows of layer l's full Hessian (positions × input neurons, then the bias) for input
    neurons `inputs`, position-major like the kernels and patches."""
    layer = state.chain.hidden[l]
    n_in = state.kernels[l].shape[1]
    rows = (np.arange(_positions(layer))[:, None] * n_in + inputs[None, :]).ravel()
    return np.concatenate([rows, [_positions(layer) * n_in]])


def _vectors(state: ZipState, l: int, inputs: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Weight vectors (len(cols), positions·len(inputs) + 1) of neurons `cols`: bias last."""
    k = state.kernels[l][:, inputs][:, :, cols].astype(np.float64)   # (p, |U|, w)
    flat = k.transpose(2, 0, 1).reshape(len(cols), -1)
    return np.concatenate([flat, state.biases[l][cols, None].astype(np.float64)], axis=1)


def zip_layer(state: ZipState, l: int, trunk: Sequence[int], q: int, k: int, h_a: np.ndarray,
              h_b: np.ndarray, damping: float,
              progress: Callable[[str], None] = print) -> dict:
    """Zip k neurons of task q's layer l into the trunk (neurons owned by exactly the tasks
    `trunk`), in place; returns what was done (pairs, costs, damping). `h_a`, `h_b`: the full
    Hessians of layer l's input (all its neurons, bias last) on the trunk's and on q's side."""
    layer = state.chain.hidden[l]
    n = len(state.tasks)
    want_trunk = np.zeros(n, bool)
    want_trunk[list(trunk)] = True
    want_q = np.zeros(n, bool)
    want_q[q] = True
    own = state.owners[l]
    a_cols = np.flatnonzero(np.all(own == want_trunk, axis=1))
    b_cols = np.flatnonzero(np.all(own == want_q, axis=1))
    into = "+".join(state.tasks[t] for t in trunk)
    if len(a_cols) == 0 or len(b_cols) == 0:
        raise ValueError(f"layer '{layer.name}': nothing to zip: {len(a_cols)} neurons owned by "
                         f"exactly {{{into}}} and {len(b_cols)} by '{state.tasks[q]}' (expected "
                         "both sides unzipped before this layer's zip)")
    k = min(k, len(a_cols), len(b_cols))
    record = {"layer": layer.name, "into": into, "task": state.tasks[q], "pairs": int(k)}
    if k == 0:
        return record
    in_own = state.input_owners(l)
    inputs = np.flatnonzero(np.all(in_own[:, want_trunk], axis=1) | in_own[:, q])
    rows = _input_rows(state, l, inputs)
    trunk_side, q_side = f"{layer.name} (trunk {into})", f"{layer.name} ({state.tasks[q]})"
    if h_a is h_b:  # one layer input for both sides (every task sees the same images)
        h, amount = _damped(h_a, rows, damping, f"{layer.name} ({into} and {state.tasks[q]})",
                            progress)
        hs, amounts = [h, h], [amount, amount]
    else:
        (ha, amount_a), (hb, amount_b) = (_damped(h_a, rows, damping, trunk_side, progress),
                                          _damped(h_b, rows, damping, q_side, progress))
        hs, amounts = [ha, hb], [amount_a, amount_b]
    damped = {side: amount for side, amount in zip(("trunk", state.tasks[q]), amounts)
              if amount > 0}
    a = _vectors(state, l, inputs, a_cols)
    b = _vectors(state, l, inputs, b_cols)
    costs = pair_costs(hs[0], hs[1], a, b)
    ri, cj = greedy_match(costs, k)
    merged = merged_weights(hs[0], hs[1], a[ri], b[cj])
    keep, away = a_cols[ri], b_cols[cj]
    matched = [[list(state.ids[l][i]), list(state.ids[l][j])] for i, j in zip(keep, away)]
    kern = state.kernels[l]
    kern[:, :, keep] = 0.0
    kern[:, inputs[:, None], keep[None, :]] = merged[:, :-1].reshape(
        k, -1, len(inputs)).transpose(1, 2, 0).astype(np.float32)
    state.biases[l][keep] = merged[:, -1].astype(np.float32)
    state.owners[l][keep] = want_trunk | want_q
    state.reroute(l, keep, away)
    state.remove(l, away)
    chosen = costs[ri, cj]
    record.update(cost_total=float(chosen.sum()), cost_median=float(np.median(chosen)),
                  cost_max=float(chosen.max()), damped=damped, matched=matched)
    return record


def _damped(h: np.ndarray, rows: np.ndarray, damping: float, where: str,
            progress: Callable[[str], None]) -> tuple[np.ndarray, float]:
    """The Hessian restricted to `rows`, damped if near-singular (and the progress says so)."""
    out, info = damp(h[np.ix_(rows, rows)], damping)
    if info.amount > 0:
        progress(f"    {where}: {info.describe()}")
    return out, info.amount


def _sample(n: int, count: int, seed: int) -> np.ndarray:
    """A seeded subset of range(n) (sorted), the images whose layer inputs give the Hessians."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(count, n), replace=False))


def _reference_accuracy(models: Sequence | None, tasks: Sequence[Task], xs: np.ndarray,
                        ys: dict[str, np.ndarray]) -> dict[str, float] | None:
    """Each single-task model's accuracy on the Hessian images (None without models): what the
    progress output puts next to the zipped network's accuracy after each layer."""
    if models is None:
        return None
    return {t.name: float(t.accuracy(ys[t.name], m.predict(xs, verbose=0, batch_size=512)))
            for m, t in zip(models, tasks)}


def zip_inputs(n_networks: int, tasks: Sequence[Task], train: tuple, config: MtzConfig,
               models: Sequence | None, seed: int) -> tuple:
    """What zipping n networks needs from its inputs, checked (chains and graphs alike): the
    task names, the training half (x, ys), its seeded Hessian images (xs, ys_s) and the
    single-task models' accuracy on them (None without models)."""
    from pam_tf.prune.finetune import check_data

    names = [t.name for t in tasks]
    if n_networks != len(tasks):
        raise ValueError(f"MTZ: {n_networks} networks for {len(tasks)} tasks")
    if len(tasks) < 2:
        raise ValueError("MTZ zips at least two networks; got one")
    x, ys = check_data(train, tasks, "MTZ training data")
    pick = _sample(len(x), config.mtz_samples, seed)
    xs, ys_s = x[pick], {t: y[pick] for t, y in ys.items()}
    return names, x, ys, xs, ys_s, _reference_accuracy(models, tasks, xs, ys_s)


def zip_networks(traced: Sequence[TracedModel], tasks: Sequence[Task], train: tuple,
                 config: MtzConfig = MtzConfig(), *, models: Sequence | None = None,
                 seed: int = 0, progress: Callable[[str], None] = print) -> Network:
    """MTZ's merged network of the n traced nets: plan (shared and exclusive groups) + weights.

    `train` is (x, {task: y}), the training half: its seeded `config.mtz_samples` images give
    the Hessians (and the accuracy shown after each layer, next to each single-task model's
    accuracy on the same images when `models` are given); the retraining uses all of it.
    """
    from pam_tf.prune.finetune import evaluate, finetune

    chain = check_same_chain(traced)
    degrees = degrees_per_layer(config, chain.hidden)
    names, x, ys, xs, ys_s, reference = zip_inputs(len(traced), tasks, train, config, models,
                                                   seed)
    plan = no_merge_plan(chain, names, [t.n_outputs for t in tasks],
                         [tr.chain.head.activation for tr in traced])
    weights = inherit_weights(plan, traced)
    state = ZipState.from_plan(plan, weights)
    layers_meta = []
    progress(f"MTZ: zipping {len(tasks)} networks layer by layer (tasks in order "
             f"{', '.join(names)}; degrees {', '.join(f'{d:g}' for d in degrees)}; Hessians "
             f"from {len(xs)} images; {config.mtz_retrain_steps} retraining steps per layer)")
    for l, layer in enumerate(chain.hidden):
        k = int(round(degrees[l] * layer.width))
        if k == 0:
            progress(f"  {layer.name}: degree {degrees[l]:g}, nothing zipped")
            continue
        h = layer_hessian(state.layer_input(l, xs), layer.kind, kernel_size=layer.kernel_size,
                          strides=layer.strides, padding=layer.padding)
        records = []
        for q in range(1, len(tasks)):
            # same images for every task: both sides of the pair read the same layer input
            records.append(zip_layer(state, l, range(q), q, k, h, h, config.mtz_damping,
                                     progress))
            state.legalize()
        plan = state.to_plan(METHOD)
        _check_complete(plan, layer.name)
        weights = state.weights_for(plan)
        steps = config.mtz_retrain_steps
        if steps:
            weights = finetune(plan, weights, tasks, (x, ys), steps=steps,
                               batch_size=config.mtz_batch_size, lr=config.mtz_lr,
                               seed=seed * 1000 + l)
        state = ZipState.from_plan(plan, weights)
        accuracy = evaluate(plan, weights, tasks, (xs, ys_s))
        layers_meta.append({"layer": layer.name, "zips": records, "retrain_steps": steps,
                            "accuracy": accuracy, "widths": plan.widths()[l]})
        costs = "; ".join(f"{r['task']} into {r['into']}: {r['pairs']} pairs, "
                          f"ΔE total {r.get('cost_total', 0):.4g}" for r in records)
        acc = ", ".join(f"{t} {accuracy[t]:.4f}" + (f" (single-task {reference[t]:.4f})"
                                                    if reference else "") for t in names)
        progress(f"  {layer.name}: {costs}; width {plan.widths()[l]}; after {steps} retraining "
                 f"steps accuracy on the Hessian images: {acc}")
    plan = state.to_plan(METHOD, meta={"mtz": {
        "degrees": degrees, "samples": int(len(xs)), "order": names, "layers": layers_meta,
        "reference_accuracy_samples": reference}})
    _check_complete(plan, "the end")
    return Network(plan, state.weights_for(plan))


def _check_complete(plan: Plan, where: str) -> None:
    """Zipping never leaves a group unread or reading nothing; say so loudly if it did."""
    lost = plan.meta.get("dropped_unreadable", 0) + plan.meta.get("dropped_unread", 0)
    if lost:
        raise RuntimeError(f"MTZ after {where}: {lost} neurons the plan had to drop (a bug: "
                           "every zipped network should be a valid plan as it stands)")
