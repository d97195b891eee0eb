"""The ``grpc-timeout`` header (gRPC over HTTP/2: TimeoutValue TimeoutUnit, at most 8 digits)."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Final

# Unit letter -> seconds per unit, finest first (format tries them in this order).
_UNITS: Final = (
    ("n", Fraction(1, 10**9)),
    ("u", Fraction(1, 10**6)),
    ("m", Fraction(1, 10**3)),
    ("S", Fraction(1)),
    ("M", Fraction(60)),
    ("H", Fraction(3600)),
)
_SECONDS: Final = dict(_UNITS)
_MAX_VALUE: Final = 99_999_999  # 8 digits, the most the header may carry


def parse_grpc_timeout(value: bytes | str) -> float | None:
    """Seconds, or None for anything malformed (gRPC ignores a bad grpc-timeout rather than failing the call)."""
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    digits, unit = value[:-1], value[-1:]
    if not 1 <= len(digits) <= 8 or not (digits.isascii() and digits.isdigit()) or unit not in _SECONDS:
        return None
    return float(int(digits) * _SECONDS[unit])


def format_grpc_timeout(seconds: float) -> bytes:
    """The shortest exact spelling with at most 8 digits; when none is exact, the finest one rounded up (a
    deadline passed on may grow by a unit, never shrink). Never 0: at least 1n; at most 99999999H."""
    if math.isnan(seconds):
        raise ValueError("grpc-timeout: seconds is NaN")
    if seconds <= 0:
        return b"1n"
    if math.isinf(seconds):
        return f"{_MAX_VALUE}H".encode()
    # Whole nanoseconds, rounded up, except that a float within its own error of a whole number (94.025 is
    # 94.02500000000000568 as a float) counts as that number.
    exact_nanos = Fraction(seconds) * 10**9
    nearest = round(exact_nanos)
    close = abs(exact_nanos - nearest) <= exact_nanos * Fraction(1, 10**12)
    nanos = max(1, nearest if close else math.ceil(exact_nanos))
    exact = [
        (len(str(count)), f"{count}{unit}")
        for unit, per in _UNITS
        if (count := Fraction(nanos, 10**9) / per).denominator == 1 and count <= _MAX_VALUE
    ]
    if exact:
        return min(exact)[1].encode()
    for unit, per in _UNITS:
        rounded_up = math.ceil(Fraction(nanos, 10**9) / per)
        if rounded_up <= _MAX_VALUE:
            return f"{rounded_up}{unit}".encode()
    return f"{_MAX_VALUE}H".encode()
