"""Durations with units for the learner's settings, and the kernel bank of a lag range.

Settings that are times are written with their unit wherever a person types them (CLI,
API): ``500ms``, ``3s``, ``5m``, ``1h``, ``2d`` (or ``0``). A bare number is refused, since
it is the mistake of a log in milliseconds read as seconds.
"""

from __future__ import annotations

import math
import re

UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]+)?\s*$")


def parse_duration(text: str | float, what: str) -> float:
    """Seconds of a duration such as ``3s`` or ``1.5h``; ValueError naming ``what``."""
    raw = str(text)
    match = _DURATION.match(raw)
    if not match:
        raise ValueError(f"{what}: {raw!r} is not a duration (a number with a unit: "
                         f"{', '.join(UNITS)}, e.g. 30s or 5m)")
    number, unit = float(match.group(1)), match.group(2)
    if unit is None:
        if number == 0:
            return 0.0
        raise ValueError(f"{what}: {raw!r} has no unit; write e.g. {raw}s or {raw}ms")
    if unit not in UNITS:
        raise ValueError(f"{what}: unknown unit {unit!r} in {raw!r}; one of {', '.join(UNITS)}")
    return number * UNITS[unit]


def format_duration(seconds: float) -> str:
    """A short text form of ``seconds`` that :func:`parse_duration` reads back."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and math.isclose(seconds / size, round(seconds / size)):
            return f"{round(seconds / size)}{unit}"
    return f"{seconds:g}s" if seconds >= 1 else f"{seconds * 1000:g}ms"


def lag_scales(shortest: float, longest: float, n: int = 4) -> tuple[float, ...]:
    """Decay rates (1/s) of ``n`` exponential kernels whose mean lags are spread evenly on
    a log scale from ``shortest`` to ``longest`` seconds (3 s .. 50 min gives the default
    bank 1/3, 1/30, 1/300, 1/3000)."""
    if not (0 < shortest <= longest) or not math.isfinite(longest):
        raise ValueError(f"lag range: need 0 < shortest <= longest, got {shortest} s .. "
                         f"{longest} s")
    if n < 1:
        raise ValueError(f"lag range: need at least one kernel, got {n}")
    if n == 1 or shortest == longest:
        return (1.0 / math.sqrt(shortest * longest),)
    lags = [shortest * (longest / shortest) ** (k / (n - 1)) for k in range(n)]
    return tuple(1.0 / lag for lag in lags)
