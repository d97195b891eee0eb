"""A loopback HTTP/1.1 proxy for tests: a listener whose connections go through ``serve_http1`` to one upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

import trio

from dataplane.connections import ConnectionTable
from dataplane.http.request_id import RequestIds
from dataplane.http1.proxy import Http1Context, serve_http1
from dataplane.net.addr import SockAddr
from dataplane.net.connect import open_upstream
from dataplane.telemetry.http_stats import HttpStats
from dataplane.upstream.pool import ConnectionPool, PooledStream


@dataclass
class Http1Proxy:
    address: SockAddr
    stats: HttpStats
    pool: ConnectionPool[SockAddr]
    table: ConnectionTable
    contexts: list[Http1Context] = field(default_factory=list)


@asynccontextmanager
async def http1_proxy(upstream: SockAddr, *, response_timeout: float | None = None) -> AsyncIterator[Http1Proxy]:
    stats, table, ids = HttpStats(), ConnectionTable(), RequestIds()

    async def connect(dst: SockAddr) -> PooledStream[SockAddr]:
        sock = await open_upstream(dst, timeout=2.0, mark=0)
        return PooledStream(dst, sock)

    pool: ConnectionPool[SockAddr] = ConnectionPool(connect)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    proxy = Http1Proxy(SockAddr.from_sockname(listeners[0].socket.getsockname()), stats, pool, table)

    async def handle(stream: trio.SocketStream) -> None:
        client = SockAddr.from_sockname(stream.socket.getpeername())
        rec = table.open("outbound", client, proxy.address)
        ctx = Http1Context(rec, upstream, pool, stats, ids, response_timeout=response_timeout)
        proxy.contexts.append(ctx)
        async with stream:
            await serve_http1(stream, ctx)

    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        await nursery.start(trio.serve_listeners, handle, listeners)
        yield proxy
        nursery.cancel_scope.cancel()


Harness = Callable[[SockAddr], AbstractAsyncContextManager[Http1Proxy]]
"""``http1_proxy`` or the engine's ``engine_proxy``: tests that must hold for both take either."""
