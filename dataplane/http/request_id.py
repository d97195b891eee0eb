"""Cheap unique request ids (pure).

uuid4() reads os.urandom per call (a syscall per request); a per-process random prefix and a counter give the
same uniqueness across processes and restarts for the cost of a string format.
"""

from __future__ import annotations

import itertools
import os


class RequestIds:
    """Ids shaped like a UUID (8-4-4-4-12 hex): 64 random bits per process, then a 64-bit counter."""

    __slots__ = ("_counter", "_prefix")

    def __init__(self, prefix: bytes | None = None) -> None:
        raw = os.urandom(8).hex().encode() if prefix is None else prefix
        if len(raw) != 16 or raw.strip(b"0123456789abcdef"):
            raise ValueError(f"request id prefix must be 16 lowercase hex digits, got {raw!r}")
        self._prefix = b"%s-%s-%s-" % (raw[:8], raw[8:12], raw[12:16])
        self._counter = itertools.count(1)

    def next(self) -> bytes:
        n = next(self._counter)
        return b"%s%04x-%012x" % (self._prefix, (n >> 48) & 0xFFFF, n & 0xFFFFFFFFFFFF)
