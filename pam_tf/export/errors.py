"""Errors of the export stage; each message names the file (or signature) and what differed."""
from __future__ import annotations

from pam_tf.manifest_format import ManifestError  # one class, shared with the benchmark harness

__all__ = ["ExportError", "ParityError", "CostMismatchError", "ManifestError"]


class ExportError(RuntimeError):
    """An export step failed; nothing was published (no manifest, no half-written files)."""


class ParityError(ExportError):
    """A .tflite file's outputs differ from the Keras model's by more than the tolerance."""


class CostMismatchError(ExportError):
    """MACs/FLOPs counted in a .tflite flatbuffer differ from the plan's figures."""
