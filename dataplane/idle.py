"""Closing idle connections: one sweeper task for the whole proxy instead of a timer task per connection."""

from __future__ import annotations

from typing import Final, NoReturn

import trio

from dataplane.connections import ConnectionTable
from policy.model import Policy
from policy.store import PolicyStore

SWEEP_MIN: Final = 0.05  # seconds; never poll the idle timers faster than this
SWEEP_MAX: Final = 1.0  # seconds; idle closes happen at most this late


async def sweep_idle(table: ConnectionTable, store: PolicyStore) -> NoReturn:
    """Run until cancelled, closing connections idle past their timeout with reason ``idle_timeout``."""
    while True:
        await trio.sleep(sweep_interval(min_idle_timeout(store.current.policy)))
        table.sweep_idle(trio.current_time())


def sweep_interval(shortest_idle_timeout: float) -> float:
    """A quarter of the shortest idle timeout, clamped: idle closes land within 25% of their timeout."""
    return min(SWEEP_MAX, max(SWEEP_MIN, shortest_idle_timeout / 4))


def min_idle_timeout(policy: Policy) -> float:
    ports = (*policy.inbound.ports, *policy.outbound.ports)
    overrides = [p.idle_timeout.seconds for p in ports if p.idle_timeout is not None]
    return min([policy.timeouts.idle.seconds, *overrides])
