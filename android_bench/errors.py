"""Every fault the harness reports to a user, one class each.

The CLI turns these into one-line messages; tests match the classes and exact messages. All derive
from :class:`BenchError`, except :class:`ManifestError`: that is the one class of the manifest
format (:mod:`pam_tf.manifest_format`), shared with the exporter that writes manifests. Callers
catch "anything the harness understood" in one place with ``except USER_ERRORS`` and let real
bugs (everything else) surface with a traceback.
"""
from __future__ import annotations

from pam_tf.manifest_format import ManifestError


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


class FleetError(BenchError):
    """A request for several phones at once that cannot be honoured (a serial given twice, one
    that cannot name a results folder, a per-phone CPU profile missing)."""


class AdbCommandError(BenchError):
    """An adb command failed for another reason (push failed, timeout, ...)."""


class BinaryNotFoundError(BenchError):
    """The benchmark_model binary given by the user does not exist locally."""


class BinaryNotExecutableError(BenchError):
    """The binary was pushed but the phone cannot run it (wrong ABI, noexec, ...)."""


class RunTimeoutError(BenchError):
    """One benchmark run did not finish within its time limit."""


class LeftoverProcessError(BenchError):
    """A benchmark_model the harness killed is still running on the phone: it would heat the
    phone and take CPU from every later run, so the sweep stops."""


class ReadingError(BenchError):
    """A thermal / CPU clock reading failed. Never stops a sweep: the run record says the
    reading failed (``null`` and ``reading_errors``), which is not the same as a device that
    exposes no zones (``{}``)."""


class MalformedOutputError(BenchError):
    """benchmark_model printed something the parser cannot read timings from."""


class BenchmarkFailedError(BenchError):
    """benchmark_model ran and reported its own failure (e.g. "Benchmarking failed.")."""


class PlanError(BenchError):
    """Bad run-plan settings (unknown delegate, unknown core group, ...).

    The plan of a benchmark sweep (:mod:`android_bench.plan`); not :class:`pam_tf.plan.PlanError`,
    which is about merge plans."""


class ResultsMismatchError(BenchError):
    """The results folder already holds a sweep of another device or target."""


class HostModeError(BenchError):
    """A host-mode request that cannot be honoured (e.g. GPU delegate on the host)."""


#: What the harness understands and reports in one line (ManifestError: the manifest or models
#: folder is unusable).
USER_ERRORS: tuple[type[Exception], ...] = (BenchError, ManifestError)
