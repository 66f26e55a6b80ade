"""Train, evaluate, save and load single-task networks (the inputs of merging).

    ds = load_suite("fashion2")
    model, metrics = train_single_task(ds, "a", "lenet5", epochs=5)
    save_single_task_model(model, "lenet5_a.keras", dataset=ds, task_name="a", arch="lenet5",
                           metrics=metrics, seed=0, epochs=5, batch_size=128, lr=1e-3)
    model, sidecar = load_single_task_model("lenet5_a.keras")

A saved model is a tf_keras ``.keras`` file holding architecture and weights, saved
uncompiled (no optimizer state: LeNet-5 files are ~0.2 MB instead of ~0.6 MB, and loading
prints no optimizer warnings; :func:`load_single_task_model` compiles it again) plus a JSON
sidecar ``<file>.json`` saying what it is: suite, task, architecture, input shape, test accuracy,
seed, epochs, data checksum, TensorFlow / tf_keras versions and the command that made it.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
import zipfile
from pathlib import Path

import numpy as np

from pam_tf.compat import keras, set_seed, tf
from pam_tf.io import atomic_path, write_text
from pam_tf.data.dataset import TaskDataset
from pam_tf.distribute import make_strategy
from pam_tf.tasks import Task
from pam_tf.zoo import build_model

__all__ = ["train_single_task", "evaluate_task", "save_single_task_model",
           "load_single_task_model", "sidecar_path", "read_sidecar", "compile_for_task",
           "task_from_sidecar"]

SIDECAR_FORMAT = 1


def compile_for_task(model: keras.Model, task: Task, lr: float = 1e-3) -> keras.Model:
    """Compile ``model`` with Adam(lr), the task's loss and its accuracy metric."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss=task.keras_loss(),
                  metrics=[task.keras_metric()])
    return model


def evaluate_task(model: keras.Model, x: np.ndarray, y: np.ndarray, task: Task,
                  batch_size: int = 1024) -> dict:
    """Test metrics of a single-output model: accuracy, per-label accuracy, loss."""
    pred = model.predict(x, batch_size=batch_size, verbose=0)
    loss = float(task.keras_loss()(task.check_labels(y), pred).numpy())
    return {"accuracy": task.accuracy(y, pred),
            "per_label_accuracy": task.per_label_accuracy(y, pred),
            "loss": loss}


def train_single_task(dataset: TaskDataset, task_name: str, arch: str = "lenet5",
                      epochs: int = 5, batch_size: int = 128, seed: int = 0, lr: float = 1e-3,
                      verbose: int = 2, distribute: str = "default") -> tuple[keras.Model, dict]:
    """Train ``arch`` on one task of ``dataset`` with Adam; evaluate it on the test split.

    Seeded (:func:`pam_tf.compat.set_seed`, deterministic ops). ``verbose`` is Keras' (0 silent,
    1 progress bar, 2 one line per epoch). ``distribute`` names a :mod:`pam_tf.distribute`
    strategy: the model is built and compiled in its scope and ``batch_size`` stays the global
    batch (Keras splits it over the replicas). Returns the model and a dict of metrics: test
    ``accuracy`` (binary: mean per-label accuracy), ``per_label_accuracy``, ``loss``,
    ``train_seconds``, ``history`` (per-epoch training loss/accuracy), ``n_train``, ``n_test``."""
    task = dataset.task(task_name)
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    set_seed(seed)
    strategy = make_strategy(distribute)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = compile_for_task(build_model(arch, dataset.input_shape, task, seed=seed), task, lr)
    start = time.perf_counter()
    history = model.fit(dataset.x_train, dataset.y_train[task.name], batch_size=batch_size,
                        epochs=epochs, shuffle=True, verbose=verbose)
    train_seconds = time.perf_counter() - start
    metrics = evaluate_task(model, dataset.x_test, dataset.y_test[task.name], task)
    metrics.update(
        train_seconds=round(train_seconds, 2),
        history={k: [float(v) for v in vals] for k, vals in history.history.items()},
        n_train=int(len(dataset.x_train)), n_test=int(len(dataset.x_test)))
    return model, metrics


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """``lenet5_a.keras`` -> ``lenet5_a.json``."""
    return Path(model_path).with_suffix(".json")


