"""A thin, testable layer over the real ``adb`` client.

Why a layer and not ``subprocess`` calls scattered around: every device interaction needs the same
three things done right, once:

* ``-s SERIAL`` on every call, so a second phone plugged in mid-sweep changes nothing;
* shell quoting: ``adb shell`` joins its arguments with spaces and hands the string to the
  phone's ``/system/bin/sh``, so any argument built from a file name must go through
  :func:`shlex.quote` (:func:`quote_command`) or a name with a space or quote breaks the command;
* timeouts and error mapping: adb's own ``error: ...`` / ``adb: ...`` lines become specific exceptions
  (:class:`DeviceDisconnectedError`, :class:`UnauthorizedDeviceError`, ...), a hung command is
  killed (its whole process group) after ``timeout`` seconds.

``push``/``pull`` use adb's sync protocol, not the shell, so their paths are passed unquoted.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from android_bench.errors import (AdbCommandError, AdbNotFoundError, DeviceDisconnectedError,
                                  DeviceStateError, MultipleDevicesError, NoDeviceError,
                                  UnauthorizedDeviceError)

DEFAULT_TIMEOUT_S = 120.0

# adb's own device errors, in every wording seen: ``error: X`` (older clients, and the server's
# replies), ``adb: error: X``, ``adb: error: failed to get feature set: X`` (push/pull of
# platform-tools 29) and ``adb: X`` (current platform-tools: ``adb: no devices/emulators found``,
# ``adb: device 'X' not found``, ``adb: device unauthorized.``, ``adb: device offline``). Lower
# case only: benchmark_model's own lines are ``ERROR: ...``.
_ADB_PREFIX = r"^(?:adb: (?:error: )?|error: )(?:failed to get feature set: )?"
_DISCONNECT_RES = tuple(re.compile(_ADB_PREFIX + body) for body in (
    r"device '[^']*' not found",
    r"device not found",
    r"no devices/emulators found",
    r"device offline",
    r"device still connecting",
    r"closed",
    r"protocol fault",
))
_UNAUTHORIZED_RE = re.compile(_ADB_PREFIX + r"device unauthorized")


@dataclass(frozen=True)
class DeviceEntry:
    """One line of ``adb devices -l``."""

    serial: str
    state: str  # "device", "unauthorized", "offline", "no permissions", ...
    attrs: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def describe(self) -> str:
        model = self.attrs.get("model")
        return f"{self.serial} ({self.state}{', ' + model if model else ''})"


@dataclass
class CommandResult:
    """What one adb invocation returned (text decoded, CRLF normalised)."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def quote_command(argv: Sequence[str]) -> str:
    """Join ``argv`` into one device-shell command line, each word safely quoted."""
    return " ".join(shlex.quote(str(a)) for a in argv)


def parse_devices(text: str) -> list[DeviceEntry]:
    """Parse ``adb devices [-l]`` output.

    Lines look like ``SERIAL<TAB>device`` or, with ``-l``,
    ``SERIAL   device usb:1-1 product:x model:Pixel_7 device:panther transport_id:2``. Daemon
    start-up chatter (``* daemon ...``) and the header are skipped.
    """
    devices: list[DeviceEntry] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        line = line.strip()
        if not line or line.startswith("*") or line.startswith("List of devices"):
            continue
        parts = line.split()
        if len(parts) < 2:
            continue
        serial, rest = parts[0], parts[1:]
        if rest[0] == "no" and len(rest) > 1 and rest[1].startswith("permissions"):
            state = "no permissions"
            rest = [p for p in rest[2:] if ":" in p and not p.startswith("(")]
        else:
            state, rest = rest[0], rest[1:]
        attrs = dict(p.split(":", 1) for p in rest if ":" in p)
        devices.append(DeviceEntry(serial, state, attrs))
    return devices


def _unauthorized_message(serial: str) -> str:
    return (f"device {serial} is unauthorized: unlock the phone and accept the 'Allow USB debugging?' "
            "RSA key prompt (tick 'Always allow from this computer'), then run again")


