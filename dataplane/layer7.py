"""Plugging the HTTP proxies into the connection handler: the protocol handlers for detected ``http1`` and ``h2``
connections, and the upstream connectors of the keep-alive pools.

The handler has already connected to the original destination before detection (so a server that speaks first
is noticed); that first upstream connection seeds the pool, so the first request costs no second connect. Every
upstream connection the pools open is registered with the loop guard like the handler's own, and forgotten
when it closes. Under TPROXY an upstream connection is bound to the client's own address, so such connections
are pooled per client connection only, never shared.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

from dataplane.connections import ConnRecord
from dataplane.http.authorize import RequestAuthorizer
from dataplane.http1.carried import CarriedContext, serve_carried
from dataplane.http1.proxy import Http1Context, serve_http1
from dataplane.http1.restored import RestoredContext, serve_restored
from dataplane.http2.proxy import H2Context, serve_h2
from dataplane.http2.shared import Negotiated
from dataplane.mtls.inner import CARRIAGE_OFFER, CARRIED_HTTP1
from dataplane.mtls.originate import meshed_target, originate
from dataplane.net.addr import SockAddr
from dataplane.net.connect import open_upstream
from dataplane.net.loop_guard import LoopGuard
from dataplane.runtime import Runtime
from dataplane.services.routing import ServiceRouting
from dataplane.tls import alpn
from dataplane.upstream.pool import Connect, ConnectionPool, PooledStream
from policy.index import MeshedTarget, PortSettings

if TYPE_CHECKING:
    from dataplane.handler import Legs, Side


def pool_connector(
    side: Side, rt: Runtime, *, source_ip: str | None = None, offer: str = alpn.HTTP1
) -> Connect[SockAddr]:
    """How a pool opens a new upstream connection for ``side``: the policy's connect timeout for that
    destination, the proxy's socket mark, the loop guard told about it, and mesh mTLS (ALPN ``offer``) when the
    policy marks the destination as meshed."""

    async def connect(dst: SockAddr) -> PooledStream[SockAddr]:
        pooled, _ = await _open(side, rt, dst, source_ip=source_ip, offer=offer)
        return pooled

    return connect


async def _open(
    side: Side, rt: Runtime, dst: SockAddr, *, source_ip: str | None, offer: str | Sequence[str]
) -> tuple[PooledStream[SockAddr], tuple[str, str] | None]:
    """A new upstream connection to ``dst`` (see ``pool_connector``) and, when meshed, the peer's identity and the
    ALPN name it chose."""
    snapshot = rt.store.current
    settings = side.port_settings(snapshot, dst)
    if side.direction == "outbound":
        settings = snapshot.index.endpoint_settings(dst.ip, dst.port) or settings
    meshed = meshed_target(side.direction, snapshot, dst, settings)
    local: list[SockAddr] = []

    def remember(address: SockAddr) -> None:
        rt.guard.add_upstream(address, dst)
        local.append(address)

    agreed = None
    try:
        sock = await open_upstream(
            dst, timeout=settings.connect_timeout, mark=rt.mark, source_ip=source_ip, on_local_address=remember
        )
        if meshed is not None:
            sock, peer, name = await originate(rt, sock, dst, meshed, offer, timeout=settings.detect_timeout)
            agreed = (peer, name)
    except BaseException:
        _forget(rt.guard, local, dst)
        raise
    pooled = PooledStream(dst, sock, on_close=functools.partial(_forget, rt.guard, local, dst))
    if agreed is not None:
        pooled.peer = agreed[0]
    return pooled, agreed


def carries_http1_over_h2(rt: Runtime, dst: SockAddr, target: MeshedTarget) -> bool:
    """Whether an HTTP/1.1 client of the meshed ``dst`` goes over the shared HTTP/2 connection there: the policy
    asks for it and the peer proxy did not recently decline it."""
    http = rt.http
    return target.http1_over_h2 and http is not None and http.carried is not None and not http.carried.declined(dst)


async def proxy_http1_over_h2(legs: Legs, rec: ConnRecord, rt: Runtime) -> None:
    """Outbound HTTP/1.1 to a meshed destination as streams of the proxy's shared HTTP/2 connection there
    (``carries_http1_over_h2``); the handler opened no upstream connection for it."""
    http = rt.http
    assert http is not None and http.carried is not None and rec.upstream is not None
    side, dst = legs.side, rec.upstream
    settings = side.port_settings(rt.store.current, dst)

    async def connect() -> Negotiated[SockAddr]:
        pooled, agreed = await _open(side, rt, dst, source_ip=None, offer=CARRIAGE_OFFER)
        assert agreed is not None, "carriage to a destination that is not meshed"
        peer, name = agreed
        return Negotiated(pooled, peer, carries_h2=name == alpn.HTTP1_OVER_H2)

    async def fallback(initial: bytes, older_peer: Negotiated[SockAddr] | None) -> None:
        # Today's path for the rest of this connection: Upgrade/CONNECT/100-continue, or an older peer proxy (whose
        # connection is the first of the pool's).
        pool = http.pools[side.direction]
        if older_peer is not None:
            rec.meshed_with(older_peer.peer)
            rec.dst_opened = True
            pool.release(older_peer.stream, reusable=True)
        ctx = Http1Context(
            rec, dst, pool, http.stats, http.ids, response_timeout=settings.response_timeout, drain=http.drain
        )
        await serve_http1(legs.client, ctx, initial=initial)

    ctx = CarriedContext(
        rec=rec,
        upstream=dst,
        shared=http.carried,
        connect=connect,
        fallback=fallback,
        stats=http.stats,
        ids=http.ids,
        response_timeout=settings.response_timeout,
        drain=http.drain,
    )
    rec.state = "open"
    await serve_carried(legs.client, ctx)


async def proxy_h2(legs: Legs, rec: ConnRecord, rt: Runtime) -> None:
    """Serve the client's HTTP/2 streams over HTTP/2 to the upstream (``PROTOCOL_HANDLERS[H2]``): the connection
    the handler opened carries them, more are opened when the upstream sends GOAWAY."""
    http = rt.http
    assert http is not None and rec.upstream is not None
    if rec.protocol == CARRIED_HTTP1 and rec.direction == "inbound":
        await _proxy_restored(legs, rec, rt)
        return
    side, dst = legs.side, rec.upstream
    first_sock, legs.upstream_socket = legs.upstream_socket, None  # the loop guard entry stays with legs
    connector = pool_connector(side, rt, source_ip=side.source_ip(rec.client), offer=alpn.H2)
    opened: list[PooledStream[SockAddr]] = []
    peers: dict[SockAddr, str] = {}  # a service's endpoints reached over mesh mTLS: their verified identities
    settings = side.port_settings(rt.store.current, dst)

    async def connect_to(target: SockAddr) -> trio.SocketStream:
        pooled = await connector(target)
        opened.append(pooled)  # closed (and forgotten by the loop guard) when this client connection ends
        if pooled.peer is not None:
            peers[target] = pooled.peer
        return trio.SocketStream(trio.socket.from_stdlib_socket(pooled.sock))

    ctx = H2Context(
        rec=rec,
        upstream=dst,
        first=trio.SocketStream(trio.socket.from_stdlib_socket(first_sock)) if first_sock is not None else None,
        connect=functools.partial(connect_to, dst),
        stats=http.stats,
        ids=http.ids,
        counters=http.h2_clients,
        upstream_counters=http.h2_upstreams,
        drain=http.drain,
        response_timeout=settings.response_timeout,
        stream_idle_timeout=settings.stream_idle_timeout,
        authorize=_authorizer(rec, rt, settings),
        routing=_routing(rec, rt),
        connect_to=connect_to,
        peers=peers,
    )
    rec.state = "open"
    try:
        await serve_h2(legs.client, ctx)
    finally:
        for pooled in opened:
            pooled.close()


async def proxy_http1(legs: Legs, rec: ConnRecord, rt: Runtime) -> None:
    """Serve the client's HTTP/1.1 requests (``PROTOCOL_HANDLERS[HTTP1]``): in the worker's HTTP/1.1 engine when
    there is one, which hands what it does not serve itself to ``serve_http1``. Connections with their own pool
    (TPROXY) are served by ``serve_http1`` alone."""
    http = rt.http
    assert http is not None and rec.upstream is not None
    side, dst = legs.side, rec.upstream
    first, pool, own_pool = _http1_upstreams(legs, rec, rt)
    rec.state = "open"
    settings = side.port_settings(rt.store.current, dst)
    routing = _routing(rec, rt)
    ctx = Http1Context(
        rec,
        dst,
        pool,
        http.stats,
        http.ids,
        response_timeout=settings.response_timeout,
        drain=http.drain,
        authorize=_authorizer(rec, rt, settings),
        routing=routing,
        departures=rt.services.departures,
    )
    engine = http.h1_engine
    if engine is not None and own_pool is None:
        await engine.serve(legs.client, ctx, first=first)
        return
    if first is not None:
        pool.release(first, reusable=True)
    try:
        await serve_http1(legs.client, ctx)
    finally:
        if own_pool is not None:
            own_pool.close_idle()


async def _proxy_restored(legs: Legs, rec: ConnRecord, rt: Runtime) -> None:
    """Inbound HTTP/1.1 carried over HTTP/2 by the peer proxy: each stream to the application as HTTP/1.1, on the
    inbound keep-alive pool (the connection the handler opened seeds it)."""
    http = rt.http
    assert http is not None and rec.upstream is not None
    side, dst = legs.side, rec.upstream
    first, pool, own_pool = _http1_upstreams(legs, rec, rt)
    if first is not None:
        pool.release(first, reusable=True)
    settings = side.port_settings(rt.store.current, dst)
    ctx = RestoredContext(
        rec=rec,
        upstream=dst,
        pool=pool,
        stats=http.stats,
        ids=http.ids,
        counters=http.h2_clients,
        drain=http.drain,
        response_timeout=settings.response_timeout,
        authorize=_authorizer(rec, rt, settings),
    )
    rec.state = "open"
    try:
        await serve_restored(legs.client, ctx)
    finally:
        if own_pool is not None:
            own_pool.close_idle()


def _http1_upstreams(
    legs: Legs, rec: ConnRecord, rt: Runtime
) -> tuple[PooledStream[SockAddr] | None, ConnectionPool[SockAddr], ConnectionPool[SockAddr] | None]:
    """The HTTP/1.1 upstream side of a connection: the handler's connection as a pooled one (None: a meshed
    destination whose first handshake failed, the pool tries again), the pool, and that pool again when it is the
    connection's own (TPROXY: bound to the client's address; close its idle connections at the end)."""
    http = rt.http
    assert http is not None and rec.upstream is not None
    side, dst = legs.side, rec.upstream
    first_sock, legs.upstream_socket = legs.upstream_socket, None
    guard_key, legs.upstream_key = legs.upstream_key, None  # the pooled connection forgets it when it closes
    first = None
    if first_sock is not None:
        first = PooledStream(
            dst,
            first_sock,
            on_close=functools.partial(rt.guard.discard_upstream, *guard_key) if guard_key is not None else None,
        )
    elif guard_key is not None:
        rt.guard.discard_upstream(*guard_key)
    source_ip = side.source_ip(rec.client)
    if source_ip is None:
        return first, http.pools[side.direction], None
    own_pool = ConnectionPool(pool_connector(side, rt, source_ip=source_ip))
    return first, own_pool, own_pool


def _routing(rec: ConnRecord, rt: Runtime) -> ServiceRouting | None:
    """Per-request endpoints for a connection to a service's virtual address; None: the original destination."""
    if rec.service is None or rec.original_dst is None:
        return None
    return ServiceRouting(rt.services, rt.store, rec.original_dst)


def _authorizer(rec: ConnRecord, rt: Runtime, settings: PortSettings) -> RequestAuthorizer | None:
    """Per-request authorization for an inbound connection on a port with rules; None: nothing to check."""
    if rec.direction != "inbound" or not settings.authorization.configured:
        return None
    return RequestAuthorizer(settings.authorization, rec.peer_id, rt.authz, str(rec.target), rec.tls)


def _forget(guard: LoopGuard, local: list[SockAddr], dst: SockAddr) -> None:
    for address in local:
        guard.discard_upstream(address, dst)
    local.clear()
