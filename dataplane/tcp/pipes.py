"""A pool of kernel pipes for splice(2): bytes move socket -> pipe -> socket without entering Python.

Pipes are taken only by directions that are moving bulk data right now and given back as soon as they are
empty, so a proxy holding thousands of idle or chatty connections holds no pipes at all: four descriptors per
connection up front would exhaust this machine's 20,000-descriptor limit near 5,000 connections.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import Final

PIPE_SIZE: Final = 1 << 20  # F_SETPIPE_SZ: one splice moves up to this much; also the most held per direction
IDLE_KEPT: Final = 64  # empty pipes kept for reuse; more are closed
MAX_IN_USE: Final = 2048  # pipes lent at once (2 descriptors each); past that, directions copy through Python


class PipePool:
    def __init__(self, *, size: int = PIPE_SIZE, max_in_use: int = MAX_IN_USE) -> None:
        self._idle: list[tuple[int, int]] = []
        self._size = size
        self._max_in_use = max_in_use
        self.in_use = 0
        self.created = 0

    def take(self) -> tuple[int, int] | None:
        """An empty (read fd, write fd) pipe, or None when the pool is at its limit or pipes cannot be made."""
        if self._idle:
            self.in_use += 1
            return self._idle.pop()
        if self.in_use >= self._max_in_use:
            return None
        try:
            r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # EMFILE/ENFILE: keep relaying, just without splice
            return None
        with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size for an unprivileged user
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, self._size)
        self.in_use += 1
        self.created += 1
        return r, w

    def give_back(self, pipe: tuple[int, int], *, empty: bool) -> None:
        """Return a pipe; one that still holds bytes (its connection ended mid-transfer) is closed instead."""
        self.in_use -= 1
        if empty and len(self._idle) < IDLE_KEPT:
            self._idle.append(pipe)
        else:
            os.close(pipe[0])
            os.close(pipe[1])

    def close(self) -> None:
        for r, w in self._idle:
            os.close(r)
            os.close(w)
        self._idle.clear()
