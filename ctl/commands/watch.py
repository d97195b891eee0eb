"""``--watch``: re-run a report every few seconds until Ctrl-C, keeping going through transient errors."""

from __future__ import annotations

import datetime
import sys
from collections.abc import Callable
from typing import Final

import trio

from ctl.errors import CtlError

_CLEAR: Final = "\x1b[H\x1b[2J"  # cursor home, clear screen (ANSI; what `watch(1)` does)


def watch(show: Callable[[], str], interval: float, *, title: str, clear: bool, limit: int | None = None) -> int:
    """Prints ``show()`` every ``interval`` seconds, ``limit`` times (None: until Ctrl-C). Returns 0.

    With ``clear`` (a terminal) each refresh replaces the screen under a title line; without it the
    refreshes follow each other (``--json`` gives one document per refresh). An error is shown in place of
    the report and the watch goes on, since a restarting proxy is what one often watches.
    """
    clear = clear and sys.stdout.isatty()
    try:
        return trio.run(refresh_loop, show, interval, title, clear, limit)
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how a watch ends


async def refresh_loop(show: Callable[[], str], interval: float, title: str, clear: bool, limit: int | None) -> int:
    """The body of ``watch``; ``show`` runs in a worker thread so a slow proxy never blocks the timer."""
    shown = 0
    while limit is None or shown < limit:
        try:
            text = await trio.to_thread.run_sync(show)
        except CtlError as exc:
            text = f"error: {exc}\n"
        if clear:
            stamp = datetime.datetime.now().strftime("%H:%M:%S")
            text = f"{_CLEAR}{title}  (every {interval:g}s, {stamp}; Ctrl-C to stop)\n\n{text}"
        sys.stdout.write(text)
        sys.stdout.flush()
        shown += 1
        if limit is None or shown < limit:
            await trio.sleep(interval)
    return 0
