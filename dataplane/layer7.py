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
from typing import TYPE_CHECKING

import trio

from dataplane.connections import ConnRecord
from dataplane.http.authorize import RequestAuthorizer
from dataplane.http1.proxy import Http1Context, serve_http1
from dataplane.http2.proxy import H2Context, serve_h2
from dataplane.mtls.originate import meshed_target, originate
from dataplane.net.addr import SockAddr
from dataplane.net.connect import open_upstream
from dataplane.net.loop_guard import LoopGuard
from dataplane.runtime import Runtime
from dataplane.tls import alpn
from dataplane.upstream.pool import Connect, ConnectionPool, PooledStream
from policy.index import PortSettings

if TYPE_CHECKING:
    from dataplane.handler import Legs, Side


def pool_connector(
    side: Side, rt: Runtime, *, source_ip: str | None = None, offer: str = alpn.HTTP1
) -> Connect[SockAddr]:
    """How a pool opens a new upstream connection for ``side``: the policy's connect timeout for that
    destination, the proxy's socket mark, the loop guard told about it, and mesh mTLS (ALPN ``offer``) when the
    policy marks the destination as meshed."""

    async def connect(dst: SockAddr) -> PooledStream[SockAddr]:
        snapshot = rt.store.current
        settings = side.port_settings(snapshot, dst)
        meshed = meshed_target(side.direction, snapshot, dst, settings)
        local: list[SockAddr] = []

        def remember(address: SockAddr) -> None:
            rt.guard.add_upstream(address, dst)
            local.append(address)

        try:
            sock = await open_upstream(
                dst, timeout=settings.connect_timeout, mark=rt.mark, source_ip=source_ip, on_local_address=remember
            )
            if meshed is not None:
                sock, _ = await originate(rt, sock, dst, meshed, offer, timeout=settings.connect_timeout)
        except BaseException:
            _forget(rt.guard, local, dst)
            raise
        return PooledStream(dst, sock, on_close=functools.partial(_forget, rt.guard, local, dst))

    return connect


async def proxy_h2(legs: Legs, rec: ConnRecord, rt: Runtime) -> None:
    """Serve the client's HTTP/2 streams over HTTP/2 to the upstream (``PROTOCOL_HANDLERS[H2]``): the connection
    the handler opened carries them, more are opened when the upstream sends GOAWAY."""
    http = rt.http
    assert http is not None and rec.upstream is not None
    side, dst = legs.side, rec.upstream
    first_sock, legs.upstream_socket = legs.upstream_socket, None  # the loop guard entry stays with legs
    connector = pool_connector(side, rt, source_ip=side.source_ip(rec.client), offer=alpn.H2)
    opened: list[PooledStream[SockAddr]] = []
    settings = side.port_settings(rt.store.current, dst)

    async def connect() -> trio.SocketStream:
        pooled = await connector(dst)
        opened.append(pooled)  # closed (and forgotten by the loop guard) when this client connection ends
        return trio.SocketStream(trio.socket.from_stdlib_socket(pooled.sock))

    ctx = H2Context(
        rec=rec,
        upstream=dst,
        first=trio.SocketStream(trio.socket.from_stdlib_socket(first_sock)) if first_sock is not None else None,
        connect=connect,
        stats=http.stats,
        ids=http.ids,
        counters=http.h2_clients,
        upstream_counters=http.h2_upstreams,
        drain=http.drain,
        response_timeout=settings.response_timeout,
        stream_idle_timeout=settings.stream_idle_timeout,
        authorize=_authorizer(rec, rt, settings),
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
    first_sock, legs.upstream_socket = legs.upstream_socket, None
    guard_key, legs.upstream_key = legs.upstream_key, None  # the pooled connection forgets it when it closes
    first = None
    if first_sock is not None:  # None: a meshed destination whose first handshake failed (the pool tries again)
        first = PooledStream(
            dst,
            first_sock,
            on_close=functools.partial(rt.guard.discard_upstream, *guard_key) if guard_key is not None else None,
        )
    elif guard_key is not None:
        rt.guard.discard_upstream(*guard_key)
    source_ip = side.source_ip(rec.client)
    own_pool: ConnectionPool[SockAddr] | None = None
    if source_ip is None:
        pool = http.pools[side.direction]
    else:
        pool = own_pool = ConnectionPool(pool_connector(side, rt, source_ip=source_ip))
    rec.state = "open"
    settings = side.port_settings(rt.store.current, dst)
    ctx = Http1Context(
        rec,
        dst,
        pool,
        http.stats,
        http.ids,
        response_timeout=settings.response_timeout,
        drain=http.drain,
        authorize=_authorizer(rec, rt, settings),
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


def _authorizer(rec: ConnRecord, rt: Runtime, settings: PortSettings) -> RequestAuthorizer | None:
    """Per-request authorization for an inbound connection on a port with rules; None: nothing to check."""
    if rec.direction != "inbound" or not settings.authorization.configured:
        return None
    return RequestAuthorizer(settings.authorization, rec.peer_id, rt.authz, str(rec.target), rec.tls)


def _forget(guard: LoopGuard, local: list[SockAddr], dst: SockAddr) -> None:
    for address in local:
        guard.discard_upstream(address, dst)
    local.clear()
