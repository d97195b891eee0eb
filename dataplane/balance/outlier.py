"""Passive health: consecutive failures eject an endpoint for a time that doubles with each ejection until it
succeeds again, and at most a share of a service's endpoints is ejected at once."""

from __future__ import annotations


class Health:
    """One endpoint's passive health (consecutive failures with growing ejections)."""

    __slots__ = (
        "_backoff",
        "_failures",
        "base_ejection",
        "consecutive_failures",
        "ejected_until",
        "ejections",
        "max_ejection",
    )

    def __init__(self, consecutive_failures: int, base_ejection: float, max_ejection: float) -> None:
        if consecutive_failures < 1:
            raise ValueError("consecutive_failures must be >= 1")
        if base_ejection < 0 or max_ejection < base_ejection:
            raise ValueError("base_ejection must be >= 0 and max_ejection >= base_ejection")
        self.consecutive_failures = consecutive_failures
        self.base_ejection = base_ejection
        self.max_ejection = max_ejection
        self.ejected_until: float | None = None
        self.ejections = 0
        """Ejections in total (for metrics)."""
        self._failures = 0
        self._backoff = 0  # ejections since the last success: the next one lasts base * 2**_backoff

    def success(self) -> None:
        """Resets the failure count and the back-off exponent (an ejection under way runs to its end)."""
        self._failures = 0
        self._backoff = 0

    def failure(self, now: float, may_eject: bool) -> bool:
        """Counts a failure; True when it ejects the endpoint now. ``may_eject`` is False when the service already
        has as many endpoints ejected as it may: the failure still counts, so the next one may eject."""
        if self.ejected(now):
            return False  # a request sent before the ejection: the endpoint is already out
        self._failures = min(self._failures + 1, self.consecutive_failures)
        if self._failures < self.consecutive_failures or not may_eject:
            return False
        self.ejected_until = now + min(self.base_ejection * 2.0**self._backoff, self.max_ejection)
        self._backoff = min(self._backoff + 1, 64)  # 2**64 * base is past any max_ejection
        self.ejections += 1
        # Back on probation when the ejection ends: one more failure ejects it again, for twice as long.
        self._failures = self.consecutive_failures - 1
        return True

    def ejected(self, now: float) -> bool:
        return self.ejected_until is not None and now < self.ejected_until


def max_ejected(total: int, percent: int) -> int:
    """How many of ``total`` endpoints may be ejected at once: ``percent`` of them, rounded down, but at least one
    when ``percent`` > 0 and there are two or more, and never all of them unless ``percent`` is 100."""
    if percent >= 100:
        return total
    allowed = total * percent // 100
    if percent > 0 and total >= 2:
        allowed = max(allowed, 1)
    return max(0, min(allowed, total - 1))
