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


ServiceName = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$",
        description="A service name: lowercase letters, digits, '-' and '.', e.g. web or web.shop.",
    ),
]
RouteName = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$",
        description="A route name: lowercase letters, digits, '-', '_' and '.', up to 63 characters.",
    ),
]
IpAddress = Annotated[
    str,
    msgspec.Meta(min_length=2, max_length=45, description="An IPv4 or IPv6 address, e.g. 10.96.0.10 or fd00::10."),
]
EndpointAddress = Annotated[
    str,
    msgspec.Meta(
        min_length=2,
        max_length=53,
        description="An endpoint: an IP (the service port's target_port is used) or IP:PORT ([v6]:PORT).",
    ),
]
HttpStatus = Annotated[int, msgspec.Meta(ge=500, le=599, description="An HTTP 5xx status, e.g. 503.")]
Weight = Annotated[int, msgspec.Meta(ge=1, le=10000, description="A relative weight, 1-10000.")]
ByteCount = Annotated[int, msgspec.Meta(ge=0, le=16 * 1024 * 1024, description="A number of bytes, up to 16 MiB.")]


class RetryCondition(enum.Enum):
    """A failure after which a request may be sent again."""

    # The connection to the endpoint could not be made (refused, unreachable, timeout, failed mesh TLS): nothing
    # was sent, so every request may be retried, whatever its method.
    CONNECT_FAILURE = "connect-failure"
    # HTTP/2 REFUSED_STREAM, or a stream above a GOAWAY's last stream id: the server says it did not process it.
    REFUSED_STREAM = "refused-stream"
    # The endpoint closed or reset the connection before any response byte: idempotent requests only.
    RESET = "reset"
    # No response head within the route's per_try_timeout: idempotent requests only.
    PER_TRY_TIMEOUT = "per-try-timeout"


class GrpcStatus(enum.Enum):
    """gRPC status codes a route may retry (the names gRPC documents, lowercase with dashes)."""

    CANCELLED = "cancelled"
    DEADLINE_EXCEEDED = "deadline-exceeded"
    INTERNAL = "internal"
    RESOURCE_EXHAUSTED = "resource-exhausted"
    UNAVAILABLE = "unavailable"


DEFAULT_RETRY_CONDITIONS: Final = (RetryCondition.CONNECT_FAILURE, RetryCondition.REFUSED_STREAM)
DEFAULT_RETRY_BODY: Final = 64 * 1024


class Retry(_Struct, frozen=True):
    """When a request to a service is sent again, to another endpoint where the service has one.

    Only requests the endpoint provably did not process (connect failures, refused streams) are retried whatever
    their method; the other conditions and statuses apply to idempotent methods only (GET, HEAD, OPTIONS, TRACE,
    PUT, DELETE) and to gRPC calls listed in ``grpc_statuses``. A response already being relayed is never retried.
    """

    conditions: tuple[RetryCondition, ...] = DEFAULT_RETRY_CONDITIONS
    """Failures that are retried."""
    statuses: tuple[HttpStatus, ...] = ()
    """Response statuses that are retried (idempotent requests only), e.g. [502, 503]."""
    grpc_statuses: tuple[GrpcStatus, ...] = ()
    """gRPC statuses (from a trailers-only response) that are retried, e.g. [unavailable]."""
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3
    """Tries in all, the first one included: 1 never retries."""
    per_try_timeout: Duration | None = None
    """How long one try may wait for its response head; retried when ``per-try-timeout`` is a condition, else 504.
    null: only the route's ``timeout`` applies."""
    max_body: ByteCount = DEFAULT_RETRY_BODY
    """Request bodies up to this size are kept to be sent again; a larger body is never retried."""


class Route(_Struct, frozen=True):
    """HTTP requests of a service that share a timeout and retries. The first route that matches a request wins;
    requests no route matches get the service's ``timeout`` and ``retry``."""

    name: RouteName
    """Shown as ``route_name`` in metrics and by ``meshctl``; unique within the service."""
    paths: tuple[PathPattern, ...] = ()
    """Request paths matched (exact, or a prefix ending in ``*``); empty matches every path."""
    methods: tuple[Method, ...] = ()
    """Request methods matched; empty matches every method."""
    timeout: Duration | None = None
    """The whole request, retries included, must have its response head within this, else 504; null: the
    service's ``timeout``."""
    retry: Retry | None = None
    """null: the service's ``retry``."""


