"""Runtime: the frozen bundle of shared state every connection handler receives."""

from __future__ import annotations

from dataclasses import dataclass

from dataplane.connections import ConnectionTable
from dataplane.net.loop_guard import LoopGuard
from dataplane.settings import InboundMode
from dataplane.tcp.engine import RelayEngine
from policy.store import PolicyStore


@dataclass(frozen=True, slots=True)
class Runtime:
    table: ConnectionTable
    store: PolicyStore
    guard: LoopGuard
    mark: int
    """SO_MARK for every upstream socket (0: none), so mesh-init's rules never intercept the proxy's traffic."""
    inbound_mode: InboundMode
    engine: RelayEngine | None = None
    """Relays opaque plaintext connections without a task per connection; None: a trio relay per connection."""
