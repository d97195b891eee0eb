"""The retry budget of one service (Finagle's and Linkerd's TpsBudget): retries may add a share of the original
requests plus a small floor per second, so an outage never turns into a retry storm.

Requests and retries are counted in fixed time buckets (a tenth of ``ttl`` wide), so memory stays constant
under any request rate; the window is the current bucket and the ones before it, ``ttl`` in all.
"""

from __future__ import annotations

import math
from typing import Final

_BUCKETS: Final = 10  # the window's resolution: counts expire in steps of ttl/10


class RetryBudget:
    """Finagle/Linkerd TpsBudget: ratio of original requests plus a per-second floor over ttl."""

    __slots__ = ("_epochs", "_requests", "_retries", "_width", "min_per_second", "ratio", "ttl")

    def __init__(self, ratio: float, min_per_second: int, ttl: float) -> None:
        if ratio < 0 or min_per_second < 0 or ttl <= 0:
            raise ValueError("ratio and min_per_second must be >= 0 and ttl > 0")
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.ttl = ttl
        self._width = ttl / _BUCKETS
        self._epochs = [-1] * _BUCKETS  # which bucket-width interval each slot currently counts
        self._requests = [0] * _BUCKETS
        self._retries = [0] * _BUCKETS

    def _slot(self, now: float) -> int:
        """The current bucket's slot, cleared when it held an interval that has expired."""
        epoch = math.floor(now / self._width)
        slot = epoch % _BUCKETS
        if self._epochs[slot] != epoch:
            self._epochs[slot] = epoch
            self._requests[slot] = 0
            self._retries[slot] = 0
        return slot

    def _live(self, now: float) -> list[int]:
        oldest = math.floor(now / self._width) - _BUCKETS + 1
        return [slot for slot, epoch in enumerate(self._epochs) if epoch >= oldest]

    def deposit(self, now: float) -> None:
        """One original request."""
        self._requests[self._slot(now)] += 1

    def withdraw(self, now: float) -> bool:
        """One retry: True (and counted) when the budget allows it."""
        slot = self._slot(now)
        live = self._live(now)
        requests = sum(self._requests[s] for s in live)
        retries = sum(self._retries[s] for s in live)
        if retries >= self.min_per_second * self.ttl + self.ratio * requests:
            return False
        self._retries[slot] += 1
        return True