def select_device(devices: Sequence[DeviceEntry], serial: str | None = None) -> DeviceEntry:
    """Pick the phone to use, or raise an error that tells the user what to do."""
    if serial:
        match = [d for d in devices if d.serial == serial]
        if not match:
            listed = ", ".join(d.describe() for d in devices) or "none"
            raise DeviceDisconnectedError(f"device {serial} not found; connected devices: {listed}")
        chosen = match[0]
    else:
        if not devices:
            raise NoDeviceError(
                "no Android device found: connect a phone with USB debugging enabled "
                "(Settings > Developer options) and check that `adb devices` lists it")
        if len(devices) > 1:
            listed = ", ".join(d.describe() for d in devices)
            raise MultipleDevicesError(
                f"{len(devices)} devices connected: {listed}; choose one with --serial SERIAL")
        chosen = devices[0]
    if chosen.state == "unauthorized":
        raise UnauthorizedDeviceError(_unauthorized_message(chosen.serial))
    if chosen.state != "device":
        raise DeviceStateError(
            f"device {chosen.serial} is '{chosen.state}', not ready: reconnect the cable, or run "
            "`adb kill-server` and try again")
    return chosen


def parse_getprop(text: str) -> dict[str, str]:
    """Parse the ``[key]: [value]`` listing printed by ``getprop`` without arguments."""
    props: dict[str, str] = {}
    for m in re.finditer(r"^\[([^\]]+)\]: \[(.*)\]\s*$", text.replace("\r\n", "\n"), re.MULTILINE):
        props[m.group(1)] = m.group(2)
    return props


def facts_from_props(props: dict[str, str]) -> dict[str, str]:
    """The device facts a benchmark report needs, with SoC fallbacks for older Android versions."""
    soc = props.get("ro.soc.model") or props.get("ro.board.platform") or props.get("ro.hardware") or ""
    return {
        "model": props.get("ro.product.model", ""),
        "manufacturer": props.get("ro.product.manufacturer", ""),
        "soc": soc,
        "soc_manufacturer": props.get("ro.soc.manufacturer", ""),
        "board_platform": props.get("ro.board.platform", ""),
        "hardware": props.get("ro.hardware", ""),
        "android_release": props.get("ro.build.version.release", ""),
        "sdk": props.get("ro.build.version.sdk", ""),
        "abi": props.get("ro.product.cpu.abi", ""),
        "abilist": props.get("ro.product.cpu.abilist", ""),
        "build_fingerprint": props.get("ro.build.fingerprint", ""),
    }


