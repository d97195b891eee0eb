"""The relay: both directions, half-close, backpressure, resets, byte counts."""

from __future__ import annotations

import socket
import struct

import trio
import trio.testing

from dataplane.connections import ConnectionTable, ConnRecord
from dataplane.net.addr import SockAddr
from dataplane.tcp.relay import CHUNK, Outcome, relay
from tests.dataplane.sockets import tcp_pair


def _record() -> ConnRecord:
    rec = ConnectionTable().open("outbound", SockAddr("127.0.0.1", 1), SockAddr("127.0.0.1", 2))
    rec.state = "open"
    return rec


async def test_copies_both_ways_and_counts_bytes() -> None:
    app, proxy_client = trio.testing.memory_stream_pair()
    proxy_upstream, server = trio.testing.memory_stream_pair()
    rec = _record()
    outcomes: list[Outcome] = []

    async def run_relay() -> None:
        outcomes.append(await relay(proxy_client, proxy_upstream, rec))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_relay)
        await app.send_all(b"hello upstream")
        assert await server.receive_some(100) == b"hello upstream"
        await server.send_all(b"hello client!")
        assert await app.receive_some(100) == b"hello client!"
        await app.send_eof()
        assert await server.receive_some(100) == b""
        await server.send_eof()
        assert await app.receive_some(100) == b""
    assert outcomes == [Outcome.COMPLETED]
    assert (rec.up.received, rec.up.sent) == (14, 14)
    assert (rec.down.received, rec.down.sent) == (13, 13)
    assert rec.state == "closing"


async def test_half_close_keeps_the_other_direction_flowing() -> None:
    """The client says EOF first; the upstream answers after seeing EOF, and the answer still arrives."""
    app, proxy_client = trio.testing.memory_stream_pair()
    proxy_upstream, server = trio.testing.memory_stream_pair()
    rec = _record()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(relay, proxy_client, proxy_upstream, rec)
        await app.send_all(b"request")
        await app.send_eof()
        got = b""
        while chunk := await server.receive_some(100):
            got += chunk
        assert got == b"request"
        await trio.testing.wait_all_tasks_blocked()
        assert rec.state == "client_half_closed"
        for _ in range(5):
            await server.send_all(b"response part ")
        await server.send_eof()
        answer = b""
        while chunk := await app.receive_some(1000):
            answer += chunk
    assert answer == b"response part " * 5
    assert rec.down.sent == len(answer)


async def test_half_close_over_real_sockets() -> None:
    """shutdown(SHUT_WR) on the client reaches the server as EOF; the server's reply comes back in full."""
    app, proxy_client = await tcp_pair()
    proxy_upstream, server = await tcp_pair()
    rec = _record()
    payload = bytes(range(256)) * 4096  # 1 MiB
    async with trio.open_nursery() as nursery:
        nursery.start_soon(relay, proxy_client, proxy_upstream, rec)

        async def client_side() -> None:
            await app.send_all(b"GET everything")
            await app.send_eof()
            received = bytearray()
            while chunk := await app.receive_some(CHUNK):
                received += chunk
            assert bytes(received) == payload

        nursery.start_soon(client_side)
        request = b""
        while chunk := await server.receive_some(100):
            request += chunk
        assert request == b"GET everything"
        await server.send_all(payload)
        await server.send_eof()
    assert rec.up.sent == 14
    assert rec.down.sent == len(payload)


async def test_backpressure_bounds_bytes_in_flight() -> None:
    """An upstream that does not read stalls the relay after one chunk; the client's writes block too."""
    app, proxy_client = trio.testing.lockstep_stream_pair()
    proxy_upstream, server = trio.testing.lockstep_stream_pair()
    rec = _record()
    sent_by_app = 0

    async def flood() -> None:
        nonlocal sent_by_app
        for _ in range(50):
            await app.send_all(b"x" * CHUNK)
            sent_by_app += CHUNK

    async with trio.open_nursery() as nursery:
        nursery.start_soon(relay, proxy_client, proxy_upstream, rec)
        nursery.start_soon(flood)
        await trio.testing.wait_all_tasks_blocked()
        # Nothing reads from the server side: exactly one chunk is held by the relay, the app is blocked.
        assert rec.up.received - rec.up.sent <= CHUNK
        assert sent_by_app <= CHUNK
        # Reading everything lets all of it through.
        total = 0
        while total < 50 * CHUNK:
            total += len(await server.receive_some(CHUNK))
            assert rec.up.received - rec.up.sent <= CHUNK
        nursery.cancel_scope.cancel()
    assert total == 50 * CHUNK


async def test_upstream_reset_is_reported_and_ends_both_directions() -> None:
    app, proxy_client = await tcp_pair()
    proxy_upstream, server = await tcp_pair()
    rec = _record()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def reset_upstream() -> None:
                await server.receive_some(10)
                server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                server.socket.close()

            nursery.start_soon(reset_upstream)
            await app.send_all(b"ping")
            outcome = await relay(proxy_client, proxy_upstream, rec)
    assert outcome is Outcome.UPSTREAM_RESET
    assert rec.dst_errno == "ECONNRESET"
    assert rec.src_errno == ""


async def test_client_reset_is_reported() -> None:
    app, proxy_client = await tcp_pair()
    proxy_upstream, server = await tcp_pair()
    rec = _record()
    app.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    app.socket.close()
    with trio.fail_after(5):
        outcome = await relay(proxy_client, proxy_upstream, rec)
    assert outcome is Outcome.CLIENT_RESET
    assert rec.src_errno == "ECONNRESET"
    await server.aclose()
