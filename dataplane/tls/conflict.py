"""Two tasks sending (or receiving) on one stream at once is a bug: report it instead of interleaving bytes.

trio's own ``ConflictDetector`` is private (``trio._util``), so this is ours; it raises what trio's streams
raise, ``trio.BusyResourceError``, which trio's generic stream tests expect.
"""

from __future__ import annotations

from types import TracebackType

import trio


class ConflictDetector:
    __slots__ = ("_busy", "_message")

    def __init__(self, message: str) -> None:
        self._message = message
        self._busy = False

    def __enter__(self) -> None:
        if self._busy:
            raise trio.BusyResourceError(self._message)
        self._busy = True

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._busy = False
