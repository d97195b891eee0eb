"""Graceful ends for keep-alive connections when the proxy drains (SIGTERM).

A relayed TCP connection is left to finish; an HTTP connection can do better. When the drain starts, HTTP/1.1
connections waiting for their next request are closed at once (no request is in flight: closing an idle keep-alive
connection is what every server does, and clients retry on a fresh one), one in the middle of an exchange finishes
it with ``Connection: close``, and HTTP/2 connections are sent GOAWAY and close once their streams are done. Each
connection hooks a callback while it is in a state the drain should act on; ``start`` calls them all.
"""

from __future__ import annotations

from collections.abc import Callable


class Drain:
    __slots__ = ("_hooks", "_next", "draining")

    def __init__(self) -> None:
        self.draining = False
        self._hooks: dict[int, Callable[[], None]] = {}
        self._next = 0

    def hook(self, callback: Callable[[], None]) -> int:
        """Call ``callback`` when the drain starts (at once if it has); returns a token for ``unhook``."""
        if self.draining:
            callback()
            return -1
        self._next += 1
        self._hooks[self._next] = callback
        return self._next

    def unhook(self, token: int) -> None:
        self._hooks.pop(token, None)

    def start(self) -> int:
        """Begin draining: every hooked callback runs once. Returns how many there were."""
        self.draining = True
        hooks, self._hooks = list(self._hooks.values()), {}
        for callback in hooks:
            callback()
        return len(hooks)