class RetryBudget(_Struct, frozen=True):
    """How many retries a service's requests may add (Linkerd's defaults): a retry storm stays bounded even when
    every endpoint fails."""

    ratio: Annotated[float, msgspec.Meta(ge=0.0, le=10.0)] = 0.2
    """Retries allowed per original request (0.2: one retry per five requests)."""
    min_per_second: Annotated[int, msgspec.Meta(ge=0, le=100000)] = 10
    """Retries always allowed per second, however few requests there were."""
    ttl: Duration = Duration(10.0)
    """How long a request counts towards the ratio."""


class Balancer(_Struct, frozen=True):
    """Load balancing: power of two choices over peak-EWMA latency, weighted (Linkerd's balancer)."""

    default_rtt: Duration = Duration(0.03)
    """The latency assumed for an endpoint until it has answered."""
    decay: Duration = Duration(10.0)
    """How fast old latencies are forgotten (the EWMA's time constant)."""


class OutlierDetection(_Struct, frozen=True):
    """Passive health: endpoints that keep failing are ejected (no requests or connections) for a while."""

    consecutive_failures: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 7
    """Failures in a row (connect failure, reset, timeout, 5xx) that eject an endpoint (Linkerd: 7)."""
    base_ejection: Duration = Duration(1.0)
    """The first ejection's length; each further ejection without a success in between doubles it."""
    max_ejection: Duration = Duration(60.0)
    """The longest ejection (Linkerd's maximum penalty)."""
    max_ejected_percent: Annotated[int, msgspec.Meta(ge=0, le=100)] = 50
    """At most this share of the endpoints is ejected at once; a failing endpoint past it stays in."""


class RequestQueue(_Struct, frozen=True):
    """Requests to a service in flight or waiting for an endpoint."""

    capacity: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 10000
    """Requests in flight or waiting, per proxy; past it a request is answered 503 at once (load shedding)."""
    failfast: Duration = Duration(3.0)
    """How long a request waits for an endpoint when none is available (none listed or all ejected) before 503;
    while none has been for this long, requests are answered 503 at once (Linkerd's fail-fast)."""


class ServicePort(_Struct, frozen=True):
    """One port of a service."""

    port: Port
    """The port clients connect to on the service's addresses."""
    name: Annotated[str, msgspec.Meta(pattern=r"^([a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?)?$")] = ""
    """A name for the port (e.g. http), shown by ``meshctl`` and in metrics as ``parent_port``'s name."""
    target_port: Port | None = None
    """The endpoints' port for this service port; null: the same as ``port``."""


class Endpoint(_Struct, frozen=True):
    """One place a service's traffic can go."""

    address: EndpointAddress
    """An IP (the port is the service port's ``target_port``) or IP:PORT (services with one port only)."""
    identity: IdentityPattern | None = None
    """The endpoint is reached over mesh mTLS and its proxy must prove this identity; null: as ``outbound.meshed``
    says for its address (plaintext when no entry matches)."""
    weight: Weight = 1
    """Relative share of requests and connections."""


class Service(_Struct, frozen=True):
    """A virtual address (like a Kubernetes ClusterIP) that exists nowhere on the network: connections and
    requests the pod sends to one of its ``addresses`` and ``ports`` go to one of its ``endpoints`` instead."""

    name: ServiceName
    """Unique in the bundle; shown as ``parent_name`` in metrics and by ``meshctl``."""
    addresses: Annotated[tuple[IpAddress, ...], msgspec.Meta(min_length=1)]
    """The virtual IPs; each address:port belongs to one service only."""
    ports: Annotated[tuple[ServicePort, ...], msgspec.Meta(min_length=1)]
    """The service's ports."""
    endpoints: tuple[Endpoint, ...] = ()
    """Where the traffic goes; none: every request is answered 503 (fail fast) and connections are reset."""
    routes: tuple[Route, ...] = ()
    """HTTP routes, first match wins."""
    timeout: Duration | None = None
    """Request timeout of requests no route (or a route without ``timeout``) covers; null: wait."""
    retry: Retry = Retry()
    """Retries of requests no route (or a route without ``retry``) covers: connect failures and refused streams."""
    retry_budget: RetryBudget = RetryBudget()
    """The bound on retries of all this service's requests."""
    balancer: Balancer = Balancer()
    """Load balancing."""
    outlier_detection: OutlierDetection = OutlierDetection()
    """Passive health checking."""
    queue: RequestQueue = RequestQueue()
    """Load shedding and fail-fast."""


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
    services: tuple[Service, ...] = ()
    """Virtual addresses balanced over endpoints. A destination that is no service's passes through unchanged."""


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
