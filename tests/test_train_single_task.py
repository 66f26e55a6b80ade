"""Training CLI and library: a 1-epoch synthetic run writes a loadable model and its sidecar;
flags are validated."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from absl import flags

from pam_tf.data import load_suite
from pam_tf.train import load_single_task_model, train_single_task
from tools import train_single_task as tool


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "lenet5_t0.keras"
    sidecar = tool.run("synthetic", "t0", arch="lenet5", out=str(out), epochs=1, seed=0,
                       verbose=0, command="python -m tools.train_single_task --suite synthetic")
    return out, sidecar


def test_run_writes_a_loadable_model_that_predicts_like_the_sidecar_says(trained):
    out, sidecar = trained
    model, side = load_single_task_model(out)
    assert side == sidecar and model.name == "lenet5_t0"
    ds = load_suite("synthetic")
    pred = model.predict(ds.x_test, verbose=0)
    assert ds.task("t0").accuracy(ds.y_test["t0"], pred) == pytest.approx(side["accuracy"],
                                                                            abs=1e-6)


def test_sidecar_records_what_the_model_is(trained):
    out, _ = trained
    side = json.loads(out.with_suffix(".json").read_text())
    assert {k: side[k] for k in ("suite", "task", "architecture", "input_shape", "seed",
                                 "epochs", "batch_size")} == {
        "suite": "synthetic", "task": "t0", "architecture": "lenet5", "input_shape": [16, 16, 1],
        "seed": 0, "epochs": 1, "batch_size": 128}
    assert side["data_checksum"] == load_suite("synthetic").checksum
    assert side["tensorflow_version"] and side["tf_keras_version"]
    assert side["command"] == "python -m tools.train_single_task --suite synthetic"
    assert not list(out.parent.glob(".*"))  # no temporary files left behind


def test_training_is_reproducible_with_the_same_seed():
    ds = load_suite("synthetic", limit_train=128, limit_test=64)
    m1, _ = train_single_task(ds, "t1", "lenet5", epochs=1, seed=5, verbose=0)
    m2, _ = train_single_task(ds, "t1", "lenet5", epochs=1, seed=5, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(m1.get_weights(), m2.get_weights()))


def test_unknown_task_names_the_suites_tasks(tmp_path):
    with pytest.raises(ValueError, match=r"suite 'synthetic' has no task 'x'; its tasks are "
                                         r"\['t0', 't1'\]"):
        tool.run("synthetic", "x", out=str(tmp_path / "m.keras"), epochs=1, verbose=0)


def _parse(argv):
    fv = flags.FlagValues()
    tool.define_flags(fv)
    fv(["train_single_task", *argv])
    return fv


def test_flags_parse_with_defaults():
    fv = _parse(["--suite=fashion2", "--task=a"])
    assert (fv.arch, fv.epochs, fv.batch_size, fv.seed, fv.lr, fv.out) == (
        "lenet5", 5, 128, 0, 1e-3, None)
    assert tool.default_out("fashion2", "a", "lenet5") == "runs/fashion2/lenet5_a.keras"


@pytest.mark.parametrize("argv", [
    ["--task=a"],                                       # --suite is required
    ["--suite=cifar", "--task=a"],                      # not a suite
    ["--suite=fashion2", "--task=a", "--arch=resnet"],  # not an architecture
    ["--suite=fashion2", "--task=a", "--epochs=0"],
    ["--suite=fashion2", "--task=a", "--lr=0"],
    ["--suite=fashion2", "--task=a", "--out=model.h5"],
])
def test_bad_flags_are_refused(argv):
    with pytest.raises(flags.Error):
        _parse(argv)


def test_command_line_names_the_module():
    assert tool.command_line(["/x/tools/train_single_task.py", "--suite", "fashion2",
                              "--task", "a b"]) == (
        "python -m tools.train_single_task --suite fashion2 --task 'a b'")


def test_help_exits_0_and_lists_the_flags():
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "tools.train_single_task", "--help"], cwd=root,
                          env=dict(os.environ, TF_USE_LEGACY_KERAS="1", PAM_TF_OFFLINE="1"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for flag in ("--suite", "--task", "--arch", "--out", "--epochs", "--seed"):
        assert flag in proc.stdout


def test_saving_the_same_weights_twice_gives_the_same_bytes(trained, tmp_path):
    """The run identity hashes model files: a net retrained to the same weights must not look
    like another net because Keras stamped the save time into the archive."""
    import hashlib
    import time

    from pam_tf.train import save_keras_deterministic

    model, _ = load_single_task_model(trained[0])
    first, second = tmp_path / "first.keras", tmp_path / "second.keras"
    save_keras_deterministic(model, first)
    time.sleep(2.1)  # past the zip timestamps' 2 s resolution
    save_keras_deterministic(model, second)
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (first, second)]
    assert digest[0] == digest[1]
    from pam_tf.compat import keras

    again = keras.models.load_model(second)
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
