"""Every fault the harness reports to a user, one class each.

The CLI turns these into one-line messages; tests match the classes and exact messages. All derive
from :class:`BenchError` so callers can catch "anything the harness understood" in one place and
let real bugs (everything else) surface with a traceback.
"""
from __future__ import annotations


class BenchError(Exception):
    """Base class: a problem the harness understood and can explain."""


class AdbNotFoundError(BenchError):
    """The adb client itself is missing."""


class NoDeviceError(BenchError):
    """`adb devices` lists nothing."""


class UnauthorizedDeviceError(BenchError):
    """The phone has not accepted this computer's RSA key yet."""


class DeviceStateError(BenchError):
    """The phone is listed but not usable (offline, no permissions, ...)."""


class MultipleDevicesError(BenchError):
    """Several phones are connected and no --serial picks one."""


class DeviceDisconnectedError(BenchError):
    """The phone went away (unplugged, rebooted) in the middle of a sweep."""


class AdbCommandError(BenchError):
    """An adb command failed for another reason (push failed, timeout, ...)."""


class BinaryNotFoundError(BenchError):
    """The benchmark_model binary given by the user does not exist locally."""


class BinaryNotExecutableError(BenchError):
    """The binary was pushed but the phone cannot run it (wrong ABI, noexec, ...)."""


class RunTimeoutError(BenchError):
    """One benchmark run did not finish within its time limit."""


class MalformedOutputError(BenchError):
    """benchmark_model printed something the parser cannot read timings from."""


class BenchmarkFailedError(BenchError):
    """benchmark_model ran and reported its own failure (e.g. "Benchmarking failed.")."""


class ManifestError(BenchError):
    """The manifest or models folder is unusable."""


class ResultsMismatchError(BenchError):
    """The results folder already holds a sweep of another device or target."""


class HostModeError(BenchError):
    """A host-mode request that cannot be honoured (e.g. GPU delegate on the host)."""
