"""Errors of the export stage; each message names the file (or signature) and what differed."""
from __future__ import annotations


class ExportError(RuntimeError):
    """An export step failed; nothing was published (no manifest, no half-written files)."""


class ParityError(ExportError):
    """A .tflite file's outputs differ from the Keras model's by more than the tolerance."""


class CostMismatchError(ExportError):
    """MACs/FLOPs counted in a .tflite flatbuffer differ from the plan's figures."""


class ManifestError(ValueError):
    """A manifest file is missing, malformed, or does not match the files next to it."""
