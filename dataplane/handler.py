"""The per-connection error boundary shared by both directions.

Stages: accept -> original destination -> loop guard -> policy -> connect -> detect -> protocol handler -> close.
Detection runs only on ``detect`` ports (never on ``opaque`` or excluded ones) and picks the protocol handler
from ``PROTOCOL_HANDLERS``; until the HTTP proxies land every protocol is relayed as opaque bytes. The direction-
specific parts (how the original destination is recovered, which policy applies, the source address of the
upstream connection) come from a ``Side``; everything else is the same for inbound and outbound.

Only bugs escape this function: every expected failure becomes a close reason on the connection record, one log
line and the right signal to the peers (a reset where the other side reset or could not be reached, a FIN
otherwise). trio's ``serve_listeners`` would let a handler exception crash the server.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, Protocol

import trio

from dataplane.admin.schema import Direction
from dataplane.balance.retry_rule import Failure
from dataplane.connections import ConnRecord
from dataplane.detect.detect import Detection, detect
from dataplane.detect.sniff import Protocol as DetectedProtocol
from dataplane.errors import (
    AuthzDeniedError,
    ClientResetError,
    ConnectError,
    PlaintextRefusedError,
    ProxyError,
    RedirectLoopError,
)
from dataplane.layer7 import carries_http1_over_h2, proxy_h2, proxy_http1, proxy_http1_over_h2
from dataplane.mtls.inner import alpn_for
from dataplane.mtls.originate import meshed_target, originate
from dataplane.mtls.terminate import terminate
from dataplane.net.addr import SockAddr
from dataplane.net.connect import open_upstream
from dataplane.runtime import Runtime
from dataplane.services.call import ServiceCall
from dataplane.tcp.relay import Outcome, relay
from dataplane.tls import alpn
from policy.index import MeshedTarget, PortSettings
from policy.model import MtlsMode
from policy.model import Protocol as PortProtocol
from policy.services import ServicePlan
from policy.store import Snapshot

log = logging.getLogger(__name__)

_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST instead of FIN


class Side(Protocol):
    """What differs between inbound and outbound."""

    @property
    def direction(self) -> Direction: ...

    @property
    def intercepted(self) -> bool:
        """Whether connections arrive by interception (and so could be our own upstreams redirected back)."""
        ...

    def original_dst(self, stream: trio.SocketStream, local: SockAddr) -> SockAddr: ...

    def port_settings(self, snapshot: Snapshot, dst: SockAddr) -> PortSettings: ...

    def source_ip(self, client: SockAddr) -> str | None: ...


async def handle_connection(stream: trio.SocketStream, side: Side, rt: Runtime) -> None:
    try:
        client = SockAddr.from_sockname(stream.socket.getpeername())
        local = SockAddr.from_sockname(stream.socket.getsockname())
    except OSError:
        # The client reset before we looked at it: nothing to proxy, nothing to record.
        _close(stream, reset=True)
        return
    rec = rt.table.open(side.direction, client, local)
    legs = Legs(stream, side, rt)
    try:
        with trio.CancelScope() as scope:
            rec.on_cancel = scope.cancel
            await _proxy(legs, rec, side, rt)
    except ClientResetError as exc:
        rec.close_reason = exc.reason
        rec.src_errno = exc.errno_name
        legs.reset_upstream = True  # pass the reset on: the upstream must not take it for a clean end
        log.info("conn=%d %s %s -> %s: %s", rec.id, rec.direction, client, rec.target, exc)
    except ProxyError as exc:
        rec.close_reason = exc.reason
        rec.dst_errno = exc.errno_name
        # The client asked for a connection we could not make: it should see a reset, as it would have from
        # the destination itself, never a clean end of stream.
        legs.reset_client = True
        level = logging.WARNING if isinstance(exc, RedirectLoopError) else logging.INFO
        log.log(level, "conn=%d %s %s -> %s: %s", rec.id, rec.direction, client, rec.target, exc)
    except trio.Cancelled:
        if rec.close_reason is None:
            rec.close_reason = "shutdown"
        raise
    finally:
        if not legs.handed_off:
            legs.close()
            _closed(rt, rec)


async def _proxy(legs: Legs, rec: ConnRecord, side: Side, rt: Runtime) -> None:
    dst = side.original_dst(legs.client, rec.local)
    rec.original_dst = dst
    loop = rt.guard.check(rec.client, dst, rec.local, intercepted=side.intercepted)
    if loop is not None:
        raise RedirectLoopError(loop)
    snapshot = rt.store.current
    settings = side.port_settings(snapshot, dst)
    rec.policy_version = snapshot.version
    rec.idle_timeout = settings.idle_timeout
    inbound = side.direction == "inbound" and not settings.excluded
    if inbound and settings.mtls is MtlsMode.STRICT:
        # Nothing reaches the application, not even a TCP connect, before the client proved a mesh identity.
        protocol = await _terminate_strict(legs, rec, rt, settings)
        _authorize_tcp(rec, rt, settings, protocol)
        await _connect(legs, rec, side, rt, dst, settings)
        await _dispatch(legs, rec, rt, protocol)
        return
    service = (
        snapshot.index.service(dst.ip, dst.port) if side.direction == "outbound" and not settings.excluded else None
    )
    if service is not None:
        await _proxy_service(legs, rec, side, rt, settings, service)
        return
    meshed = meshed_target(side.direction, snapshot, dst, settings)
    if meshed is not None:
        await _proxy_meshed(legs, rec, side, rt, settings, meshed)
        return
    upstream = await _connect(legs, rec, side, rt, dst, settings)
    protocol = DetectedProtocol.OPAQUE
    sniff = settings.protocol is PortProtocol.DETECT and not settings.excluded
    # A permissive port with an identity looks at every client's first bytes, opaque ports too: a meshed client's
    # ClientHello must be terminated wherever it arrives.
    mesh_possible = inbound and rt.identity is not None
    if sniff or mesh_possible:
        # After the connect on purpose: the client's first bytes arrive meanwhile, so the common case is one peek.
        detection = await detect(
            legs.client.socket, upstream.fileno(), timeout=settings.detect_timeout, tls_only=not sniff
        )
        if mesh_possible and _is_mesh_hello(detection):
            protocol = await _terminate(legs, rec, rt, settings, detection)
        elif sniff:
            rt.table.detected(rec, detection)
            protocol = detection.protocol
    if inbound:
        _authorize_tcp(rec, rt, settings, protocol)
    await _dispatch(legs, rec, rt, protocol)


async def _dispatch(legs: Legs, rec: ConnRecord, rt: Runtime, protocol: DetectedProtocol) -> None:
    # A runtime without HTTP proxying (tests of the relay alone) relays every protocol as bytes.
    handler = PROTOCOL_HANDLERS[protocol] if rt.http is not None else _relay_opaque
    await handler(legs, rec, rt)


async def _connect(
    legs: Legs, rec: ConnRecord, side: Side, rt: Runtime, dst: SockAddr, settings: PortSettings
) -> socket.socket:
    rec.upstream = dst
    upstream = await open_upstream(
        dst,
        timeout=settings.connect_timeout,
        mark=rt.mark,
        source_ip=side.source_ip(rec.client),
        on_local_address=functools.partial(_remember, legs, dst),
    )
    legs.upstream_socket = upstream
    rec.dst_opened = True
    return upstream


def _is_mesh_hello(detection: Detection) -> bool:
    return detection.protocol is DetectedProtocol.TLS and alpn.is_mesh_offer(detection.alpn)


async def _terminate_strict(legs: Legs, rec: ConnRecord, rt: Runtime, settings: PortSettings) -> DetectedProtocol:
    """A strict port: the client must open with a mesh ClientHello and pass the handshake."""
    detection = await detect(legs.client.socket, None, timeout=settings.detect_timeout, tls_only=True)
    if not _is_mesh_hello(detection):
        if detection.protocol is DetectedProtocol.TLS:
            seen = "a TLS ClientHello without a mesh ALPN name"
        elif detection.result == "not_http":
            seen = "plaintext"
        else:
            seen = f"no ClientHello ({detection.result})"
        raise PlaintextRefusedError(f"port {rec.target.port} is strict mTLS, but the client sent {seen}")
    return await _terminate(legs, rec, rt, settings, detection)


async def _terminate(
    legs: Legs, rec: ConnRecord, rt: Runtime, settings: PortSettings, detection: Detection
) -> DetectedProtocol:
    rec.sni = detection.sni
    plain, peer, protocol, carried = await terminate(rt, legs.client, timeout=settings.detect_timeout)
    legs.client = plain  # the TLS stream (and the client's socket under it) belongs to the bridge now
    rec.meshed_with(peer)
    rec.protocol = carried  # http1-h2 (HTTP/1.1 carried over HTTP/2) tells proxy_h2 what to serve
    return protocol


def _authorize_tcp(rec: ConnRecord, rt: Runtime, settings: PortSettings, protocol: DetectedProtocol) -> None:
    """Opaque connections are authorized once, here; HTTP ones per request (``dataplane.http.authorize``)."""
    authorization = settings.authorization
    if not authorization.configured or protocol in (DetectedProtocol.HTTP1, DetectedProtocol.H2):
        return
    allowed = authorization.allows_tcp(rec.peer_id)
    rt.authz.record("tcp", allowed, str(rec.target), rec.tls, rec.peer_id)
    if not allowed:
        who = rec.peer_id or "an unauthenticated client"
        raise AuthzDeniedError(f"authorization denied: {who} may not connect to port {rec.target.port}")


async def _proxy_meshed(
    legs: Legs, rec: ConnRecord, side: Side, rt: Runtime, settings: PortSettings, target: MeshedTarget
) -> None:
    """Outbound to a meshed destination: detect first (its proxy never speaks first), then connect over mTLS
    offering the detected protocol. An HTTP client whose first handshake failed is still served by its HTTP
    proxy, whose pool connects again and answers 503 with the reason."""
    assert rec.original_dst is not None
    dst = rec.original_dst
    protocol = await _detect_first(legs, rec, rt, settings)
    if protocol is DetectedProtocol.HTTP1 and carries_http1_over_h2(rt, dst, target):
        # No connection of its own: the requests go on the proxy's shared HTTP/2 connection to ``dst``.
        rec.upstream = dst
        await proxy_http1_over_h2(legs, rec, rt)
        return
    sock = await _connect(legs, rec, side, rt, dst, settings)
    http = protocol in (DetectedProtocol.HTTP1, DetectedProtocol.H2) and rt.http is not None
    try:
        await _originate(legs, rec, rt, sock, dst, target, protocol, settings)
    except ConnectError as exc:
        if not http:
            raise
        log.info("conn=%d outbound %s -> %s: %s", rec.id, rec.client, dst, exc)
    await _dispatch(legs, rec, rt, protocol)


async def _detect_first(legs: Legs, rec: ConnRecord, rt: Runtime, settings: PortSettings) -> DetectedProtocol:
    """Detection before any connect (a meshed destination's proxy or a service address never speaks first);
    ports that are not ``detect`` are opaque."""
    if settings.protocol is not PortProtocol.DETECT:
        return DetectedProtocol.OPAQUE
    detection = await detect(legs.client.socket, None, timeout=settings.detect_timeout)
    rt.table.detected(rec, detection)
    return detection.protocol


async def _originate(
    legs: Legs,
    rec: ConnRecord,
    rt: Runtime,
    sock: socket.socket,
    dst: SockAddr,
    target: MeshedTarget,
    protocol: DetectedProtocol,
    settings: PortSettings,
) -> None:
    """Mesh mTLS on the connected ``sock`` offering ``protocol``'s ALPN name; ``legs.upstream_socket`` becomes the
    plain side and the record names the verified server (ConnectError: nothing is left open)."""
    legs.upstream_socket = None  # originate owns it now
    plain, peer, _ = await originate(rt, sock, dst, target, alpn_for(protocol), timeout=settings.detect_timeout)
    legs.upstream_socket = plain
    rec.meshed_with(peer)


async def _proxy_service(
    legs: Legs, rec: ConnRecord, side: Side, rt: Runtime, settings: PortSettings, plan: ServicePlan
) -> None:
    """Outbound to a service's virtual address, which exists nowhere: detect first (no connect to make), then HTTP
    is balanced per request (``layer7``), anything else per connection here."""
    rec.service = str(plan)
    protocol = await _detect_first(legs, rec, rt, settings)
    if protocol in (DetectedProtocol.HTTP1, DetectedProtocol.H2) and rt.http is not None:
        rec.upstream = rec.original_dst  # until the first request picks an endpoint
        await PROTOCOL_HANDLERS[protocol](legs, rec, rt)
        return
    call = ServiceCall(rt.services.state(plan), plan.default_route, method="")
    # The connection counts as in flight on its endpoint (the balancer's load) until it closes.
    rec.on_close = functools.partial(call.finish, ok=True)
    while True:
        endpoint = await call.endpoint()
        started = trio.current_time()
        try:
            await _connect_endpoint(legs, rec, side, rt, endpoint, settings, protocol)
        except ConnectError as exc:
            call.tried(ok=False)
            if call.may_retry(Failure.CONNECT, body_kept=True):
                log.info("conn=%d %s endpoint %s: %s; trying another", rec.id, rec.service, endpoint, exc)
                continue
            raise
        call.connected(trio.current_time() - started)
        break
    await _relay_opaque(legs, rec, rt)


async def _connect_endpoint(
    legs: Legs,
    rec: ConnRecord,
    side: Side,
    rt: Runtime,
    endpoint: SockAddr,
    settings: PortSettings,
    protocol: DetectedProtocol,
) -> None:
    """Connect to a service endpoint, over mesh mTLS when it (or ``outbound.meshed``) names an identity;
    ``legs.upstream_socket`` is the plain side either way."""
    legs.close_upstream()  # a failed try's, if any
    sock = await _connect(legs, rec, side, rt, endpoint, settings)
    target = meshed_target(side.direction, rt.store.current, endpoint, settings)
    if target is not None:
        await _originate(legs, rec, rt, sock, endpoint, target, protocol, settings)


async def _relay_opaque(legs: Legs, rec: ConnRecord, rt: Runtime) -> None:
    """Relay bytes untouched: with the relay engine when there is one, else with two trio tasks."""
    upstream = legs.upstream_socket
    assert upstream is not None
    legs.upstream_socket = None
    if rt.engine is not None:
        # From here the engine owns both sockets and finishes the record; this task ends.
        client = socket.socket(fileno=legs.client.socket.detach())
        legs.handed_off = True
        rt.engine.add(client, upstream, rec, functools.partial(_engine_done, rt, legs.upstream_key))
        return
    legs.upstream = trio.SocketStream(trio.socket.from_stdlib_socket(upstream))
    rec.state = "open"
    outcome = await relay(legs.client, legs.upstream, rec)
    if outcome is not Outcome.COMPLETED:
        rec.close_reason = outcome.value
        legs.reset_client = outcome is Outcome.UPSTREAM_RESET
        legs.reset_upstream = outcome is Outcome.CLIENT_RESET


ProtocolHandler = Callable[["Legs", ConnRecord, Runtime], Awaitable[None]]

# The dispatch point after detection: HTTP/1.1 and h2 go to the HTTP proxies (``layer7``); TLS stays opaque for
# good (the mesh does not terminate it here).
PROTOCOL_HANDLERS: Final[Mapping[DetectedProtocol, ProtocolHandler]] = {
    DetectedProtocol.HTTP1: proxy_http1,
    DetectedProtocol.H2: proxy_h2,
    DetectedProtocol.TLS: _relay_opaque,
    DetectedProtocol.OPAQUE: _relay_opaque,
}


def _remember(legs: Legs, remote: SockAddr, local: SockAddr) -> None:
    legs.remember_upstream(local, remote)


def _engine_done(
    rt: Runtime, upstream_key: tuple[SockAddr, SockAddr] | None, rec: ConnRecord, outcome: Outcome
) -> None:
    if upstream_key is not None:
        rt.guard.discard_upstream(*upstream_key)
    if rec.close_reason is None and outcome is not Outcome.COMPLETED:
        rec.close_reason = outcome.value
    _closed(rt, rec)


def _closed(rt: Runtime, rec: ConnRecord) -> None:
    rt.table.close(rec)
    _log_close(rec)


class Legs:
    """The two sockets of one proxied connection and how each must be closed."""

    def __init__(self, client: trio.SocketStream, side: Side, rt: Runtime) -> None:
        self.client = client
        self.side = side
        self.upstream: trio.SocketStream | None = None
        self.upstream_socket: socket.socket | None = None  # connected, not yet given to a relay
        self.upstream_key: tuple[SockAddr, SockAddr] | None = None  # (local, remote), known to the loop guard
        self.reset_client = False
        self.reset_upstream = False
        self.handed_off = False
        self._guard = rt.guard

    def remember_upstream(self, local: SockAddr, remote: SockAddr) -> None:
        self.upstream_key = (local, remote)
        self._guard.add_upstream(local, remote)

    def close_upstream(self) -> None:
        """Drop the upstream connection made so far (a service endpoint's that failed its mTLS handshake)."""
        if self.upstream_key is not None:
            self._guard.discard_upstream(*self.upstream_key)
            self.upstream_key = None
        if self.upstream_socket is not None:
            _close_socket(self.upstream_socket, reset=True)
            self.upstream_socket = None

    def close(self) -> None:
        if self.upstream_key is not None:
            self._guard.discard_upstream(*self.upstream_key)
        if self.upstream_socket is not None:
            _close_socket(self.upstream_socket, reset=self.reset_upstream)
        if self.upstream is not None:
            _close(self.upstream, reset=self.reset_upstream)
        _close(self.client, reset=self.reset_client)


def _close(stream: trio.SocketStream, *, reset: bool) -> None:
    """Close synchronously (safe inside a cancelled scope), with RST when ``reset``."""
    _close_socket(stream.socket, reset=reset)


def _close_socket(sock: socket.socket | trio.socket.SocketType, *, reset: bool) -> None:
    if reset:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()


def _log_close(rec: ConnRecord) -> None:
    level = logging.DEBUG if rec.close_reason == "completed" else logging.INFO
    if not log.isEnabledFor(level):
        return
    duration = (rec.closed_at or rec.opened_at) - rec.opened_at
    log.log(
        level,
        "conn=%d closed %s client=%s dst=%s reason=%s errno=%s to_upstream=%dB to_client=%dB duration=%.3fs",
        rec.id,
        rec.direction,
        rec.client,
        rec.target,
        rec.close_reason,
        rec.src_errno or rec.dst_errno or "-",
        rec.up.sent,
        rec.down.sent,
        duration,
    )
