"""Helpers (no tests) shared by the export tests: tiny plans, weights, tasks and labels."""
from __future__ import annotations

import numpy as np

from pam_tf.build import inherit_weights
from pam_tf.chain import check_same_chain, trace_model
from pam_tf.plan import no_merge_plan, plan_from_owners, shared_plan
from pam_tf.tasks import Task
from tests.test_plan import pam_like
from tests.tiny_models import images, tiny_cnn

N_TEST = 96


def traced_nets(n: int, widths=(4, 6, 10, 8), units: int = 3):
    return [trace_model(tiny_cnn(seed, units=units, widths=widths)) for seed in range(1, n + 1)]


def jitter(weights: dict, seed: int = 0, scale: float = 0.3) -> dict:
    """Inherited weights are zero across networks; jitter them so every edge matters."""
    rng = np.random.default_rng(seed)
    return {k: (v + rng.normal(0, scale, v.shape)).astype(np.float32) for k, v in weights.items()}


def pam2(widths=(4, 6, 10, 8), scale: float = 0.3):
    """2-task pam-like plan (shared convs, exclusive dense neurons) and its weights."""
    traced = traced_nets(2, widths)
    plan = pam_like(check_same_chain(traced))
    return plan, jitter(inherit_weights(plan, traced), scale=scale)


def _owners(width: int, spec) -> list[frozenset]:
    """spec: (model, first neuron, count, owner set); everything else is dropped."""
    own = [frozenset()] * (3 * width)
    for m, start, count, owners in spec:
        for i in range(start, start + count):
            own[m * width + i] = frozenset(owners)
    return own


def pam3():
    """3-task plan with all-task, pair ({a,b}, {b,c}) and exclusive groups."""
    traced = traced_nets(3)
    chain = check_same_chain(traced)
    owners = []
    for layer in chain.hidden:
        d = layer.width
        spec = [(0, 0, d // 2, {0, 1, 2}), (1, 0, 1, {0, 1}), (2, 0, 1, {1, 2})]
        if layer.name != "conv1":
            spec += [(0, d - 1, 1, {0}), (1, d - 1, 1, {1}), (2, d - 1, 1, {2})]
        owners.append(_owners(d, spec))
    plan = plan_from_owners(chain, ["a", "b", "c"], [3, 3, 3], ["sigmoid"] * 3, owners)
    return plan, jitter(inherit_weights(plan, traced))


def none2():
    traced = traced_nets(2)
    plan = no_merge_plan(check_same_chain(traced), ["a", "b"], [3, 3], ["sigmoid"] * 2)
    return plan, inherit_weights(plan, traced)


def shared2():
    traced = traced_nets(2)
    plan = shared_plan(check_same_chain(traced), ["a", "b"], [3, 3], ["sigmoid"] * 2)
    return plan, inherit_weights(plan, traced)


def tasks_of(plan) -> list[Task]:
    return [Task(t, "binary", 3, ("x", "y", "z")) for t in plan.tasks]


def held_out(plan, n: int = N_TEST, seed: int = 7):
    x = images(n, plan.chain.input_shape, seed=seed)
    rng = np.random.default_rng(seed)
    y = {t: (rng.random((n, 3)) < 0.5).astype(np.float32) for t in plan.tasks}
    return x, y




def tree(folder) -> dict[str, bytes]:
    """Every file under `folder` (relative path → bytes), hidden ones included."""
    import os
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = fh.read()
    return out
