"""The ``manifest.json`` format of an export folder: schema, validation, reading.

Both sides of the format use this one module: the exporter (:mod:`pam_tf.export.manifest`
writes and checks a manifest) and the benchmark harness (:mod:`android_bench.models` reads one).
It needs no TensorFlow, so the harness stays light.

Schema (version 1)::

    {
      "version": 1,
      "method": "pam" | "none" | "shared" | "mtz",
      "tasks": ["a", "b"],
      "input_shape": [28, 28, 1],
      "quantize": "float32" | "float16" | "int8",
      "layout": "split" | "fused",
      "tolerance": 1e-05,                       # parity tolerance used for this precision
      "parity": {"random_inputs": 16, "real_inputs": 64, "seed": 0},
      "test_samples": 10000 | null,
      "plan_sha256": "...", "weights_sha256": "...",
      "tensorflow": "2.21.0",
      "combinations": [
        {"tasks": ["a", "b"],
         "files": ["pam__a+b.tflite"],          # relative to the manifest; run together
         "flops": ..., "macs": ..., "params": ...,          # plan, paper convention (§9)
         "flatbuffer_macs": ..., "flatbuffer_flops": ...,    # counted in the file(s); == plan
         "bytes": ..., "gzip_bytes": ...,                    # summed over the files
         "accuracy": {"a": 0.97, "b": 0.98} | null,         # from the TFLite outputs
         "max_abs_diff": 3e-07}
      ],
      "files": {
        "pam__a+b.tflite": {"tasks": ["a", "b"], "bytes": ..., "gzip_bytes": ...,
                            "sha256": "...", "macs": ..., "flops": ...,
                            "weight_types": {"FLOAT32": 7}, "max_abs_diff": ...}
      },
      "multi_signature": {"file": "pam__multi-signature.tflite", "bytes": ...,
                          "gzip_bytes": ..., "sha256": "...", "sum_of_separate_bytes": ...,
                          "stored_weight_elements": ..., "model_weight_elements": ...,
                          "signatures": {"a+b": {"tasks": [...], "macs": ..., "flops": ...,
                                                  "max_abs_diff": ...}}} | null
    }

``layout`` describes the per-combination files; the multi-signature file always uses the
builder's split layout (its signatures' MACs equal the plan's). For the fused layout,
``flatbuffer_macs`` ≥ ``macs`` (zero blocks are computed); for split they are equal.

For an export with separate files (B1, method "none": ``export_all(..., separate_files=True)``)
the files are single-task networks (``none__a.tflite``) and a combination lists the files of its
tasks; its costs and sizes are their sums.
"""
from __future__ import annotations

import os
from typing import Any

from pam_tf import io

MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"


class ManifestError(ValueError):
    """A manifest file is missing, malformed, or does not match the files next to it."""


_TOP = {"version": int, "method": str, "tasks": list, "input_shape": list, "quantize": str,
        "layout": str, "tolerance": (int, float), "combinations": list, "files": dict}
_COMBO = {"tasks": list, "files": list, "flops": int, "macs": int, "params": int,
          "flatbuffer_macs": int, "flatbuffer_flops": int, "bytes": int, "gzip_bytes": int,
          "max_abs_diff": (int, float)}
_FILE = {"tasks": list, "bytes": int, "gzip_bytes": int, "sha256": str, "macs": int,
         "flops": int}


def _fields(d: Any, spec: dict, where: str) -> None:
    if not isinstance(d, dict):
        raise ManifestError(f"{where}: expected a JSON object")
    for key, typ in spec.items():
        if key not in d:
            raise ManifestError(f"{where}: missing field '{key}'")
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, typ):
            raise ManifestError(f"{where}: field '{key}' has {type(v).__name__} {v!r}")


def validate(m: Any, where: str = "manifest", root: str | None = None,
             verify_hashes: bool = True) -> None:
    """Raise ManifestError unless `m` follows the schema; with `root`, check the files too."""
    if not isinstance(m, dict):
        raise ManifestError(f"{where}: expected a JSON object")
    if m.get("version") != MANIFEST_VERSION:
        raise ManifestError(f"{where}: manifest version {m.get('version')!r} is not supported "
                            f"(expected {MANIFEST_VERSION})")
    _fields(m, _TOP, where)
    tasks = m["tasks"]
    files = m["files"]
    for name, info in files.items():
        _fields(info, _FILE, f"{where}: files['{name}']")
        if os.path.isabs(name) or ".." in name.replace("\\", "/").split("/"):
            raise ManifestError(f"{where}: file name {name!r} must be relative to the manifest")
        if any(t not in tasks for t in info["tasks"]):
            raise ManifestError(f"{where}: files['{name}'] outputs unknown tasks {info['tasks']}")
    if not m["combinations"]:
        raise ManifestError(f"{where}: no combinations")
    for i, c in enumerate(m["combinations"]):
        cw = f"{where}: combinations[{i}]"
        _fields(c, _COMBO, cw)
        if not c["tasks"] or any(t not in tasks for t in c["tasks"]):
            raise ManifestError(f"{cw}: tasks {c['tasks']} are not a non-empty subset of "
                                f"{tasks}")
        missing = [f for f in c["files"] if f not in files]
        if missing or not c["files"]:
            raise ManifestError(f"{cw}: files {missing or c['files']} are not listed in 'files'")
        produced = [t for f in c["files"] for t in files[f]["tasks"]]
        if sorted(set(c["tasks"])) != sorted(set(produced)):
            raise ManifestError(f"{cw}: its files output {produced}, not its tasks {c['tasks']}")
        acc = c.get("accuracy")
        if acc is not None and (not isinstance(acc, dict) or set(acc) != set(c["tasks"])):
            raise ManifestError(f"{cw}: accuracy must be null or one number per task")
        if m["layout"] == "split" and (c["flatbuffer_macs"] != c["macs"] or
                                       c["flatbuffer_flops"] != c["flops"]):
            raise ManifestError(f"{cw}: flatbuffer cost {c['flatbuffer_macs']} MACs differs "
                                f"from the plan's {c['macs']}")
        if c["flatbuffer_macs"] < c["macs"]:
            raise ManifestError(f"{cw}: flatbuffer counts fewer MACs than the plan")
    ms = m.get("multi_signature")
    if ms is not None:
        _fields(ms, {"file": str, "bytes": int, "gzip_bytes": int, "sha256": str,
                     "sum_of_separate_bytes": int, "signatures": dict}, f"{where}: multi_signature")
    if root is None:
        return
    checks = [(name, info) for name, info in files.items()]
    if ms is not None:
        checks.append((ms["file"], ms))
    for name, info in checks:
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            raise ManifestError(f"{where}: listed file '{name}' is missing from {root}")
        size = os.path.getsize(path)
        if size != info["bytes"]:
            raise ManifestError(f"{where}: '{name}' has {size} bytes, the manifest says "
                                f"{info['bytes']} (replaced after export?)")
        if verify_hashes and io.sha256_file(path) != info["sha256"]:
            raise ManifestError(f"{where}: '{name}' does not match its sha256 (replaced after "
                                "export?)")


def load_manifest(path: str, *, verify_files: bool = True) -> dict:
    """Read and validate a manifest (a file or the folder holding ``manifest.json``).

    With `verify_files` (default) every listed file must exist with the recorded size and
    sha256, so a manifest that loads describes exactly the files next to it.
    """
    if os.path.isdir(path):
        path = os.path.join(path, MANIFEST_NAME)
    m = io.read_json(path, ManifestError, "manifest")
    validate(m, where=path, root=os.path.dirname(os.path.abspath(path)) if verify_files else None)
    return m
