"""Forgetting metric series nothing has touched for a while, so a proxy that talked to many short-lived
destinations (pods come and go, every one a new ``target_addr``) does not grow its /metrics and its memory
forever. Linkerd's proxy does the same (its metrics retain idle series for 10 minutes by default).

Nothing on the hot path: a series' own counter says whether it moved. Once per half retain period the counts
are compared with those of two sweeps ago; a key whose count has not changed since is stale. A series therefore
disappears between one and one and a half retain periods after its last event. Prometheus treats the
disappearance like a restart of that series: ``rate()`` and ``increase()`` stay right.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Final, Generic, TypeVar

K = TypeVar("K", bound=Hashable)

DEFAULT_RETAIN_IDLE: Final = 600.0  # seconds; Linkerd's default


class Retention(Generic[K]):
    __slots__ = ("_older", "_previous")

    def __init__(self) -> None:
        self._previous: dict[K, int] = {}  # the counts at the last sweep
        self._older: dict[K, int] = {}  # the counts at the sweep before

    def stale(self, counts: Mapping[K, int]) -> list[K]:
        """Of ``counts`` (a monotonic event count per key), the keys whose count has not moved in this period or
        the one before; starts a new period. Call it once per half retain period."""
        older = self._older
        stale = [key for key, count in counts.items() if older.get(key) == count]
        self._older, self._previous = self._previous, dict(counts)
        return stale
