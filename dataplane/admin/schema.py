"""JSON documents served by the admin endpoint.

The one data plane module ``ctl`` imports, so it stays pure: msgspec only, no trio.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

Direction = Literal["inbound", "outbound"]
PER_REQUEST_PROTOCOLS: Final = frozenset({"http1", "h2", "http1-h2"})
"""``ConnectionInfo.protocol`` values of connections authorized per request (HTTP/1.1, HTTP/2, and HTTP/1.1 carried
in a shared HTTP/2 mTLS connection): such a connection stays open while some rule admits its client at all."""
ConnState = Literal["connecting", "open", "client_half_closed", "upstream_half_closed", "closing", "closed"]


class _Doc(msgspec.Struct, frozen=True, kw_only=True):
    """Base for admin documents. Unknown fields are ignored so older meshctl builds read newer proxies.

    Subclasses repeat ``frozen=True``: msgspec inherits it, mypy's dataclass_transform does not (msgspec#657).
    """


class ConnectionInfo(_Doc, frozen=True):
    """One proxied TCP connection, open or recently closed."""

    id: int
    direction: Direction
    client: str
    """The downstream peer, ``ip:port`` (``[ip]:port`` for IPv6)."""
    original_dst: str
    """Where the client meant to go (SO_ORIGINAL_DST, or the local address under TPROXY)."""
    upstream: str | None
    """Where the proxy connected; None until the upstream connection is attempted."""
    protocol: str
    """``opaque``, or what detection found: ``http1``, ``h2``, ``tls`` (relayed as opaque until HTTP lands)."""
    state: ConnState
    opened_at: float
    """Unix time the client connection was accepted."""
    closed_at: float | None = None
    bytes_to_upstream: int = 0
    """Bytes read from the client and written to the upstream."""
    bytes_to_client: int = 0
    """Bytes read from the upstream and written to the client."""
    close_reason: str | None = None
    errno: str | None = None
    tls: str = "no_identity"
    """``true`` when the connection is carried over mesh mTLS (Linkerd's label value), else ``no_identity``."""
    client_id: str | None = None
    """Inbound mesh mTLS: the client proxy's verified SPIFFE ID."""
    server_id: str | None = None
    """Outbound mesh mTLS: the server proxy's verified SPIFFE ID."""
    service: str | None = None
    """Outbound to a service's virtual address: the service and port (``name:port``); ``upstream`` is the endpoint
    of its last request (HTTP) or of the connection (TCP)."""
    policy_version: str = ""
    worker: int = 0
    detect_result: str | None = None
    """How detection decided (``http/1``, ``http/2``, ``tls``, ``not_http``, ``server_first``, ``read_timeout``,
    ...); None when the port is not a ``detect`` port."""
    detect_seconds: float | None = None
    """How long detection took; None when the port is not a ``detect`` port."""
    sni: str | None = None
    """The server name of a TLS ClientHello, when the client sent one."""
    requests: int = 0
    """HTTP requests (HTTP/1.1) or streams (HTTP/2) this connection has carried; 0 for opaque TCP."""


class ConnectionsReport(_Doc, frozen=True):
    open: list[ConnectionInfo]
    recent: list[ConnectionInfo]
    """Recently closed connections, newest first (bounded)."""
    opened_total: int
    closed_total: int


class ListenerInfo(_Doc, frozen=True):
    name: str
    address: str


class ProblemInfo(_Doc, frozen=True):
    path: str
    message: str


class ReloadErrorInfo(_Doc, frozen=True):
    at: float
    source: str
    message: str
    problems: list[ProblemInfo] = []


class IdentityInfo(_Doc, frozen=True):
    """The proxy's own identity (``mesh-proxy --identity``)."""

    directory: str
    valid: bool
    """An identity is loaded and valid now; when False, /ready is 503."""
    problem: str | None = None
    """Why there is no valid identity (the file and problem, or the expiry); None when valid."""
    spiffe_id: str | None = None
    """The current SVID's ID; None until one has been loaded."""
    serial: str | None = None
    """The current SVID's serial number, hex."""
    not_before: float | None = None
    not_after: float | None = None
    """Unix time the current SVID expires."""
    loaded_at: float | None = None
    generation: int = 0
    """1 for the first identity loaded, +1 per rotation; 0: none loaded yet."""
    last_reload_error: ReloadErrorInfo | None = None
    """The last refused load (``source`` is the file at fault); cleared by the next successful one."""


class StatusReport(_Doc, frozen=True):
    ready: bool
    draining: bool
    version: str
    pid: int
    started_at: float
    uptime_seconds: float
    policy_name: str
    policy_version: str
    policy_generation: int
    policy_source: str
    last_reload_error: ReloadErrorInfo | None
    listeners: list[ListenerInfo]
    connections_open: int
    workers: int = 1
    identity: IdentityInfo | None = None
    """None without --identity (a plaintext proxy)."""


class ConfigReport(_Doc, frozen=True):
    policy: msgspec.Raw
    """The active policy, in the bundle's own schema."""
    policy_version: str
    policy_generation: int
    policy_source: str
    loaded_at: float
    last_reload_error: ReloadErrorInfo | None
