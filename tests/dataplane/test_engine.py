"""The relay engine over real sockets: both ways, half-close, splice for bulk, backpressure, resets, cancel."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from dataplane.connections import ConnectionTable, ConnRecord
from dataplane.net.addr import SockAddr
from dataplane.tcp.engine import CHUNK, RelayEngine
from dataplane.tcp.relay import Outcome
from tests.dataplane.sockets import plain, read_all, reset, tcp_pair

MiB = 1 << 20


class Relayed:
    """One connection relayed by the engine: the app's end, the server's end, the record and its outcome."""

    def __init__(self, app: trio.SocketStream, server: trio.SocketStream, rec: ConnRecord) -> None:
        self.app = app
        self.server = server
        self.rec = rec
        self.outcomes: list[Outcome] = []
        self.done = trio.Event()

    def on_done(self, rec: ConnRecord, outcome: Outcome) -> None:
        assert rec is self.rec
        self.outcomes.append(outcome)
        self.done.set()


@asynccontextmanager
async def engine_running(**kwargs: object) -> AsyncIterator[RelayEngine]:
    engine = RelayEngine(**kwargs)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        yield engine
        nursery.cancel_scope.cancel()


async def relayed(engine: RelayEngine, table: ConnectionTable | None = None) -> Relayed:
    app, proxy_client = await tcp_pair()
    proxy_upstream, server = await tcp_pair()
    rec = (table or ConnectionTable()).open("outbound", SockAddr("127.0.0.1", 1), SockAddr("127.0.0.1", 2))
    conn = Relayed(app, server, rec)
    engine.add(plain(proxy_client), plain(proxy_upstream), rec, conn.on_done)
    return conn


async def test_copies_both_ways_and_completes() -> None:
    async with engine_running() as engine:
        c = await relayed(engine)
        await c.app.send_all(b"hello upstream")
        assert await c.server.receive_some(100) == b"hello upstream"
        await c.server.send_all(b"hello client!")
        assert await c.app.receive_some(100) == b"hello client!"
        await c.app.send_eof()
        assert await c.server.receive_some(100) == b""
        await c.server.send_eof()
        assert await c.app.receive_some(100) == b""
        with trio.fail_after(5):
            await c.done.wait()
        assert engine.relaying == 0
    assert c.outcomes == [Outcome.COMPLETED]
    assert (c.rec.up.received, c.rec.up.sent, c.rec.down.received, c.rec.down.sent) == (14, 14, 13, 13)


@pytest.mark.parametrize("size", [1000, 5 * MiB])  # small: copy path; large: switches to splice
async def test_half_close_then_the_reply_still_arrives(size: int) -> None:
    payload = os.urandom(size)
    async with engine_running() as engine:
        c = await relayed(engine)
        await c.app.send_all(b"request")
        await c.app.send_eof()
        assert await read_all(c.server) == b"request"
        with trio.fail_after(5):
            while c.rec.state != "client_half_closed":
                await trio.sleep(0.001)
        async with trio.open_nursery() as nursery:

            async def respond() -> None:
                await c.server.send_all(payload)
                await c.server.send_eof()

            nursery.start_soon(respond)
            assert await read_all(c.app) == payload
        with trio.fail_after(5):
            await c.done.wait()
    assert c.outcomes == [Outcome.COMPLETED]
    assert c.rec.down.sent == size


async def test_bulk_both_ways_uses_splice_and_gives_pipes_back() -> None:
    block = os.urandom(MiB)
    total = 40 * MiB

    async def send_then_fin(stream: trio.SocketStream) -> None:
        for _ in range(total // MiB):
            await stream.send_all(block)
        await stream.send_eof()

    async def digest(stream: trio.SocketStream) -> str:
        h = hashlib.sha256()
        while chunk := await stream.receive_some(1 << 18):
            h.update(chunk)
        return h.hexdigest()

    expected = hashlib.sha256(block * (total // MiB)).hexdigest()
    async with engine_running() as engine:
        c = await relayed(engine)
        results: dict[str, str] = {}

        async def collect(name: str, stream: trio.SocketStream) -> None:
            results[name] = await digest(stream)

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_then_fin, c.app)
                nursery.start_soon(send_then_fin, c.server)
                nursery.start_soon(collect, "at_server", c.server)
                nursery.start_soon(collect, "at_app", c.app)
            await c.done.wait()
        assert engine.pipes.created >= 1, "bulk transfer never switched to splice"
        assert engine.pipes.in_use == 0
    assert results == {"at_server": expected, "at_app": expected}
    assert (c.rec.up.sent, c.rec.down.sent) == (total, total)
    assert c.outcomes == [Outcome.COMPLETED]


@pytest.mark.parametrize("splice", [False, True])
async def test_backpressure_bounds_what_the_proxy_holds(splice: bool) -> None:
    """The server does not read: the engine holds at most one chunk (or one pipe), the rest stays in the kernel
    socket buffers and the app's writes block."""
    sent_by_app = 0
    async with engine_running(splice=splice) as engine:
        c = await relayed(engine)

        async def flood() -> None:
            nonlocal sent_by_app
            block = b"x" * CHUNK
            for _ in range(400):  # 25 MiB: far more than the socket buffers hold
                await c.app.send_all(block)
                sent_by_app += CHUNK

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood)
            with trio.move_on_after(1.0):  # let everything fill up; the flood must stall
                while sent_by_app < 400 * CHUNK:
                    await trio.sleep(0.05)
            assert sent_by_app < 400 * CHUNK, "the app was never pushed back"
            held = c.rec.up.received - c.rec.up.sent
            assert 0 <= held <= engine.max_held_per_direction
            received = 0
            with trio.fail_after(30):
                while received < 400 * CHUNK:
                    chunk = await c.server.receive_some(1 << 18)
                    received += len(chunk)
                    assert c.rec.up.received - c.rec.up.sent <= engine.max_held_per_direction
    assert received == 400 * CHUNK


