"""One .tflite file for all task combinations: one signature per combination, weights stored once.

Why: separate per-combination files repeat every shared group's weights (the all-task trunk is
in every file). A multi-signature file holds each group's weights once and lets the app pick a
combination by signature key (``"a+b"``) at run time.

How: the full multitask model is built once; each combination's sub-model is the builder's own
sub-model re-wired onto the *same* layer objects of the full model (``clone_model`` with a
``clone_function`` that returns the full model's layer of the same name — the builder names
layers by plan group, so names match). A ``tf.Module`` holds the full model's variables and one
``tf.function`` per combination; it is saved as a SavedModel with one signature per combination
and converted with ``TFLiteConverter.from_saved_model(signature_keys=...)``. The converter then
emits one subgraph per signature whose weight tensors point at shared constant buffers;
:func:`pam_tf.export.flatbuffer_cost.stored_weight_elements` checks that no weight is stored
twice.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from pam_tf.compat import keras, tf
from pam_tf.export import flatbuffer_cost
from pam_tf.export.convert import combo_key, keras_name, quantization
from pam_tf.export.errors import ExportError
from pam_tf.networks import build_for, input_shape_of, weight_shapes_for
from pam_tf.plan import Plan


def shared_submodels(plan: Plan, weights: dict[str, np.ndarray],
                     combinations: Sequence[tuple[str, ...]]
                     ) -> tuple["keras.Model", dict[tuple[str, ...], "keras.Model"]]:
    """The full model and, per combination, a sub-model made of the full model's layers."""
    full = build_for(plan, weights, name=keras_name(plan.method, ("all",)))
    subs = {}
    for combo in combinations:
        skeleton = build_for(plan, None, combo, name=keras_name(plan.method, combo))
        sub = keras.models.clone_model(skeleton,
                                       clone_function=lambda layer: full.get_layer(layer.name))
        own = {id(v) for v in full.weights}
        if any(id(v) not in own for v in sub.weights):  # pragma: no cover - builder invariant
            raise ExportError(f"combination {combo_key(combo)}: its sub-model does not reuse "
                              "the full model's layers")
        subs[combo] = sub
    return full, subs


def build_module(plan: Plan, weights: dict[str, np.ndarray],
                 combinations: Sequence[tuple[str, ...]]) -> tuple[tf.Module, dict]:
    """A tf.Module holding the full model, and {signature key: concrete function}."""
    full, subs = shared_submodels(plan, weights, combinations)
    module = tf.Module()
    # Track the variables, not the Keras model: saving then skips Keras' large object graph
    # (about 3× faster) and the functions' captured variables are still all reachable.
    module.model_variables = list(full.weights)
    spec = tf.TensorSpec([None, *input_shape_of(plan)], tf.float32, name="image")
    signatures = {}
    for i, (combo, sub) in enumerate(subs.items()):
        def make(sub=sub, combo=combo):
            @tf.function(input_signature=[spec])
            def serve(image):
                out = sub(image, training=False)
                out = out if isinstance(out, (list, tuple)) else [out]
                return {t: o for t, o in zip(combo, out)}
            return serve
        fn = make()
        setattr(module, f"combination_{i}", fn)
        signatures[combo_key(combo)] = fn.get_concrete_function()
    return module, signatures


def convert(plan: Plan, weights: dict[str, np.ndarray],
            combinations: Sequence[tuple[str, ...]], quantize: str, workdir: str) -> bytes:
    """Multi-signature .tflite bytes (SavedModel written under `workdir`, a scratch folder)."""
    module, signatures = build_module(plan, weights, combinations)
    saved = os.path.join(workdir, "multi_signature_savedmodel")
    tf.saved_model.save(module, saved, signatures=signatures)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=list(signatures))
    quantization(quantize).configure(converter)
    return bytes(converter.convert())


def model_weight_elements(plan: Plan) -> int:
    """Kernel and bias elements of the full multitask model: each stored once, at most."""
    return int(sum(int(np.prod(s)) for s in weight_shapes_for(plan).values()))


def check_deduplicated(data: bytes, plan: Plan, where: str) -> tuple[int, int]:
    """Raise unless the file stores no more weight elements than the full model has.

    Returns (stored elements, model elements). Identical constants (e.g. zero biases) may be
    merged by the converter, so stored ≤ model; a weight repeated per signature would push the
    count towards (number of signatures) × model.
    """
    stored, _ = flatbuffer_cost.stored_weight_elements(data)
    model = model_weight_elements(plan)
    if stored > model:
        raise ExportError(f"{where}: {stored} weight elements stored, the full model has "
                          f"{model}: shared groups' weights were duplicated across signatures")
    return stored, model
