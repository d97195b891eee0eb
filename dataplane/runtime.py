"""Runtime: the frozen bundle of shared state every connection handler receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dataplane.admin.schema import Direction
from dataplane.connections import ConnectionTable
from dataplane.drain import Drain
from dataplane.http.request_id import RequestIds
from dataplane.http1.engine import Http1Engine
from dataplane.http2.counters import H2Counters
from dataplane.http2.shared import SharedH2Upstreams
from dataplane.net.addr import SockAddr
from dataplane.net.loop_guard import LoopGuard
from dataplane.services.state import Services
from dataplane.settings import InboundMode
from dataplane.tcp.engine import RelayEngine
from dataplane.telemetry.authz import AuthzCounters
from dataplane.telemetry.http_stats import HttpStats
from dataplane.upstream.pool import ConnectionPool
from policy.store import PolicyStore

if TYPE_CHECKING:  # OpenSSL and cryptography are loaded only with --identity (about 13 MiB)
    from dataplane.svid.store import IdentityStore
    from dataplane.tls.bridge import BridgeEngine


@dataclass(frozen=True, slots=True)
class HttpShared:
    """What every HTTP connection of a proxy shares: request metrics, request ids, keep-alive pools."""

    stats: HttpStats
    ids: RequestIds
    pools: dict[Direction, ConnectionPool[SockAddr]]
    """Upstream connections reusable by any client connection of that direction (not under TPROXY, where an
    upstream connection carries one client's address)."""
    drain: Drain = field(default_factory=Drain)
    """Started when the proxy drains: keep-alive HTTP connections end gracefully (see ``dataplane.drain``)."""
    h2_clients: H2Counters = field(default_factory=H2Counters)
    """HTTP/2 connections from clients: streams, validation rejections, protocol errors, floods."""
    h2_upstreams: H2Counters = field(default_factory=H2Counters)
    """HTTP/2 connections to upstreams."""
    h1_engine: Http1Engine | None = None
    """Serves the common HTTP/1.1 exchange without a task wake-up per request; None: ``serve_http1`` only."""
    carried: SharedH2Upstreams[SockAddr] | None = None
    """The shared HTTP/2 mesh connections carrying HTTP/1.1 (``outbound.meshed[].http1_over_h2``); None: never."""


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
    http: HttpShared | None = None
    """HTTP proxying of detected HTTP/1.1 connections; None: they are relayed as opaque bytes."""
    identity: IdentityStore | None = None
    """The proxy's SVID and its current TLS contexts (``identity.current``); None without --identity."""
    bridges: BridgeEngine | None = None
    """Pumps the mesh TLS connections (``dataplane.tls.bridge``); only with --identity."""
    authz: AuthzCounters = field(default_factory=AuthzCounters)
    """Inbound authorization decisions, for the metrics."""
    services: Services = field(default_factory=Services)
    """The balancer state of every service port (``outbound.services``), kept across policy generations."""
