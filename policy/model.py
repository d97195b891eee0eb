"""The policy bundle schema: frozen msgspec Structs, decoded once by ``policy.load`` and replaced whole.

Pure: no I/O. Every field has a default so an empty document is the embedded default policy (protocol
detection in both directions, except Linkerd's default opaque ports). Field docs here are the source of
``docs/policy.md`` and the exported JSON Schema.
"""

from __future__ import annotations

import enum
from typing import Annotated, Final, Literal

import msgspec

from policy.duration import Duration

Port = Annotated[int, msgspec.Meta(ge=1, le=65535, description="A TCP port, 1-65535.")]
Cidr = Annotated[
    str,
    msgspec.Meta(
        min_length=2,
        max_length=64,
        description="An IPv4 or IPv6 network in CIDR notation, e.g. 10.0.0.0/8 or fd00::/8.",
    ),
]


class Protocol(enum.Enum):
    """How the proxy treats a port's connections."""

    # Relay bytes without looking at them: for server-speaks-first and non-HTTP protocols.
    OPAQUE = "opaque"
    # Peek at the first bytes and pick HTTP/1.1, HTTP/2, TLS or opaque (all relayed opaquely until HTTP lands).
    DETECT = "detect"


# Linkerd's default opaquePorts: SMTP, SMTP submission, MySQL, Galera, PostgreSQL, Redis, Elasticsearch
# transport, memcached. Server-speaks-first (or binary client-first) protocols detection can only delay.
DEFAULT_OPAQUE_PORTS: Final = (25, 587, 3306, 4444, 5432, 6379, 9300, 11211)


