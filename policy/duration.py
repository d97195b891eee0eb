"""Duration: a human-written span of time ("250ms", "10s", "5m", "1h") decoded into seconds.

Kept in its own pure module because the policy model, the JSON Schema export and the data plane's flags all
parse the same spelling.
"""

from __future__ import annotations

import re
from typing import Final

_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# One number and one unit; no compound forms ("1h30m") so every value has exactly one spelling.
DURATION_PATTERN: Final = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h)$"
_RE: Final = re.compile(DURATION_PATTERN)


class Duration:
    """An immutable, non-negative span of time. Compares and hashes by its length in seconds."""

    __slots__ = ("_text", "seconds")

    seconds: float
    _text: str

    def __init__(self, seconds: float, text: str | None = None) -> None:
        if seconds < 0:
            raise ValueError("a duration cannot be negative")
        object.__setattr__(self, "seconds", float(seconds))
        object.__setattr__(self, "_text", text if text is not None else _format(seconds))

    @classmethod
    def parse(cls, text: str) -> Duration:
        match = _RE.match(text)
        if match is None:
            raise ValueError(f"invalid duration {text!r}: expected a number and a unit, e.g. 250ms, 10s, 5m, 1h")
        unit = match.group(2)
        return cls(float(text[: -len(unit)]) * _UNITS[unit], text)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Duration is immutable")

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"Duration({self._text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Duration) and other.seconds == self.seconds

    def __hash__(self) -> int:
        return hash(self.seconds)


def _format(seconds: float) -> str:
    for unit, scale in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= scale and (seconds / scale).is_integer():
            return f"{int(seconds / scale)}{unit}"
    millis = seconds * 1000
    return f"{int(millis)}ms" if millis.is_integer() else f"{seconds}s"
