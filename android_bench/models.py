"""What to time: a manifest of task combinations, or a plain folder of .tflite files.

The harness knows nothing about how the models were made. A *combination* is a set of tasks
served together by one or more files; the no-merge baseline serves each task with its own file, so
its latency is the sum of its files' latencies (they run one after another on the phone). A plain
folder makes every file its own one-file combination.

Each distinct file is timed once per setting and repeat, even when several combinations list it;
files are identified by their sha256, which also feeds the run ids used for resuming.

The manifest format is pam-tf's (:mod:`pam_tf.manifest_format`: version, error class); this reader
is deliberately lenient: it needs only ``combinations[*].files`` (hand-written manifests and other
exporters work too) and identifies files by the sha256 it computes, not by recorded ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pam_tf.io import read_json, sha256_file
from pam_tf.manifest_format import MANIFEST_VERSION, ManifestError

#: Manifest fields copied into the combination summary when present.
COMBINATION_META_KEYS = ("flops", "macs", "params", "bytes", "gzip_bytes", "accuracy", "max_abs_diff")


@dataclass(frozen=True)
class ModelFile:
    """One .tflite file: ``name`` is its path relative to the manifest / models folder."""

    name: str
    path: Path
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class Combination:
    """Tasks served together by ``files`` (names of :class:`ModelFile`)."""

    label: str
    tasks: tuple[str, ...]
    files: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "tasks": list(self.tasks), "files": list(self.files), "meta": self.meta}


@dataclass
class ModelSet:
    """The models of one sweep and how they combine."""

    source: str
    method: str
    tasks: list[str]
    input_shape: list[int] | None
    models: list[ModelFile]
    combinations: list[Combination]

    def model(self, name: str) -> ModelFile:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "method": self.method, "tasks": self.tasks,
                "input_shape": self.input_shape, "models": [m.to_dict() for m in self.models],
                "combinations": [c.to_dict() for c in self.combinations]}


def _model_file(root: Path, name: str) -> ModelFile:
    path = (root / name)
    if not path.is_file():
        raise ManifestError(f"model file {name!r} not found (looked for {path})")
    return ModelFile(name=name, path=path, sha256=sha256_file(path), size=path.stat().st_size)


def load_manifest(manifest_path: str | Path) -> ModelSet:
    """Read a version-1 manifest; files are resolved relative to the manifest's folder."""
    manifest_path = Path(manifest_path)
    data = read_json(str(manifest_path), ManifestError, "manifest")
    if not isinstance(data, dict):
        raise ManifestError(f"manifest {manifest_path} must hold a JSON object")
    if data.get("version") != MANIFEST_VERSION:
        raise ManifestError(f"manifest {manifest_path}: unsupported version {data.get('version')!r} "
                            f"(expected {MANIFEST_VERSION})")
    combos = data.get("combinations")
    if not isinstance(combos, list) or not combos:
        raise ManifestError(f"manifest {manifest_path}: 'combinations' must be a non-empty list")
    root = manifest_path.parent
    models: dict[str, ModelFile] = {}
    combinations: list[Combination] = []
    seen_labels: set[str] = set()
    for i, c in enumerate(combos):
        if not isinstance(c, dict) or not c.get("files") or not isinstance(c.get("files"), list):
            raise ManifestError(f"manifest {manifest_path}: combination #{i} needs a non-empty 'files' list")
        tasks = tuple(str(t) for t in c.get("tasks") or ())
        files = tuple(str(f) for f in c["files"])
        for name in files:
            if name not in models:
                models[name] = _model_file(root, name)
        label = "+".join(tasks) if tasks else "+".join(Path(f).stem for f in files)
        if label in seen_labels:
            label = f"{label}#{i}"
        seen_labels.add(label)
        meta = {k: c[k] for k in COMBINATION_META_KEYS if k in c}
        combinations.append(Combination(label, tasks, files, meta))
    return ModelSet(source=str(manifest_path), method=str(data.get("method", "")),
                    tasks=[str(t) for t in data.get("tasks") or []],
                    input_shape=data.get("input_shape"), models=list(models.values()),
                    combinations=combinations)


def load_models_dir(models_dir: str | Path) -> ModelSet:
    """Every ``*.tflite`` in a folder (not recursive), each its own combination."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise ManifestError(f"models folder {models_dir} not found")
    names = sorted(p.name for p in models_dir.glob("*.tflite") if p.is_file())
    if not names:
        raise ManifestError(f"no .tflite files in {models_dir}")
    models = [_model_file(models_dir, n) for n in names]
    combos = [Combination(Path(n).stem, (Path(n).stem,), (n,)) for n in names]
    return ModelSet(source=str(models_dir), method="", tasks=[c.label for c in combos], input_shape=None,
                    models=models, combinations=combos)


def load_model_set(manifest: str | Path | None = None, models_dir: str | Path | None = None) -> ModelSet:
    """Exactly one of ``manifest`` / ``models_dir``."""
    if (manifest is None) == (models_dir is None):
        raise ManifestError("give exactly one of --manifest or --models_dir")
    if manifest is not None:
        return load_manifest(manifest)
    assert models_dir is not None
    return load_models_dir(models_dir)