def read_sidecar(model_path: str | os.PathLike) -> dict:
    """The sidecar of a model file, ``{}`` if it has none; a ValueError names a malformed one."""
    side = sidecar_path(model_path)
    if not side.exists():
        return {}
    try:
        return json.loads(side.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"sidecar '{side}' is not valid JSON ({e})") from None


def save_keras_deterministic(model: keras.Model, path: str | os.PathLike) -> None:
    """Save ``model`` as ``.keras``, atomically, with bytes that depend only on the model.

    Keras writes the save time into the archive (``metadata.json``'s ``date_saved`` and each
    zip entry's timestamp), so the same weights saved twice hash differently, and a run's
    identity hashes the model files (pam_tf/runfolder.py): a net retrained to the same weights
    would start a new run folder. The archive is rewritten without the date and with fixed
    entry times; Keras loads it as before."""
    with atomic_path(str(path)) as tmp:
        model.save(tmp, overwrite=True)
        with zipfile.ZipFile(tmp) as archive:
            entries = [(info, archive.read(info.filename)) for info in archive.infolist()]
        with zipfile.ZipFile(tmp, "w") as archive:
            for info, data in entries:
                if info.filename == "metadata.json":
                    meta = json.loads(data)
                    meta.pop("date_saved", None)
                    data = json.dumps(meta, sort_keys=True).encode()
                fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
                fixed.compress_type, fixed.external_attr = info.compress_type, info.external_attr
                archive.writestr(fixed, data)


def save_single_task_model(model: keras.Model, path: str | os.PathLike, *, dataset: TaskDataset,
                           task_name: str, arch: str, metrics: dict, seed: int, epochs: int,
                           batch_size: int, lr: float, command: str | None = None,
                           limit_train: int | None = None,
                           limit_test: int | None = None) -> dict:
    """Save ``model`` to ``path`` (``.keras``) and its sidecar, each atomically; return the
    sidecar dict. The saved copy is uncompiled (architecture and weights only)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"model path must end in .keras, got {str(path)!r}")
    task = dataset.task(task_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = keras.models.clone_model(model)
    clean.set_weights(model.get_weights())
    save_keras_deterministic(clean, path)
    sidecar = {
        "format": SIDECAR_FORMAT,
        "model_file": path.name,
        "suite": dataset.suite,
        "task": task.name,
        "task_kind": task.kind,
        "n_outputs": task.n_outputs,
        "label_names": list(task.label_names),
        "architecture": arch,
        "model_name": model.name,
        "input_shape": list(dataset.input_shape),
        "accuracy": round(float(metrics["accuracy"]), 6),
        "per_label_accuracy": [round(float(a), 6) for a in metrics.get("per_label_accuracy", [])],
        "test_loss": round(float(metrics["loss"]), 6) if "loss" in metrics else None,
        "n_train": int(metrics.get("n_train", len(dataset.x_train))),
        "n_test": int(metrics.get("n_test", len(dataset.x_test))),
        "limit_train": limit_train,
        "limit_test": limit_test,
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": lr,
        "optimizer": "adam",
        "train_seconds": metrics.get("train_seconds"),
        "data_checksum": dataset.checksum,
        "params": int(model.count_params()),
        "tensorflow_version": tf.__version__,
        "tf_keras_version": keras.__version__,
        "command": command,
    }
    write_text(str(sidecar_path(path)), json.dumps(sidecar, indent=2) + "\n")
    return sidecar


def task_from_sidecar(sidecar: dict) -> Task:
    """The :class:`Task` a sidecar describes."""
    return Task(sidecar["task"], sidecar["task_kind"], sidecar["n_outputs"],
                tuple(sidecar["label_names"]))


def load_single_task_model(path: str | os.PathLike,
                           compile: bool = True) -> tuple[keras.Model, dict]:
    """Load a model saved by :func:`save_single_task_model` and its sidecar (``{}`` if none).

    With ``compile`` and a sidecar, the model is compiled for its task (Adam with the recorded
    learning rate, the task's loss and accuracy metric)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no model file {path}")
    model = keras.models.load_model(path, compile=False)
    sidecar = read_sidecar(path)
    if compile and sidecar:
        compile_for_task(model, task_from_sidecar(sidecar), sidecar.get("learning_rate", 1e-3))
    return model, sidecar
