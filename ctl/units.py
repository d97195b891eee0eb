"""Humane units for tables: byte counts in B/KiB/MiB/GiB and spans of time like 350ms, 12s, 3m4s, 2h5m."""

from __future__ import annotations

import math
from typing import Final

_BYTE_UNITS: Final = ("KiB", "MiB", "GiB", "TiB", "PiB")
# Each span unit with its length in seconds, largest first; a span shows its two most significant units.
_SPAN_UNITS: Final = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def format_bytes(count: int) -> str:
    """512 B, 1.5 KiB, 12 KiB, 340 MiB: one decimal below 10 so small changes stay visible."""
    if count < 0:
        raise ValueError("a byte count cannot be negative")
    if count < 1024:
        return f"{count} B"
    value = float(count)
    for unit in _BYTE_UNITS:
        value /= 1024
        # 1023.7 KiB would print as "1024 KiB": move to the next unit before rounding gets there.
        if value < 1023.5 or unit == _BYTE_UNITS[-1]:
            return f"{value:.1f} {unit}" if value < 9.95 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable: the loop returns on its last unit")


def format_duration(seconds: float) -> str:
    """350ms below a second, 4.2s below ten, then two whole units: 12s, 3m4s, 2h5m, 3d4h (rounded down)."""
    if math.isnan(seconds):
        return "-"
    if seconds < 0:
        # Clock skew between the proxy and meshctl; a tiny negative age is "just now".
        seconds = 0.0
    # Rounded, not truncated, below ten seconds: Unix times near 1.7e9 carry only ~0.2 us of precision, so
    # a difference of two of them that should be 0.35 can come out as 0.34999.
    millis = round(seconds * 1000)
    if millis < 1000:
        return f"{millis}ms"
    if seconds < 10:
        tenths = max(10, math.floor(seconds * 10 + 1e-6))  # 0.9996 rounded up to a second: "1.0s"
        return f"{tenths / 10:.1f}s"
    whole = int(seconds)
    for index, (unit, size) in enumerate(_SPAN_UNITS):
        if whole >= size:
            text = f"{whole // size}{unit}"
            if index + 1 < len(_SPAN_UNITS):
                minor_unit, minor_size = _SPAN_UNITS[index + 1]
                minor = (whole % size) // minor_size
                if minor:
                    text += f"{minor}{minor_unit}"
            return text
    raise AssertionError("unreachable: whole >= 10 matches the seconds unit")
