"""Forgetting metric series nothing has touched for a while, so a proxy that talked to many short-lived
destinations (pods come and go, every one a new ``target_addr``) does not grow its /metrics and its memory
forever. Linkerd's proxy does the same (its metrics retain idle series for 10 minutes by default).

Pure and cheap on the hot path: an event only adds its key to a set; once per half retain period the keys
touched in neither of the last two periods are returned as stale. A series therefore disappears between one
and one and a half retain periods after its last event. Prometheus treats the disappearance like a restart of
that series: ``rate()`` and ``increase()`` stay right.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Final, Generic, TypeVar

K = TypeVar("K", bound=Hashable)

DEFAULT_RETAIN_IDLE: Final = 600.0  # seconds; Linkerd's default


class Retention(Generic[K]):
    __slots__ = ("_previous", "_touched")

    def __init__(self) -> None:
        self._touched: set[K] = set()
        self._previous: set[K] = set()

    def touch(self, key: K) -> None:
        self._touched.add(key)

    def stale(self, known: Iterable[K]) -> list[K]:
        """Of ``known``, the keys touched in neither this period nor the one before; starts a new period.
        Call it once per half retain period."""
        recent = self._touched | self._previous
        stale = [key for key in known if key not in recent]
        self._previous, self._touched = self._touched, set()
        return stale
