"""The main job under faults, as a user's process meets them: SIGKILL mid-pruning and mid-export
followed by a rerun, and two fresh processes with one seed, compared byte for byte (sha256 of the
final plan, weights and manifest) with an uninterrupted run.

Every run is `python -m tools.merge_and_export` in its own process on the synthetic suite with
tiny settings (PAM only, no benchmark: latency is the one thing that may differ). The four first
runs start together to share the two cores; the kills land on progress lines the job prints
after a checkpoint (pruning) or after the first exported file (export).
"""
import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.tiny_models import synthetic_model_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ["--suite=synthetic", "--train_samples=256", "--val_samples=128", "--finetune_steps=4",
         "--max_prune_steps=2", "--info_samples=64", "--criterion=magnitude", "--budget=60",
         "--nocompare", "--nobenchmark", "--seed=0"]
FINAL = ("plan.json", "weights.npz", "tflite/manifest.json")
MID_PRUNING = "  PAM: step   1: "  # printed after step 1's checkpoint; step 2 is running
MID_EXPORT = "  [1/3] "  # the first .tflite is written, two more and the manifest are not
TIMEOUT_S = 600


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return synthetic_model_files(tmp_path_factory.mktemp("models"))


def start(models, out):
    """The main job in a fresh process, its output line by line (unbuffered)."""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen([sys.executable, "-m", "tools.merge_and_export",
                             f"--models={','.join(models)}", f"--out={out}", *FLAGS],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)


def kill_at(proc, marker):
    """SIGKILL the job as soon as it prints a line starting with `marker`; its lines so far."""
    lines, deadline = [], time.monotonic() + TIMEOUT_S
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith(marker):
            os.kill(proc.pid, signal.SIGKILL)
            break
        assert time.monotonic() < deadline, "the job never reached " + repr(marker)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (marker, lines[-20:])
    proc.stdout.close()
    return lines


def finish(proc):
    """Wait for a job that must succeed; its lines."""
    out, _ = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, out[-3000:]
    return out.splitlines()


def digests(out):
    """sha256 of the final plan, weights and manifest, and of every exported file."""
    names = list(FINAL) + sorted(f"tflite/{n}" for n in os.listdir(os.path.join(out, "tflite")))
    return {n: hashlib.sha256(open(os.path.join(out, n), "rb").read()).hexdigest() for n in names}


@pytest.fixture(scope="module")
def runs(model_files, tmp_path_factory):
    base = tmp_path_factory.mktemp("faults")
    out = {k: str(base / k) for k in ("a", "b", "pruning", "export")}
    procs = {k: start(model_files, v) for k, v in out.items()}
    killed = {"pruning": kill_at(procs["pruning"], MID_PRUNING),
              "export": kill_at(procs["export"], MID_EXPORT)}
    after_kill = {k: {"final": [n for n in FINAL if os.path.exists(os.path.join(out[k], n))],
                      "files": sorted(os.listdir(out[k]))} for k in killed}
    done = {k: finish(procs[k]) for k in ("a", "b")}
    reruns = {k: start(model_files, out[k]) for k in killed}
    resumed = {k: finish(p) for k, p in reruns.items()}
    return {"out": out, "killed": killed, "after_kill": after_kill, "done": done,
            "resumed": resumed}


def test_two_fresh_processes_with_one_seed_give_identical_bytes(runs):
    a, b = digests(runs["out"]["a"]), digests(runs["out"]["b"])
    assert set(FINAL) <= set(a)
    assert a == b


def test_sigkill_mid_pruning_then_rerun_ends_byte_identical(runs):
    assert runs["after_kill"]["pruning"]["final"] == []  # killed before pruning finished
    resumed = runs["resumed"]["pruning"]
    assert any("resuming from" in line and "step 1 completed" in line for line in resumed)
    assert "[validate] already done in an earlier run: resuming after it" in resumed
    assert digests(runs["out"]["pruning"]) == digests(runs["out"]["a"])


def test_sigkill_mid_export_then_rerun_ends_byte_identical(runs):
    assert runs["after_kill"]["export"]["final"] == ["plan.json", "weights.npz"]  # no manifest yet
    resumed = runs["resumed"]["export"]
    assert "[pam/prune] already done in an earlier run: resuming after it" in resumed
    assert "[pam/export] ..." in resumed
    assert digests(runs["out"]["export"]) == digests(runs["out"]["a"])
    tflite = os.listdir(os.path.join(runs["out"]["export"], "tflite"))
    assert not [n for n in tflite if n.startswith(".")], tflite  # no half-written file left


def test_manifest_and_plan_name_each_other(runs):
    """The manifest's plan_sha256 is the plan's fingerprint: identical runs share it."""
    from pam_tf.export import load_manifest
    from pam_tf.export.manifest import plan_fingerprint
    from pam_tf.plan import Plan

    for key in ("a", "pruning", "export"):
        out = runs["out"][key]
        manifest = load_manifest(os.path.join(out, "tflite", "manifest.json"))
        assert manifest["plan_sha256"] == plan_fingerprint(Plan.load(os.path.join(out, "plan.json")))