class Adb:
    """One adb client bound (optionally) to one device serial."""

    def __init__(self, adb_path: str = "adb", serial: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.adb_path = adb_path
        self.serial = serial
        self.timeout = timeout

    # -- low level -----------------------------------------------------------------------------
    def run(self, args: Sequence[str], timeout: float | None = None, merge_stderr: bool = False,
            check_device: bool = True) -> CommandResult:
        """Run ``adb [-s SERIAL] ARGS`` with a timeout; map adb's device errors to exceptions.

        On timeout the whole process group is killed and :class:`subprocess.TimeoutExpired` is
        re-raised with whatever output arrived, so the caller can say which command hung.
        """
        argv = [self.adb_path] + (["-s", self.serial] if self.serial else []) + [str(a) for a in args]
        limit = self.timeout if timeout is None else timeout
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                                    start_new_session=True)
        except FileNotFoundError:
            raise AdbNotFoundError(
                f"adb not found ({self.adb_path!r}): install Android platform-tools (Debian/Ubuntu: "
                "`apt-get install adb`) or pass --adb /path/to/adb") from None
        except PermissionError:
            raise AdbNotFoundError(f"adb at {self.adb_path!r} is not executable") from None
        try:
            out, err = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
            raise subprocess.TimeoutExpired(argv, limit, output=_decode(out) + _decode(err)) from None
        result = CommandResult(argv, proc.returncode, _decode(out), _decode(err))
        if check_device:
            self._raise_for_device_error(result)
        return result

    def _raise_for_device_error(self, result: CommandResult) -> None:
        # adb's own errors are lower-case "error: ..." / "adb: ..." lines (see _ADB_PREFIX).
        for line in result.output.split("\n"):
            line = line.strip()
            if _UNAUTHORIZED_RE.match(line):
                raise UnauthorizedDeviceError(_unauthorized_message(self.serial or "(default)"))
            if any(r.match(line) for r in _DISCONNECT_RES):
                raise DeviceDisconnectedError(f"device {self.serial or '(default)'} disconnected: {line}")

    def _checked(self, args: Sequence[str], what: str, timeout: float | None = None) -> CommandResult:
        try:
            result = self.run(args, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise AdbCommandError(f"{what} timed out after {e.timeout:g} s") from None
        if result.returncode != 0:
            msg = (result.stderr.strip() or result.stdout.strip() or f"exit code {result.returncode}")
            raise AdbCommandError(f"{what} failed: {msg.splitlines()[-1]}")
        return result

    # -- device list ---------------------------------------------------------------------------
    def devices(self) -> list[DeviceEntry]:
        """All devices adb knows, in any state (uses ``adb devices -l``, never ``-s``)."""
        unbound = Adb(self.adb_path, None, self.timeout)
        result = unbound._checked(["devices", "-l"], "adb devices")
        return parse_devices(result.stdout)

    def get_state(self) -> str:
        """``device`` when the bound phone is usable; raises when it is gone."""
        result = self.run(["get-state"], timeout=30)
        if result.returncode != 0:
            raise DeviceDisconnectedError(
                f"device {self.serial} disconnected: {result.output.strip() or 'get-state failed'}")
        return result.stdout.strip()

    # -- shell, files --------------------------------------------------------------------------
    def shell(self, command: str | Sequence[str], timeout: float | None = None,
              merge_stderr: bool = False) -> CommandResult:
        """Run a command in the device shell.

        A sequence is quoted word by word (the safe default); a string is sent as written, for the
        few fixed commands that need the device shell to expand a glob.
        """
        line = command if isinstance(command, str) else quote_command(command)
        return self.run(["shell", line], timeout=timeout, merge_stderr=merge_stderr)

    def push(self, local: str | os.PathLike[str], remote: str, timeout: float | None = None) -> None:
        if not Path(local).is_file():
            raise AdbCommandError(f"cannot push {local}: no such file")
        self._checked(["push", str(local), remote], f"adb push {Path(local).name}", timeout)

    def pull(self, remote: str, local: str | os.PathLike[str], timeout: float | None = None) -> None:
        self._checked(["pull", remote, str(local)], f"adb pull {remote}", timeout)

    def mkdir(self, remote_dir: str) -> None:
        result = self.shell(["mkdir", "-p", remote_dir], timeout=60)
        if result.returncode != 0:
            raise AdbCommandError(f"mkdir {remote_dir} on the device failed: {result.output.strip()}")

    def chmod_executable(self, remote: str) -> None:
        result = self.shell(["chmod", "755", remote], timeout=60)
        if result.returncode != 0:
            raise AdbCommandError(f"chmod 755 {remote} on the device failed: {result.output.strip()}")

    def remove(self, remote: str) -> None:
        self.shell(["rm", "-rf", remote], timeout=60)

    def getprops(self) -> dict[str, str]:
        return parse_getprop(self._checked(["shell", "getprop"], "getprop", 60).stdout)

    def device_facts(self) -> dict[str, str]:
        facts = facts_from_props(self.getprops())
        facts["serial"] = self.serial or ""
        return facts


def connect(adb_path: str = "adb", serial: str | None = None,
            timeout: float = DEFAULT_TIMEOUT_S) -> Adb:
    """List devices, choose one (see :func:`select_device`) and return an Adb bound to it."""
    chosen = select_device(Adb(adb_path, None, timeout).devices(), serial)
    return Adb(adb_path, chosen.serial, timeout)


def _decode(data: bytes | None) -> str:
    if not data:
        return ""
    return data.decode("utf-8", errors="replace").replace("\r\n", "\n")
