"""--distribute: the training loops under a tf.distribute strategy give the default strategy's
results, and the setting leaves run identity and resume keys alone.

The two-replica comparison runs in its own process (tests/distribute_two_cpus.py): logical CPU
devices must be configured before TensorFlow initialises its devices. Tolerance: every weight
within WEIGHT_TOLERANCE of the default strategy's after the same steps (measured: below 1e-7;
the difference is float rounding of a sum split over two replicas), and the same pruning and
zipping decisions (widths) and the same validation accuracy."""
import json
import os
import subprocess
import sys

import pytest

from pam_tf.config import DistributeConfig, RunConfig
from pam_tf.distribute import STRATEGIES, check_tf_config, make_strategy, worker_path
from pam_tf.runfolder import fingerprint, identity

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHT_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def two_replicas():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "distribute_two_cpus.py")],
                          cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, TF_USE_LEGACY_KERAS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_mirrored_runs_on_two_logical_cpus(two_replicas):
    assert two_replicas["replicas"] == 2


@pytest.mark.parametrize("what", ["finetune_weights", "distill_weights", "prune_weights",
                                  "mtz_weights", "single_task_weights"])
def test_two_replicas_train_the_default_strategys_weights(two_replicas, what):
    assert two_replicas[what] <= WEIGHT_TOLERANCE


def test_two_replicas_make_the_same_decisions(two_replicas):
    assert two_replicas["prune_same_widths"] and two_replicas["mtz_same_widths"]
    assert two_replicas["finetune_accuracy"] == 0.0


def test_the_strategy_is_in_neither_the_run_identity_nor_any_stage_key():
    default = RunConfig.from_flat(("a.keras", "b.keras"), "fashion2")
    mirrored = RunConfig.from_flat(("a.keras", "b.keras"), "fashion2", distribute="mirrored")
    assert "distribute" not in identity(default)
    assert fingerprint(default) == fingerprint(mirrored)
    assert default.flat()["distribute"] == "default"  # recorded in run.json and results


def test_an_unknown_strategy_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="--distribute='gpu' is not one of default, mirrored, "
                                         "multi_worker"):
        RunConfig.from_flat((), "fashion2", distribute="gpu")
    with pytest.raises(ValueError, match="--distribute='gpu' is not one of"):
        make_strategy("gpu")
    assert STRATEGIES == DistributeConfig.__dataclass_fields__["distribute"].metadata["choices"]


def test_default_is_no_strategy_at_all():
    assert make_strategy("default") is None


@pytest.mark.parametrize("raw, message", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"cluster": {}}', "TF_CONFIG must hold 'cluster' and 'task'"),
])
def test_a_bad_tf_config_is_named(monkeypatch, raw, message):
    monkeypatch.setenv("TF_CONFIG", raw)
    with pytest.raises(ValueError, match=message):
        check_tf_config()


def test_only_the_chief_writes_where_asked(monkeypatch):
    cluster = {"worker": ["h1:1", "h2:1"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                "task": {"type": "worker", "index": 0}}))
    assert worker_path("runs/x", "multi_worker") == "runs/x"
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                "task": {"type": "worker", "index": 1}}))
    assert worker_path("runs/x/", "multi_worker") == "runs/x.worker1"
    assert worker_path("m/lenet5_a.keras", "multi_worker") == "m/lenet5_a.worker1.keras"
    assert worker_path("runs/x", "mirrored") == "runs/x"