async def test_upstream_reset_resets_the_client() -> None:
    async with engine_running() as engine:
        c = await relayed(engine)
        await c.app.send_all(b"ping")
        assert await c.server.receive_some(10) == b"ping"
        reset(c.server)
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError) as info:
            await read_all(c.app)
        assert isinstance(info.value.__cause__, ConnectionResetError)
        await c.done.wait()
    assert c.outcomes == [Outcome.UPSTREAM_RESET]
    assert c.rec.dst_errno == "ECONNRESET"


async def test_client_reset_resets_the_upstream() -> None:
    async with engine_running() as engine:
        c = await relayed(engine)
        await c.app.send_all(b"ping")
        assert await c.server.receive_some(10) == b"ping"
        reset(c.app)
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError):
            await read_all(c.server)
        await c.done.wait()
    assert c.outcomes == [Outcome.CLIENT_RESET]
    assert c.rec.src_errno == "ECONNRESET"


async def test_cancel_closes_both_sides_with_a_fin_once() -> None:
    async with engine_running() as engine:
        c = await relayed(engine)
        await c.app.send_all(b"ping")
        assert await c.server.receive_some(10) == b"ping"
        c.rec.cancel("idle_timeout")
        c.rec.cancel("drain_timeout")  # a second reason changes nothing
        with trio.fail_after(5):
            assert await c.app.receive_some(10) == b""
            assert await c.server.receive_some(10) == b""
            await c.done.wait()
    assert c.outcomes == [Outcome.CANCELLED]
    assert c.rec.close_reason == "idle_timeout"


async def test_many_connections_at_once() -> None:
    async with engine_running() as engine:
        conns = [await relayed(engine) for _ in range(100)]
        assert engine.relaying == 100

        async def exchange(i: int, c: Relayed) -> None:
            for round_ in range(20):
                message = f"{i}:{round_}".encode()
                await c.app.send_all(message)
                assert await c.server.receive_some(100) == message
                await c.server.send_all(message[::-1])
                assert await c.app.receive_some(100) == message[::-1]
            await c.app.send_eof()
            await c.server.send_eof()
            assert await c.app.receive_some(10) == b""
            await c.done.wait()

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for i, c in enumerate(conns):
                    nursery.start_soon(exchange, i, c)
        assert engine.relaying == 0
    assert all(c.outcomes == [Outcome.COMPLETED] for c in conns)
