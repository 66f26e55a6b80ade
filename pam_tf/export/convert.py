"""Keras combination model → .tflite bytes, and what each exported file contains.

Why one file per combination (not one merged model with switches): on a phone a combination is
chosen before inference, and a file that holds exactly the groups the combination needs costs
exactly ``plan.cost(C)`` — which :mod:`pam_tf.export.flatbuffer_cost` then verifies.

For "no merging" (B1; ``export_all(..., separate_files=True)``) a combination is the set of
separately pruned single-task networks running side by side, so each task's network is exported
once (``build_model(plan, weights, [t])`` is exactly that network) and a combination lists the
files it runs together.

Quantisation options and why their parity tolerances are what they are. The figure is
max |TFLite − Keras| over the heads' outputs (probabilities) on 16 seeded random images plus
64 held-out images. Measured (this machine, fashion2, 2 000 test images, pam-like and B1 plans
built from briefly trained LeNet-5 and vgg_small nets; see the export tests for tiny nets):

- ``float32``: the same arithmetic in another runtime; observed ≤ 4e-6 → tolerance 1e-5.
- ``float16``: weights stored as float16, dequantised to float32 at load (a DEQUANTIZE op in front
  of every weight); observed 2e-6–7e-4 → tolerance 1e-2 (headroom for deeper nets).
- ``int8``: dynamic-range quantisation (int8 weights per channel, activations quantised on the
  fly by hybrid kernels); observed 9e-4–1.0e-2, test accuracy within 0.02 percentage points
  → tolerance 5e-2. Weights with fewer than 1024 elements stay float32 (the converter's own
  threshold), so tiny models barely change (``weight_types`` in the manifest shows what was
  quantised).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from pam_tf.compat import keras, tf
from pam_tf.networks import build_for
from pam_tf.plan import Plan, PlanError


@dataclass(frozen=True)
class Quantization:
    """One export precision: file-name suffix, parity tolerance, converter settings."""

    name: str
    suffix: str
    tolerance: float
    configure: Callable[[object], None]


def _float32(converter) -> None:
    pass


def _float16(converter) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


def _int8_dynamic(converter) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]


QUANTIZATIONS: dict[str, Quantization] = {
    "float32": Quantization("float32", "", 1e-5, _float32),
    "float16": Quantization("float16", ".f16", 1e-2, _float16),
    "int8": Quantization("int8", ".int8", 5e-2, _int8_dynamic),
}
LAYOUTS = ("split", "fused")


def quantization(name: str) -> Quantization:
    try:
        return QUANTIZATIONS[name]
    except KeyError:
        raise ValueError(f"quantize={name!r} is not one of {sorted(QUANTIZATIONS)}") from None


@dataclass(frozen=True)
class Unit:
    """One .tflite file to write: the tasks whose heads it outputs and its file name."""

    tasks: tuple[str, ...]
    file: str


def combo_key(combo: Sequence[str]) -> str:
    """'a+b': the name of a combination in file names and multi-signature keys."""
    return "+".join(combo)


def file_name(method: str, combo: Sequence[str], quantize: str = "float32",
              layout: str = "split") -> str:
    """Self-explaining file name, e.g. ``pam__a+b.tflite``, ``none__b.f16.tflite``.

    Task names are ``[a-z][a-z0-9_]*`` and method names hold no '__', so splitting on the first
    '__' and then on '+' maps a name back to one method and combination.
    """
    tag = ".fused" if layout == "fused" else ""
    return f"{method}__{combo_key(combo)}{tag}{quantization(quantize).suffix}.tflite"


def normalise_combinations(plan: Plan, combinations: Iterable[Iterable[str]] | None
                           ) -> list[tuple[str, ...]]:
    """User combinations in the plan's canonical order, deduplicated; default: all 2^n − 1."""
    if combinations is None:
        return plan.combinations()
    if isinstance(combinations, str):
        raise PlanError("combinations must be a list of task lists, e.g. [['a'], ['a', 'b']], "
                        f"not the string {combinations!r}")
    wanted = set()
    for c in combinations:
        if isinstance(c, str):
            c = [c]
        wanted.add(plan.normalise_combination(c))
    if not wanted:
        raise PlanError("combinations is empty: give at least one task combination")
    return [c for c in plan.combinations() if c in wanted]


def units_for(plan: Plan, combinations: Sequence[tuple[str, ...]], quantize: str,
              layout: str = "split", *, separate_files: bool = False
              ) -> tuple[list[Unit], dict[tuple[str, ...], list[str]]]:
    """Files to write and, per combination, the files it runs.

    `separate_files` (no merging, B1): one single-task file per task used by any combination;
    a combination runs its tasks' files together. Otherwise: one file per combination.
    File names start with ``plan.method`` either way (``none__a.tflite``, ``pam__a+b.tflite``).
    """
    if separate_files:
        tasks = [t for t in plan.tasks if any(t in c for c in combinations)]
        units = [Unit((t,), file_name(plan.method, (t,), quantize, layout)) for t in tasks]
        files = {c: [file_name(plan.method, (t,), quantize, layout) for t in c]
                 for c in combinations}
        return units, files
    units = [Unit(c, file_name(plan.method, c, quantize, layout)) for c in combinations]
    return units, {c: [u.file] for c, u in zip(combinations, units)}


def keras_name(method: str, combo: Sequence[str]) -> str:
    """A Keras model name the converter accepts ('+' is not a valid TF name scope)."""
    return f"{method}__{'_'.join(combo)}"


def combination_model(plan: Plan, weights: dict[str, np.ndarray], combo: Sequence[str],
                      layout: str = "split") -> "keras.Model":
    """The Keras model one file is converted from (split: the builder's own sub-model)."""
    if layout == "split":
        return build_for(plan, weights, combo, name=keras_name(plan.method, combo))
    if layout == "fused":
        from pam_tf.export.fused import build_fused_model
        return build_fused_model(plan, weights, combo, name=keras_name(plan.method, combo))
    raise ValueError(f"layout={layout!r} is not one of {LAYOUTS}")


def convert_keras_model(model: "keras.Model", quantize: str = "float32") -> bytes:
    """Convert with ``TFLiteConverter.from_keras_model`` at the given precision."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    quantization(quantize).configure(converter)
    return bytes(converter.convert())


def keras_outputs(model: "keras.Model", x: np.ndarray) -> dict[str, np.ndarray]:
    """Keras outputs keyed by output-layer name (= task), inference mode."""
    out = model(np.asarray(x, np.float32), training=False)
    if not isinstance(out, (list, tuple)):
        out = [out]
    return {name.split("/")[0]: np.asarray(o, np.float32)
            for name, o in zip(model.output_names, out)}
