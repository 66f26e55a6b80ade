"""Thermal-zone temperatures and CPU clock speeds, read from sysfs on the phone or the host.

Why record them: phones throttle. A latency that drifts up over a sweep is explained (or ruled
out) by the temperatures and ``scaling_cur_freq`` values read right before and after each run.

On the phone everything is read with one ``grep -H . FILES...`` call (toybox grep), which prints
``path:value`` per readable file, so unreadable zones (common on user builds) just go missing
instead of shifting the other values.
"""
from __future__ import annotations

import glob
import re
from pathlib import Path

THERMAL_TEMP_GLOB = "/sys/class/thermal/thermal_zone*/temp"
THERMAL_TYPE_GLOB = "/sys/class/thermal/thermal_zone*/type"
CPUFREQ_GLOB = "/sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq"

#: Device shell command for one snapshot. Globs are constants and must stay unquoted so the
#: device shell expands them.
SNAPSHOT_COMMAND = f"grep -H . {THERMAL_TEMP_GLOB} {CPUFREQ_GLOB}"
ZONE_TYPES_COMMAND = f"grep -H . {THERMAL_TYPE_GLOB}"

_ZONE_RE = re.compile(r"/(thermal_zone\d+)/(temp|type)$")
_CPU_RE = re.compile(r"/(cpu\d+)/cpufreq/scaling_cur_freq$")


def parse_grep_listing(text: str) -> dict[str, str]:
    """``path:value`` lines -> {path: value}; error lines from grep are ignored."""
    values: dict[str, str] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.startswith("/") or ":" not in line:
            continue
        path, _, value = line.partition(":")
        values[path.strip()] = value.strip()
    return values


def to_celsius(raw: str) -> float | None:
    """sysfs temperatures are usually millidegrees; a few drivers report whole degrees."""
    try:
        value = float(raw)
    except ValueError:
        return None
    return value / 1000.0 if abs(value) >= 1000 else value


def _zone_sort_key(name: str) -> tuple[int, str]:
    digits = re.findall(r"\d+", name)
    return (int(digits[-1]) if digits else 0, name)


def split_snapshot(values: dict[str, str]) -> tuple[dict[str, float], dict[str, int]]:
    """Split a listing into ({thermal_zoneN: °C}, {cpuN: kHz})."""
    temps: dict[str, float] = {}
    freqs: dict[str, int] = {}
    for path, raw in values.items():
        if (m := _ZONE_RE.search(path)) and m.group(2) == "temp":
            c = to_celsius(raw)
            if c is not None:
                temps[m.group(1)] = c
        elif m := _CPU_RE.search(path):
            try:
                freqs[m.group(1)] = int(raw)
            except ValueError:
                pass
    return (dict(sorted(temps.items(), key=lambda kv: _zone_sort_key(kv[0]))),
            dict(sorted(freqs.items(), key=lambda kv: _zone_sort_key(kv[0]))))


def zone_types(values: dict[str, str]) -> dict[str, str]:
    """{thermal_zoneN: type} from a listing of the ``type`` files."""
    out = {}
    for path, raw in values.items():
        if (m := _ZONE_RE.search(path)) and m.group(2) == "type":
            out[m.group(1)] = raw
    return dict(sorted(out.items(), key=lambda kv: _zone_sort_key(kv[0])))


def plausible(temp_c: float) -> bool:
    """Disabled sensors report -273 °C or absurd values; never wait on those."""
    return -20.0 < temp_c < 150.0


def hottest(temps: dict[str, float], types: dict[str, str] | None = None,
            zone_regex: str | None = None) -> float | None:
    """Highest plausible temperature, optionally only over zones whose type matches a regex."""
    pattern = re.compile(zone_regex) if zone_regex else None
    chosen = [t for z, t in temps.items() if plausible(t)
              and (pattern is None or pattern.search((types or {}).get(z, z)))]
    return max(chosen) if chosen else None


def read_local(patterns: tuple[str, ...] = (THERMAL_TEMP_GLOB, CPUFREQ_GLOB),
               root: str | Path = "/") -> dict[str, str]:
    """The same listing as :data:`SNAPSHOT_COMMAND`, read on this machine (host mode)."""
    values: dict[str, str] = {}
    root = Path(root)
    for pattern in patterns:
        for path in sorted(glob.glob(str(root / pattern.lstrip("/")))):
            try:
                values["/" + str(Path(path).relative_to(root))] = Path(path).read_text().strip()
            except OSError:
                continue
    return values