class _Struct(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base for every policy Struct: immutable, strict about unknown fields, keyword-only.

    Subclasses repeat ``frozen=True``: msgspec inherits it, but type checkers following PEP 681
    (dataclass_transform) do not (msgspec/msgspec#657).
    """


class MtlsMode(enum.Enum):
    """Which clients an inbound port accepts."""

    # Mesh mTLS from meshed clients, plaintext from everyone else (Istio's and Linkerd's default): for migrating.
    PERMISSIVE = "permissive"
    # Mesh mTLS only: a plaintext client is refused before a byte reaches the application.
    STRICT = "strict"


IdentityPattern = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=2048,
        description=(
            "A client identity: an exact SPIFFE ID (spiffe://TD/ns/NS/sa/SA), a prefix ending in /* "
            "(spiffe://TD/ns/NS/*), or * for any mesh identity."
        ),
    ),
]
PathPattern = Annotated[
    str,
    msgspec.Meta(
        pattern="^/",
        max_length=2048,
        description="An HTTP request path: exact (/healthz), or a prefix ending in * (/api/*).",
    ),
]
Method = Annotated[
    str,
    msgspec.Meta(pattern="^[A-Z]{1,32}$", description="An HTTP method in capitals, e.g. GET."),
]


class AuthorizationRule(_Struct, frozen=True):
    """One rule of an inbound port's authorization: who may connect, and for HTTP, to which paths and methods.

    A rule allows a connection or request when its client matches ``identities`` (or is plaintext and
    ``unauthenticated`` is true) and, for HTTP, its path matches ``paths`` and its method ``methods`` (each when
    listed). A rule that lists paths or methods never allows an opaque TCP connection."""

    identities: tuple[IdentityPattern, ...] = ()
    """Client identities allowed, verified by mesh mTLS: exact, ``spiffe://TD/ns/NS/*``, or ``*``."""
    unauthenticated: bool = False
    """Also allow clients without mesh TLS (plaintext on a ``permissive`` port)."""
    paths: tuple[PathPattern, ...] = ()
    """HTTP only: the request paths allowed (exact, or a prefix ending in ``*``); empty allows every path."""
    methods: tuple[Method, ...] = ()
    """HTTP only: the request methods allowed; empty allows every method."""


DEFAULT_CONNECT_TIMEOUT: Final = Duration(1.0)  # Linkerd's outbound connect timeout
DEFAULT_IDLE_TIMEOUT: Final = Duration(3600.0)  # Envoy tcp_proxy's default idle timeout
DEFAULT_DETECT_TIMEOUT: Final = Duration(10.0)  # Linkerd's detect timeout, inbound and outbound
DEFAULT_STREAM_IDLE_TIMEOUT: Final = Duration(300.0)  # Envoy's stream_idle_timeout


class Timeouts(_Struct, frozen=True):
    """Timeouts applied to every proxied connection unless a port overrides them."""

    connect: Duration = DEFAULT_CONNECT_TIMEOUT
    """How long to wait for the upstream TCP handshake before giving up."""
    idle: Duration = DEFAULT_IDLE_TIMEOUT
    """Close a connection after this long with no bytes in either direction."""
    detect: Duration = DEFAULT_DETECT_TIMEOUT
    """On ``detect`` ports, how long to wait for the client's first bytes before relaying the connection as opaque."""
    response: Duration | None = None
    """HTTP: how long after a request is sent upstream its response head may take before the proxy answers 504;
    null waits as long as the connection lives (Linkerd's and Istio's default, so long polls and streams work)."""
    stream_idle: Duration = DEFAULT_STREAM_IDLE_TIMEOUT
    """HTTP/2: reset a stream (RST_STREAM CANCEL) that moves no bytes in either direction for this long."""


class PortPolicy(_Struct, frozen=True):
    """Settings for connections whose original destination port is ``port``."""

    port: Port
    """The original destination port these settings apply to; each port may appear once per direction."""
    protocol: Protocol | None = None
    """Overrides the direction's ``default_protocol`` for this port."""
    connect_timeout: Duration | None = None
    """Overrides ``timeouts.connect`` for this port."""
    idle_timeout: Duration | None = None
    """Overrides ``timeouts.idle`` for this port."""
    detect_timeout: Duration | None = None
    """Overrides ``timeouts.detect`` for this port."""
    response_timeout: Duration | None = None
    """Overrides ``timeouts.response`` for this port."""
    mtls: MtlsMode | None = None
    """Inbound only: overrides ``inbound.mtls`` for this port."""
    authorization: tuple[AuthorizationRule, ...] | None = None
    """Inbound only: overrides ``inbound.authorization`` for this port."""


class InboundPolicy(_Struct, frozen=True):
    """Connections arriving for the pod (intercepted to the inbound port, 15006)."""

    default_protocol: Protocol = Protocol.DETECT
    """How connections to ports not listed in ``ports`` or ``opaque_ports`` are treated."""
    opaque_ports: tuple[Port, ...] = DEFAULT_OPAQUE_PORTS
    """Ports relayed as opaque TCP without detection (server-speaks-first protocols); a ``ports`` entry that sets
    ``protocol`` overrides this list."""
    ports: tuple[PortPolicy, ...] = ()
    """Per-port overrides of the protocol and timeouts, keyed by the pod's listening port."""
    exclude_ports: tuple[Port, ...] = ()
    """Ports ``mesh-init --policy`` leaves unintercepted; the proxy relays any that reach it untouched."""
    mtls: MtlsMode = MtlsMode.PERMISSIVE
    """Whether plaintext clients are accepted besides mesh mTLS ones; ``strict`` needs ``mesh-proxy --identity``."""
    authorization: tuple[AuthorizationRule, ...] | None = None
    """Who may reach the pod's ports: a client is allowed when one rule matches it. null allows every client;
    an empty list denies every one. Denied: HTTP 403 with no upstream contact, TCP closed."""


class MeshedDestination(_Struct, frozen=True):
    """Destinations reached over mesh mTLS, and the identity their proxy must prove."""

    cidr: Cidr
    """The destinations' network, e.g. a pod's address (10.0.0.5/32) or the pod network (10.0.0.0/16)."""
    identity: IdentityPattern
    """The server identity required: exact, a prefix ending in ``/*``, or ``*`` for any identity of the trust
    domain. Another identity: HTTP 503 and a closed TCP connection, nothing sent."""
    ports: tuple[Port, ...] = ()
    """The destination ports carried over mTLS; empty means every port."""
    http1_over_h2: bool = False
    """Carry the application's HTTP/1.1 requests to these destinations as streams of one shared HTTP/2 mTLS
    connection per destination (ALPN ``triomesh.http1-h2/1``) instead of HTTP/1.1 inside mTLS, one connection per
    request in flight (what a peer proxy without the carriage gets anyway). Off by default: it costs more CPU per
    request at moderate load. Two hops on loopback (wrk -c50, both proxies on one core): about 1,000 requests/s
    at 1,000 us of CPU per request (both proxies) with it, 1,440-1,610 at 620-660 us without; with it p99 was
    lower (90-130 ms against 360-630 ms) and one connection replaced 50. At 200 concurrent requests (more than
    the 64 idle connections a pool keeps per destination) it was ahead: 960 against 874 requests/s, no timeouts."""


class OutboundPolicy(_Struct, frozen=True):
    """Connections the pod's applications open (intercepted to the outbound port, 15001)."""

    default_protocol: Protocol = Protocol.DETECT
    """How connections to ports not listed in ``ports`` or ``opaque_ports`` are treated."""
    opaque_ports: tuple[Port, ...] = DEFAULT_OPAQUE_PORTS
    """Ports relayed as opaque TCP without detection (server-speaks-first protocols); a ``ports`` entry that sets
    ``protocol`` overrides this list."""
    ports: tuple[PortPolicy, ...] = ()
    """Per-port overrides of the protocol and timeouts, keyed by the destination port."""
    exclude_ports: tuple[Port, ...] = ()
    """Destination ports ``mesh-init --policy`` leaves unintercepted."""
    exclude_cidrs: tuple[Cidr, ...] = ()
    """Destination networks ``mesh-init --policy`` leaves unintercepted."""
    meshed: tuple[MeshedDestination, ...] = ()
    """Destinations with a proxy of their own: connections to them are carried over mesh mTLS (the first entry
    that matches wins). Everything else is proxied in plaintext, as the application sent it."""


class Policy(_Struct, frozen=True):
    """A whole policy bundle. Replaced as a unit on every valid reload."""

    version: Literal[1] = 1
    """Schema version of the bundle format."""
    name: Annotated[str, msgspec.Meta(max_length=253)] = ""
    """A free-form label shown by ``meshctl status`` and ``/config``."""
    timeouts: Timeouts = Timeouts()
    """Connect, idle and detection timeouts for every connection, in both directions."""
    inbound: InboundPolicy = InboundPolicy()
    """Connections arriving for the pod."""
    outbound: OutboundPolicy = OutboundPolicy()
    """Connections the pod's applications open."""


DEFAULT_POLICY: Final = Policy(name="embedded-default")
"""What ``mesh-proxy`` runs with no ``--policy``: detection on every port but ``DEFAULT_OPAQUE_PORTS``."""
