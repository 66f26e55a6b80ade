"""Test-side helpers for the fake adb: install it in a temp folder, switch faults, inspect calls.

Tests load this file by path (``tests/`` is not a package) - see ``_load_fakeadb`` in the tests.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "fake_adb.py"

DEFAULT_PROPS = {
    "ro.product.model": "Pixel 7",
    "ro.product.manufacturer": "Google",
    "ro.product.name": "panther",
    "ro.product.device": "panther",
    "ro.board.platform": "gs201",
    "ro.hardware": "panther",
    "ro.soc.model": "GS201",
    "ro.soc.manufacturer": "Google",
    "ro.build.version.release": "14",
    "ro.build.version.sdk": "34",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
    "ro.build.fingerprint": "google/panther/panther:14/UQ1A.240205.002/11224170:user/release-keys",
}


def device(serial: str = "FAKE0001", state: str = "device", **extra: Any) -> dict[str, Any]:
    d = {"serial": serial, "state": state, "props": dict(DEFAULT_PROPS)}
    d.update(extra)
    return d


def fake_module() -> Any:
    """The fake adb script as a module (for its timing formula)."""
    spec = importlib.util.spec_from_file_location("fake_adb_script", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _python_for_fake() -> str:
    """A plain interpreter, started with -S: the fake must not rely on the venv (and a pyenv shim
    would add ~0.3 s per adb call)."""
    for candidate in ("/usr/bin/python3", "/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    return sys.executable


@dataclass
class FakeAdb:
    adb: Path  # executable to pass as --adb / adb_path
    state: Path

    @property
    def config_path(self) -> Path:
        return self.state / "config.json"

    def config(self) -> dict[str, Any]:
        return json.loads(self.config_path.read_text())

    def write_config(self, cfg: dict[str, Any]) -> None:
        self.config_path.write_text(json.dumps(cfg, indent=2))

    def set_faults(self, **faults: Any) -> None:
        cfg = self.config()
        cfg["faults"] = faults
        self.write_config(cfg)

    def set_device_faults(self, serial: str, **faults: Any) -> None:
        """Faults of one phone only (they replace the global ones for it), e.g. one of two
        phones that disconnects mid-sweep."""
        cfg = self.config()
        next(d for d in cfg["devices"] if d["serial"] == serial)["faults"] = faults
        self.write_config(cfg)

    def reconnect(self) -> None:
        """Plug the phones back in: clear 'gone' and the faults (global and per phone)."""
        cfg = self.config()
        for d in cfg["devices"]:
            d["gone"] = False
            d.pop("faults", None)
        cfg["faults"] = {}
        self.write_config(cfg)

    def calls(self) -> list[list[str]]:
        path = self.state / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def fs(self, serial: str = "FAKE0001") -> Path:
        return self.state / "devices" / serial

    def procs(self, serial: str = "FAKE0001") -> list[dict[str, Any]]:
        """The phone's process table: benchmark runs that hung and were not killed on it."""
        return next(d.get("procs", []) for d in self.config()["devices"] if d["serial"] == serial)

    def runs(self, serial: str = "FAKE0001") -> int:
        return next(d.get("runs", 0) for d in self.config()["devices"] if d["serial"] == serial)


def install(tmp_path: Path, devices: list[dict[str, Any]] | None = None, **options: Any) -> FakeAdb:
    """Copy the fake into ``tmp_path/bin/adb`` (a shell wrapper + the script) with a fresh state."""
    bin_dir = tmp_path / "bin"
    state = tmp_path / "adb_state"
    bin_dir.mkdir(parents=True, exist_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "fake_adb.py"
    shutil.copyfile(SCRIPT, script)
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    wrapper = bin_dir / "adb"
    wrapper.write_text("#!/bin/sh\n"
                       f'FAKE_ADB_STATE="${{FAKE_ADB_STATE:-{state}}}"\nexport FAKE_ADB_STATE\n'
                       # Import rather than run the script, so its compiled .pyc is cached between calls.
                       f'exec "{_python_for_fake()}" -S -c "import sys; sys.path.insert(0, \'{bin_dir}\'); '
                       f'import fake_adb; sys.exit(fake_adb.main(sys.argv[1:]))" "$@"\n')
    wrapper.chmod(0o755)
    cfg = {"devices": copy.deepcopy(devices if devices is not None else [device()]), "faults": {}}
    cfg.update(options)
    fake = FakeAdb(adb=wrapper, state=state)
    fake.write_config(cfg)
    return fake


def fake_models_dir(tmp_path: Path, sizes: dict[str, int] | None = None) -> Path:
    """A folder of stand-in .tflite files (distinct bytes, given sizes) for the harness's tests:
    the fake device never parses them."""
    d = tmp_path / "models"
    d.mkdir()
    sizes = sizes or {"a.tflite": 8000, "b.tflite": 8000, "c.tflite": 8000}
    for i, (name, size) in enumerate(sizes.items()):
        (d / name).write_bytes(bytes([i + 1]) * size)
    return d


def fake_benchmark_binary(tmp_path: Path, name: str = "benchmark_model") -> Path:
    """A local 'benchmark_model' the fake phone accepts as executable."""
    path = tmp_path / name
    path.write_bytes(b"#!fake-benchmark_model\nstand-in for the TFLite benchmark tool\n")
    return path
