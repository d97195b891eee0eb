"""msgspec hooks for the policy's custom types (only ``Duration`` today), in one place.

Pure: no I/O. ``load`` decodes with ``dec_hook``, ``encode_policy`` and the schema/doc exports encode with
``enc_hook``, and the shape checker calls ``decode_custom`` so its messages and msgspec's acceptance agree.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Final

from policy.duration import Duration
from policy.problems import show_kind

DURATION_HINT: Final = "a duration such as 250ms, 10s, 5m or 1h"
# Largest to smallest: the first unit that spells the value exactly is the canonical one.
_CANONICAL_UNITS: Final = (("h", 3600.0), ("m", 60.0), ("s", 1.0), ("ms", 0.001))
_COMPOUND: Final = re.compile(r"^([0-9.]+(ms|s|m|h)){2,}$")


def enc_hook(value: object) -> object:
    """msgspec ``enc_hook``: Durations encode as their canonical text."""
    if isinstance(value, Duration):
        return duration_text(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__} in a policy")


def dec_hook(tp: type, value: object) -> object:
    """msgspec ``dec_hook``: the inverse of ``enc_hook``."""
    return decode_custom(tp, value)


def decode_custom(tp: type, value: object) -> object:
    """Build custom type ``tp`` from a decoded value; ValueError with an operator's message if it cannot."""
    if tp is Duration:
        return decode_duration(value)
    raise NotImplementedError(f"policy fields of type {tp.__name__} are not supported")


def describe_custom(tp: type) -> str:
    """What a value of custom type ``tp`` must look like, for "expected ..." messages and docs."""
    if tp is Duration:
        return DURATION_HINT
    raise NotImplementedError(f"policy fields of type {tp.__name__} are not supported")


def decode_duration(value: object) -> Duration:
    """A Duration from its text; ValueError naming the value and the expected spelling otherwise."""
    # ValueError, not TypeError, for every bad value: msgspec turns a dec_hook's ValueError into a
    # ValidationError, and the shape check reports exactly these messages.
    if not isinstance(value, str):
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(f"expected {DURATION_HINT}, got {value} (a number without a unit)")  # noqa: TRY004
        raise ValueError(f"expected {DURATION_HINT}, got {show_kind(value)}")  # noqa: TRY004
    try:
        duration = Duration.parse(value)
    except ValueError:
        raise ValueError(f"expected {DURATION_HINT}, got {value!r}{_duration_hint(value)}") from None
    if not math.isfinite(duration.seconds):
        raise ValueError(f"duration {value!r} is too large")
    return duration


def duration_text(duration: Duration) -> str:
    """The one canonical spelling of a duration, so equal policies encode to equal bytes.

    Durations compare by seconds, so "10000ms" and "10s" are equal; the canonical text uses the largest unit
    that spells the value exactly, and falls back to exact decimal seconds (never exponent notation, which
    the duration pattern does not accept).
    """
    if not math.isfinite(duration.seconds):
        raise ValueError(f"cannot encode an infinite duration ({duration!r})")
    for unit, scale in _CANONICAL_UNITS:
        count = duration.seconds / scale
        if count.is_integer():
            text = f"{int(count)}{unit}"
            if Duration.parse(text) == duration:
                return text
    # repr() round-trips a float and Decimal expands it without an exponent.
    return f"{Decimal(repr(duration.seconds)):f}s"


def _duration_hint(text: str) -> str:
    if text.strip() != text or " " in text:
        return " (remove the spaces)"
    if text != text.lower():
        return " (units are lowercase)"
    if _COMPOUND.match(text):
        return " (use a single unit, e.g. 90m instead of 1h30m)"
    if text.startswith("-"):
        return " (durations cannot be negative)"
    if re.fullmatch(r"[0-9.]+", text):
        return " (add a unit)"
    return ""
