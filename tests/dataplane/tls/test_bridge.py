"""The mesh TLS bridge engine: TLS connections seen by the rest of the proxy as plain sockets. The TLS side runs
over real TCP sockets on loopback (the engine drives sockets, not streams)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest
import trio
import trio.testing

from dataplane.tls.bridge import BridgeEngine
from dataplane.tls.openssl import TLSContext
from dataplane.tls.stream import TLSStream
from tests.dataplane.tls.mesh import contexts, handshake_pair, identity_of, loopback_listener, real_pki
from tests.identity.pki import BACKEND, FRONTEND


@pytest.fixture(scope="module")
def pair_contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[TLSContext, TLSContext]:
    pki = real_pki()
    base: Path = tmp_path_factory.mktemp("ids")
    return contexts(identity_of(pki, base / "server", BACKEND), identity_of(pki, base / "client", FRONTEND))


@asynccontextmanager
async def tls_pair(server: TLSContext, client: TLSContext) -> AsyncIterator[tuple[TLSStream, TLSStream, BridgeEngine]]:
    """A handshaken (client, server) pair over loopback TCP and a running engine to bridge either end."""
    listener, port = await loopback_listener()
    engine = BridgeEngine()
    async with listener, trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        left = await trio.open_tcp_stream("127.0.0.1", port)
        right = await listener.accept()
        yield (*await handshake_pair(left, right, server, client), engine)
        nursery.cancel_scope.cancel()


async def _read_all(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    return data


async def test_bytes_written_then_a_close_all_reach_the_tls_peer(pair_contexts: tuple[TLSContext, TLSContext]) -> None:
    server, client = pair_contexts
    async with tls_pair(server, client) as (client_tls, server_tls, engine):
        plain = engine.open_bridge(server_tls)
        await client_tls.send_all(b"request")
        inner = trio.SocketStream(trio.socket.from_stdlib_socket(plain))
        assert await inner.receive_some() == b"request"
        # Written in pieces and closed at once, as an HTTP server answers and closes: nothing may be lost.
        await inner.send_all(b"head ")
        await inner.send_all(b"body" * 10000)
        await inner.aclose()
        assert await _read_all(client_tls) == b"head " + b"body" * 10000
        await client_tls.aclose()


async def test_half_close_passes_both_ways(pair_contexts: tuple[TLSContext, TLSContext]) -> None:
    server, client = pair_contexts
    async with tls_pair(server, client) as (client_tls, server_tls, engine):
        plain = engine.open_bridge(server_tls)
        inner = trio.SocketStream(trio.socket.from_stdlib_socket(plain))
        await client_tls.send_all(b"all of it")
        await client_tls.send_eof()
        assert await _read_all(inner) == b"all of it"
        await inner.send_all(b"answer after the EOF")
        await inner.send_eof()
        assert await _read_all(client_tls) == b"answer after the EOF"
        await inner.aclose()
        await client_tls.aclose()
    assert plain.type == socket.SOCK_STREAM


async def test_both_ends_bridged_carry_megabytes_both_ways_with_backpressure(
    pair_contexts: tuple[TLSContext, TLSContext],
) -> None:
    server, client = pair_contexts
    payload = bytes(range(256)) * 16384  # 4 MiB each way, far more than the socket buffers hold
    async with tls_pair(server, client) as (client_tls, server_tls, engine):
        left = trio.SocketStream(trio.socket.from_stdlib_socket(engine.open_bridge(client_tls)))
        right = trio.SocketStream(trio.socket.from_stdlib_socket(engine.open_bridge(server_tls)))
        assert engine.bridging == 2
        received: dict[str, bytes] = {}

        async def send(stream: trio.SocketStream) -> None:
            await stream.send_all(payload)
            await stream.send_eof()

        async def receive(name: str, stream: trio.SocketStream) -> None:
            await trio.sleep(0.2)  # let the bridges fill up and stop reading first
            received[name] = await _read_all(stream)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send, left)
                nursery.start_soon(send, right)
                nursery.start_soon(receive, "left", left)
                nursery.start_soon(receive, "right", right)
        assert received == {"left": payload, "right": payload}
        await left.aclose()
        await right.aclose()
        with trio.fail_after(5):
            while engine.bridging:
                await trio.sleep(0.01)


async def test_a_transport_end_without_close_notify_ends_the_plain_side(
    pair_contexts: tuple[TLSContext, TLSContext],
) -> None:
    server, client = pair_contexts
    async with tls_pair(server, client) as (client_tls, server_tls, engine):
        inner = trio.SocketStream(trio.socket.from_stdlib_socket(engine.open_bridge(server_tls)))
        await client_tls.send_all(b"partial")
        assert await inner.receive_some() == b"partial"
        await trio.aclose_forcefully(client_tls.transport_stream)  # a truncation: no close_notify
        with trio.fail_after(5):
            with suppress(trio.BrokenResourceError):
                assert await inner.receive_some() == b""
        assert engine.bridging == 0
        await inner.aclose()
