"""SIGTERM/SIGINT handling shared by the proxy and the --workers supervisor: first signal drains, second stops."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

import trio

log = logging.getLogger(__name__)


async def watch_shutdown_signals(
    shutdown: trio.Event,
    everything: trio.CancelScope,
    *,
    draining: str,
    stopping: str,
    before_stop: Callable[[], None] = lambda: None,
) -> None:
    """First SIGTERM/SIGINT: set ``shutdown`` (the caller drains). A second one: ``before_stop()``, then cancel
    ``everything``. ``draining`` and ``stopping`` say in the log what each means for this process."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if not shutdown.is_set():
                log.info("%s: %s", name, draining)
                shutdown.set()
            else:
                log.warning("%s again: %s", name, stopping)
                before_stop()
                everything.cancel(reason="second signal")
