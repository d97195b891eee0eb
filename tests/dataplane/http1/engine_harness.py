"""A loopback HTTP/1.1 proxy for tests whose connections go through the epoll engine (``Http1Engine.serve``),
as ``proxy_http1`` runs them: the same shape as ``harness.http1_proxy``, plus the engine."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from dataplane.connections import ConnectionTable
from dataplane.drain import Drain
from dataplane.http.request_id import RequestIds
from dataplane.http1.engine import Http1Engine
from dataplane.http1.proxy import Http1Context
from dataplane.net.addr import SockAddr
from dataplane.net.connect import open_upstream
from dataplane.telemetry.http_stats import HttpStats
from dataplane.upstream.pool import ConnectionPool, PooledStream
from tests.dataplane.http1.harness import Http1Proxy


@dataclass
class EngineProxy(Http1Proxy):
    engine: Http1Engine | None = None
    drain: Drain | None = None


@asynccontextmanager
async def engine_proxy(
    upstream: SockAddr, *, response_timeout: float | None = None, upstream_sndbuf: int | None = None
) -> AsyncIterator[EngineProxy]:
    """``upstream_sndbuf``: a small send buffer on upstream connections (with a small window at the upstream, a
    request then does not fit in one send)."""
    stats, table, ids, drain = HttpStats(), ConnectionTable(), RequestIds(), Drain()
    engine = Http1Engine(drain=drain)

    async def connect(dst: SockAddr) -> PooledStream[SockAddr]:
        sock = await open_upstream(dst, timeout=2.0, mark=0)
        if upstream_sndbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, upstream_sndbuf)
        return PooledStream(dst, sock)

    pool: ConnectionPool[SockAddr] = ConnectionPool(connect)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    address = SockAddr.from_sockname(listeners[0].socket.getsockname())
    proxy = EngineProxy(address, stats, pool, table, engine=engine, drain=drain)

    async def handle(stream: trio.SocketStream) -> None:
        client = SockAddr.from_sockname(stream.socket.getpeername())
        rec = table.open("outbound", client, proxy.address)
        ctx = Http1Context(rec, upstream, pool, stats, ids, response_timeout=response_timeout, drain=drain)
        proxy.contexts.append(ctx)
        try:
            async with stream:
                with trio.CancelScope() as scope:
                    rec.on_cancel = scope.cancel  # as the connection handler does: ConnRecord.cancel ends it
                    await engine.serve(stream, ctx)
        finally:
            table.close(rec)

    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        await nursery.start(engine.run)
        await nursery.start(trio.serve_listeners, handle, listeners)
        yield proxy
        nursery.cancel_scope.cancel()
