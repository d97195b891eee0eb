"""Which idle upstream connections a pool keeps, hands out and throws away. Pure: no trio, no sockets.

Per key (one upstream and how it is reached), the idle connections form a stack: ``take`` hands out the most
recently used one, which is the least likely to have been closed by the server's own idle timeout, and the
oldest ones expire first. Every method that drops connections returns them, so the caller closes them; nothing
here knows how.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
C = TypeVar("C")


class IdleSet(Generic[K, C]):
    __slots__ = ("_idle", "_max_per_key", "_timeout")

    def __init__(self, *, max_per_key: int, idle_timeout: float) -> None:
        if max_per_key < 0 or idle_timeout < 0:
            raise ValueError("max_per_key and idle_timeout must be >= 0")
        self._max_per_key = max_per_key
        self._timeout = idle_timeout
        self._idle: dict[K, list[tuple[float, C]]] = {}  # per key: (idle since, conn), oldest first

    def __len__(self) -> int:
        return sum(len(stack) for stack in self._idle.values())

    def __bool__(self) -> bool:
        """Anything idle at all, without counting (a key's stack is removed when it empties)."""
        return bool(self._idle)

    def count(self, key: K) -> int:
        return len(self._idle.get(key, ()))

    def put(self, key: K, conn: C, now: float) -> list[C]:
        """Keep ``conn`` idle under ``key``; returns what no longer fits (the oldest beyond ``max_per_key``)."""
        stack = self._idle.setdefault(key, [])
        stack.append((now, conn))
        over = len(stack) - self._max_per_key
        if over <= 0:
            return []
        dropped = [c for _, c in stack[:over]]
        del stack[:over]
        if not stack:
            del self._idle[key]
        return dropped

    def take(self, key: K, now: float) -> tuple[C | None, list[C]]:
        """The most recently used connection under ``key`` that has not expired (or None), and the expired ones
        found on the way, to be closed."""
        stack = self._idle.get(key)
        if not stack:
            return None, []
        expired = self._expire_stack(stack, now)
        conn = stack.pop()[1] if stack else None
        if not stack:
            del self._idle[key]
        return conn, expired

    def remove(self, key: K, conn: C) -> bool:
        """Forget ``conn`` (it closed while idle); False if it was not idle here."""
        stack = self._idle.get(key)
        if not stack:
            return False
        for i, (_, c) in enumerate(stack):
            if c is conn:
                del stack[i]
                if not stack:
                    del self._idle[key]
                return True
        return False

    def expire(self, now: float) -> list[C]:
        """Every connection idle for longer than the timeout, removed."""
        expired: list[C] = []
        for key in list(self._idle):
            stack = self._idle[key]
            expired += self._expire_stack(stack, now)
            if not stack:
                del self._idle[key]
        return expired

    def next_expiry(self) -> float | None:
        """When the next connection expires (None when nothing is idle)."""
        oldest = [stack[0][0] for stack in self._idle.values() if stack]
        return min(oldest) + self._timeout if oldest else None

    def drop(self, key: K) -> list[C]:
        """Every connection idle under ``key``, removed (its destination is gone)."""
        return [c for _, c in self._idle.pop(key, [])]

    def clear(self) -> list[C]:
        """Everything idle, removed (on shutdown)."""
        every = [c for stack in self._idle.values() for _, c in stack]
        self._idle.clear()
        return every

    def _expire_stack(self, stack: list[tuple[float, C]], now: float) -> list[C]:
        cutoff = now - self._timeout
        n = 0
        while n < len(stack) and stack[n][0] <= cutoff:
            n += 1
        dropped = [c for _, c in stack[:n]]
        del stack[:n]
        return dropped
