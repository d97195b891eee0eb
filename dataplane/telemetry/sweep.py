"""The one task that forgets metric series idle for the retain period (``retention`` says which)."""

from __future__ import annotations

import logging
from typing import NoReturn

import trio

from dataplane.connections import ConnectionTable
from dataplane.telemetry.http_stats import HttpStats

log = logging.getLogger(__name__)


async def forget_idle_series(table: ConnectionTable, http: HttpStats | None, retain: float) -> NoReturn:
    """Run until cancelled: every half ``retain`` seconds, drop the TCP and HTTP series untouched for that long."""
    while True:
        await trio.sleep(retain / 2)
        targets = table.forget_idle_series()
        keys = http.forget_idle() if http is not None else 0
        if targets or keys:
            log.debug("forgot the metric series of %d idle TCP targets and %d idle HTTP request keys", targets, keys)
