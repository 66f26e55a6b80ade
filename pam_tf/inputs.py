"""What the user hands the main job, checked before anything expensive runs.

Model files (missing, empty, corrupt, Keras 3), their JSON sidecars, the tasks they are for, the
combinations asked for, the shipped examples; every refusal is an :class:`InputError` whose
message names the culprit (file, layer, flag), which the CLI prints with exit status 2.
"""
from __future__ import annotations

import json
import os
import platform
import zipfile
from typing import Sequence

import numpy as np

EXAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "examples")


class InputError(ValueError):
    """Bad input to the main job: the message names the culprit (file, layer, flag)."""


def example_models(example: str) -> tuple[tuple[str, ...], str]:
    """Model files and suite of a shipped example (examples/<name>/)."""
    folder = os.path.join(EXAMPLES_DIR, example)
    if not os.path.isdir(folder):
        have = sorted(os.listdir(EXAMPLES_DIR)) if os.path.isdir(EXAMPLES_DIR) else []
        raise InputError(f"no shipped example '{example}' (examples: {', '.join(have) or 'none'})")
    files = sorted(f for f in os.listdir(folder) if f.endswith(".keras"))
    if not files:
        raise InputError(f"example '{example}' has no .keras models in {folder}")
    return tuple(os.path.join(folder, f) for f in files), example


def check_model_count(paths: Sequence[str]) -> None:
    """Merging shares neurons between networks: with one model there is nothing to merge, and
    the "comparison" would be one network against itself, so refuse it before anything runs."""
    if len(paths) < 2:
        given = f"got {len(paths)}" + (f" ('{paths[0]}')" if paths else "")
        raise InputError(f"merging needs at least two models, one per task; {given}: pass "
                         "--models=a.keras,b.keras,...")


def check_model_file(path: str) -> None:
    """Refuse missing, unreadable and Keras 3 model files before TensorFlow touches them."""
    if not os.path.exists(path):
        raise InputError(f"model file '{path}' does not exist")
    if os.path.getsize(path) == 0:
        raise InputError(f"model file '{path}' is empty")
    if path.endswith(".keras"):
        try:
            with zipfile.ZipFile(path) as z:
                names = set(z.namelist())
                meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
        except (zipfile.BadZipFile, json.JSONDecodeError, KeyError) as e:
            raise InputError(f"model file '{path}' is corrupt: not a readable .keras archive "
                             f"({e})") from None
        version = str(meta.get("keras_version", ""))
        if version.startswith("3"):
            raise InputError(f"model file '{path}' was saved by Keras {version} (Keras 3); "
                             "pam-tf reads tf_keras (Keras 2) models: rebuild and save it with "
                             "`import tf_keras as keras`")
        if "config.json" not in names:
            raise InputError(f"model file '{path}' is corrupt: no config.json in the archive")
    elif not path.endswith((".h5", ".hdf5")):
        raise InputError(f"model file '{path}': expected a .keras or .h5 file")


def load_models(paths: Sequence[str]):
    """Load tf_keras models and their JSON sidecars, with the file named in every error."""
    from pam_tf.compat import keras

    models, sidecars = [], []
    for path in paths:
        check_model_file(path)
        try:
            model = keras.models.load_model(path, compile=False)
        except Exception as e:  # noqa: BLE001 - any loader failure means an unreadable file
            raise InputError(f"model file '{path}' could not be loaded by tf_keras: "
                             f"{type(e).__name__}: {str(e).splitlines()[0][:300]}") from None
        from pam_tf.train import read_sidecar

        try:
            sidecar = read_sidecar(path)
        except ValueError as e:
            raise InputError(str(e)) from None
        models.append(model)
        sidecars.append(sidecar)
    return models, sidecars


def tasks_for_models(dataset, sidecars: Sequence[dict], paths: Sequence[str]):
    """Task of each model: from its sidecar when it names one, else the suite's order."""
    names = [s.get("task") for s in sidecars]
    if all(names):
        for path, s in zip(paths, sidecars):
            if s.get("suite") and s["suite"] != dataset.suite:
                raise InputError(f"model '{path}' was trained on suite '{s['suite']}', the run "
                                 f"uses suite '{dataset.suite}' (pass --suite={s['suite']})")
        if len(set(names)) != len(names):
            raise InputError(f"two models are for the same task: {names}")
        try:
            return tuple(dataset.task(n) for n in names)
        except ValueError as e:
            raise InputError(str(e)) from None
    if len(paths) != len(dataset.tasks):
        raise InputError(f"{len(paths)} models for the {len(dataset.tasks)} tasks of suite "
                         f"'{dataset.suite}' ({', '.join(dataset.task_names)}): give one model "
                         "per task, in task order, or sidecars naming each model's task")
    return dataset.tasks


def parse_combinations(spec: Sequence[str], tasks: Sequence[str]) -> list[tuple[str, ...]] | None:
    """'all' → None (every combination); else 'a', 'a+b', ... checked against the tasks."""
    if list(spec) in (["all"], []):
        return None
    out = []
    for item in spec:
        combo = tuple(t for t in item.split("+") if t)
        bad = [t for t in combo if t not in tasks]
        if bad or not combo:
            raise InputError(f"--combinations: '{item}' names unknown task(s) {bad}; tasks are "
                             f"{', '.join(tasks)}")
        out.append(tuple(t for t in tasks if t in combo))
    return out


def versions() -> dict:
    """Versions that matter for reproducing a run."""
    from pam_tf.compat import keras, tf
    import pam_tf

    out = {"pam_tf": pam_tf.__version__, "python": platform.python_version(),
           "tensorflow": tf.__version__, "tf_keras": keras.__version__,
           "numpy": np.__version__, "platform": platform.platform()}
    for name in ("tensorflow_model_optimization", "ai_edge_litert"):
        try:
            from importlib.metadata import version

            out[name] = version(name.replace("_", "-"))
        except Exception:  # noqa: BLE001 - a missing optional package is reported as absent
            out[name] = None
    return out
