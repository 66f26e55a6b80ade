"""``manifest.json``: what an export folder contains, and the checks that make it trustworthy.

Why a manifest: an app (or a benchmark harness) picks the file(s) for a task combination by
looking it up here, together with its cost and accuracy. It is written last and atomically, so
its presence means every file it names was written completely, converted, counted and
parity-checked; its per-file sha256 lets :func:`load_manifest` detect files replaced later.

The schema, its validation and :func:`load_manifest` live in :mod:`pam_tf.manifest_format`
(shared with the benchmark harness, no TensorFlow); this module adds what only the exporter
needs: sizes, fingerprints and the atomic write.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os

import numpy as np

from pam_tf import io
from pam_tf.manifest_format import (MANIFEST_NAME, MANIFEST_VERSION, ManifestError,
                                    load_manifest, validate)

__all__ = ["MANIFEST_NAME", "MANIFEST_VERSION", "ManifestError", "load_manifest", "validate",
           "gzip_size", "sha256_bytes", "plan_fingerprint", "weights_fingerprint",
           "write_manifest"]


def gzip_size(data: bytes) -> int:
    """Size after gzip -9 (mtime 0: reproducible); how much an app download would weigh."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def plan_fingerprint(plan) -> str:
    """sha256 of the plan's canonical JSON: which plan an export came from."""
    return sha256_bytes(json.dumps(plan.to_json(), sort_keys=True).encode())


def weights_fingerprint(weights: dict[str, np.ndarray]) -> str:
    """sha256 over names, shapes and float32 bytes of the weights, in sorted order."""
    h = hashlib.sha256()
    for k in sorted(weights):
        a = np.ascontiguousarray(weights[k], dtype=np.float32)
        h.update(k.encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_manifest(out_dir: str, manifest: dict) -> str:
    """Validate, then write ``manifest.json`` atomically (rename over any previous one)."""
    validate(manifest, where="manifest to write", root=None)
    path = os.path.join(out_dir, MANIFEST_NAME)
    io.write_json(path, manifest)
    return path
