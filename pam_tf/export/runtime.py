"""Running exported .tflite files with the LiteRT interpreter, outputs keyed by task name.

Why a helper: the raw ``get_output_details()`` order of a converted multi-output model is *not*
the Keras output order (stack.md, "TFLite / LiteRT"), so reading outputs by position silently
swaps tasks. Every read here goes through a signature runner, whose outputs are keyed by the
output-layer name; the builder names every head after its task, so the keys are task names.
:func:`map_outputs` still checks that and falls back to ``output_<i>`` keys (what the converter
emits for unnamed outputs) before giving up with an error that lists the keys it found.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from ai_edge_litert.interpreter import Interpreter

from pam_tf.export.errors import ExportError

DEFAULT_SIGNATURE = "serving_default"
_OUTPUT_N = re.compile(r"^output_(\d+)$")


def load_interpreter(path_or_bytes: str | bytes, num_threads: int = 1) -> Interpreter:
    """An interpreter for a file path or flatbuffer bytes (1 thread: reproducible, polite)."""
    if isinstance(path_or_bytes, (bytes, bytearray)):
        return Interpreter(model_content=bytes(path_or_bytes), num_threads=num_threads)
    return Interpreter(model_path=str(path_or_bytes), num_threads=num_threads)


def signature_keys(interpreter: Interpreter) -> list[str]:
    return list(interpreter.get_signature_list())


def map_outputs(raw: dict[str, np.ndarray], tasks: Sequence[str],
                where: str) -> dict[str, np.ndarray]:
    """Signature outputs keyed by task name, checked; `tasks` in Keras output order."""
    keys = list(raw)
    if set(keys) == set(tasks):
        return {t: raw[t] for t in tasks}
    stripped = {k.split(":")[0].split("/")[0]: k for k in keys}
    if set(stripped) == set(tasks) and len(stripped) == len(keys):
        return {t: raw[stripped[t]] for t in tasks}
    numbered = {int(m.group(1)): k for k in keys if (m := _OUTPUT_N.match(k))}
    if len(numbered) == len(keys) == len(tasks) and sorted(numbered) == list(range(len(tasks))):
        return {t: raw[numbered[i]] for i, t in enumerate(tasks)}
    raise ExportError(f"{where}: signature outputs {sorted(keys)} cannot be matched to the "
                        f"tasks {list(tasks)} (heads must be named after their tasks)")


def run(interpreter: Interpreter, x: np.ndarray, tasks: Sequence[str], *,
        signature: str | None = None, batch_size: int = 256, where: str = "model"
        ) -> dict[str, np.ndarray]:
    """Run one signature over `x` in batches; returns {task: (N, units) float32}.

    The signature runner resizes the input tensor to each batch, so a whole test set runs in a
    few calls instead of one invoke per image.
    """
    sigs = interpreter.get_signature_list()
    key = signature if signature is not None else (
        DEFAULT_SIGNATURE if DEFAULT_SIGNATURE in sigs else next(iter(sigs)))
    if key not in sigs:
        raise ExportError(f"{where}: no signature '{key}' (has {sorted(sigs)})")
    inputs = sigs[key]["inputs"]
    if len(inputs) != 1:
        raise ExportError(f"{where}: signature '{key}' has inputs {inputs}, expected one image")
    runner = interpreter.get_signature_runner(key)
    x = np.asarray(x, dtype=np.float32)
    parts: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
    for start in range(0, len(x), batch_size):
        out = map_outputs(runner(**{inputs[0]: x[start:start + batch_size]}), tasks,
                          f"{where} (signature '{key}')")
        for t in tasks:
            parts[t].append(np.array(out[t], dtype=np.float32, copy=True))
    return {t: np.concatenate(parts[t]) for t in tasks}
