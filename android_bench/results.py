"""The results folder: an append-only JSON-lines log plus atomically written side files.

Why JSON lines with fsync per line: a sweep can die at any moment (phone unplugged, laptop
asleep, Ctrl-C). Each finished run is one line, flushed and fsync'ed before the next run starts,
so at most the run in flight is lost, and a rerun resumes from the completed run ids. A torn last
line (host crash mid-write) is ignored on reading.

``meta.json`` pins what the folder measures (target, device, models, plan); a rerun into the same
folder with another phone or target is refused instead of silently mixing results.

Summary files are written to a temporary file and renamed (``os.replace``, by
:func:`pam_tf.io.write_text`), so a reader never sees half a CSV.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from android_bench.errors import ResultsMismatchError
from pam_tf import io

RESULTS_FILE = "results.jsonl"
META_FILE = "meta.json"
SCHEMA_VERSION = 1

#: meta.json entries that must match for a rerun to reuse a results folder.
MATCH_KEYS = ("target", "device_serial", "runtime", "measurement")

#: Record fields that depend on the wall clock; everything else is reproducible.
CLOCK_FIELD = "clock"


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`pam_tf.io.write_text`; newlines as given,
    so CSV rows keep their ``\r\n``); return the path."""
    path = Path(path)
    io.write_text(path, text, newline="")
    return path


class ResultsLog:
    """Append-only ``results.jsonl``."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / RESULTS_FILE

    def append(self, record: dict[str, Any]) -> None:
        """Append one record and make it durable before returning."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, sort_keys=True, ensure_ascii=False, allow_nan=False, default=_json_default)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> list[dict[str, Any]]:
        """All complete records, in file order (a torn final line is skipped)."""
        if not self.path.exists():
            return []
        records = []
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # torn write at the very end
                line = line.strip()
                if not line:
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return records

    def completed_ids(self) -> set[str]:
        """Run ids with a successful record (failed runs are retried on resume)."""
        return {r["run_id"] for r in self.read() if r.get("status") == "ok"}


def latest_ok(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """run_id -> its last successful record."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.get("status") == "ok":
            out[r["run_id"]] = r
    return out


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def load_meta(out_dir: str | Path) -> dict[str, Any] | None:
    path = Path(out_dir) / META_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())


def check_and_write_meta(out_dir: str | Path, meta: dict[str, Any]) -> None:
    """Refuse to mix sweeps: same target, device, runtime and measurement settings as before.

    Adding threads, delegates, affinities, repeats or models to an existing folder is fine (their
    run ids are new); changing what a run measures would mix incomparable numbers in one summary.
    """
    old = load_meta(out_dir)
    if old is not None:
        for key in MATCH_KEYS:
            if old.get(key) != meta.get(key):
                raise ResultsMismatchError(
                    f"{out_dir} already holds results for {key}={old.get(key)!r}, not {meta.get(key)!r}; "
                    "use another --out folder")
        # The latest manifest wins for the combination summary; per-model rows come from the
        # records themselves, so runs of models dropped from the manifest still show up there.
    text = json.dumps(meta, indent=2, sort_keys=True, default=_json_default) + "\n"
    atomic_write_text(Path(out_dir) / META_FILE, text)
