"""The keep-alive pool over real loopback connections to a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from dataplane.upstream.pool import ConnectionPool, PooledStream

Key = tuple[str, int]


class Server:
    """A loopback server that keeps every accepted connection, so tests can close one from the server's side."""

    def __init__(self) -> None:
        self.accepted: list[trio.SocketStream] = []
        self.port = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        async with listeners[0]:
            while True:
                self.accepted.append(await listeners[0].accept())


async def until_readable(conn: PooledStream[Key]) -> None:
    """Until what the server sent has reached our socket (real loopback: a moment, not a fixed sleep)."""
    with trio.fail_after(5):
        await trio.lowlevel.wait_readable(conn.sock)


@asynccontextmanager
async def pool_and_server(
    *, idle_timeout: float = 60.0, max_idle_per_key: int = 64
) -> AsyncIterator[tuple[ConnectionPool[Key], Server, list[Key]]]:
    server = Server()
    closed: list[Key] = []

    async def connect(key: Key) -> PooledStream[Key]:
        stream = await trio.open_tcp_stream(*key)
        return PooledStream(key, stream, on_close=lambda: closed.append(key))

    pool: ConnectionPool[Key] = ConnectionPool(connect, idle_timeout=idle_timeout, max_idle_per_key=max_idle_per_key)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        await nursery.start(pool.run)
        yield pool, server, closed
        nursery.cancel_scope.cancel()


async def test_a_released_connection_is_reused_for_the_same_key() -> None:
    async with pool_and_server() as (pool, server, _):
        key = ("127.0.0.1", server.port)
        first = await pool.acquire(key)
        assert not first.reused
        local = first.sock.getsockname()
        pool.release(first, reusable=True)
        assert pool.idle_for(key) == 1
        again = await pool.acquire(key)
        assert again is first and again.reused and again.sock.getsockname() == local
        # Two requests in flight need two connections.
        second = await pool.acquire(key)
        assert second is not first
        assert (pool.opened, pool.reused) == (2, 1)
        await trio.testing.wait_all_tasks_blocked()
        assert len(server.accepted) == 2


async def test_a_connection_not_reusable_is_closed_not_pooled() -> None:
    async with pool_and_server() as (pool, server, closed):
        key = ("127.0.0.1", server.port)
        conn = await pool.acquire(key)
        pool.release(conn, reusable=False)
        assert pool.idle == 0 and closed == [key]
        await trio.testing.wait_all_tasks_blocked()
        assert await server.accepted[0].receive_some(10) == b""  # the server saw our FIN


async def test_an_idle_connection_the_server_closed_is_never_handed_out() -> None:
    async with pool_and_server() as (pool, server, closed):
        key = ("127.0.0.1", server.port)
        conn = await pool.acquire(key)
        pool.release(conn, reusable=True)
        await trio.testing.wait_all_tasks_blocked()
        await server.accepted[0].aclose()  # the server's keep-alive timeout fired
        await until_readable(conn)
        fresh = await pool.acquire(key)
        assert fresh is not conn and not fresh.reused
        assert closed == [key]


async def test_a_server_talking_out_of_turn_makes_the_connection_unusable() -> None:
    async with pool_and_server() as (pool, server, _):
        key = ("127.0.0.1", server.port)
        conn = await pool.acquire(key)
        pool.release(conn, reusable=True)
        await trio.testing.wait_all_tasks_blocked()
        await server.accepted[0].send_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
        await until_readable(conn)
        assert (await pool.acquire(key)) is not conn


async def test_idle_connections_expire_and_are_closed_by_the_sweeper(autojump_clock: trio.abc.Clock) -> None:
    async with pool_and_server(idle_timeout=30) as (pool, server, closed):
        key = ("127.0.0.1", server.port)
        a, b = await pool.acquire(key), await pool.acquire(key)
        pool.release(a, reusable=True)
        await trio.sleep(20)
        pool.release(b, reusable=True)
        await trio.sleep(15)  # a is 35 s idle, b 15 s
        assert pool.idle == 1 and closed == [key]
        assert (await pool.acquire(key)) is b
        pool.release(b, reusable=True)
        await trio.sleep(31)
        assert pool.idle == 0 and closed == [key, key]


async def test_the_pool_keeps_at_most_max_idle_per_key() -> None:
    async with pool_and_server(max_idle_per_key=2) as (pool, server, closed):
        key = ("127.0.0.1", server.port)
        conns = [await pool.acquire(key) for _ in range(3)]
        for conn in conns:
            pool.release(conn, reusable=True)
        assert pool.idle == 2 and closed == [key]
        assert (await pool.acquire(key)) is conns[2]


async def test_shutdown_closes_every_idle_connection_and_later_releases() -> None:
    server = Server()
    closed: list[Key] = []

    async def connect(key: Key) -> PooledStream[Key]:
        return PooledStream(key, await trio.open_tcp_stream(*key), on_close=lambda: closed.append(key))

    pool: ConnectionPool[Key] = ConnectionPool(connect)
    async with trio.open_nursery() as outer:
        await outer.start(server.serve)
        key = ("127.0.0.1", server.port)
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            idle, busy = await pool.acquire(key), await pool.acquire(key)
            pool.release(idle, reusable=True)
            nursery.cancel_scope.cancel()
        assert closed == [key] and pool.idle == 0
        pool.release(busy, reusable=True)  # a request that finished during the drain
        assert closed == [key, key] and pool.idle == 0
        outer.cancel_scope.cancel()


async def test_a_closed_key_drains_until_it_is_used_again() -> None:
    async with pool_and_server() as (pool, server, closed):
        key = ("127.0.0.1", server.port)
        idle, busy = await pool.acquire(key), await pool.acquire(key)
        pool.release(idle, reusable=True)
        pool.close_key(key)  # a removed endpoint: the idle one closes now...
        assert pool.idle_for(key) == 0 and closed == [key]
        pool.release(busy, reusable=True)  # ...and the busy one when its request is done
        assert pool.idle_for(key) == 0 and closed == [key, key]
        again = await pool.acquire(key)  # added back: pooled as before
        pool.release(again, reusable=True)
        assert pool.idle_for(key) == 1
