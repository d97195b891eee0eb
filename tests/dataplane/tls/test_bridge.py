"""The mesh TLS bridge: a TLS stream seen by the rest of the proxy as a plain socket."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio
import trio.testing

from dataplane.tls.bridge import open_bridge
from dataplane.tls.openssl import TLSContext
from tests.dataplane.tls.mesh import contexts, handshake_pair, identity_of, real_pki
from tests.identity.pki import BACKEND, FRONTEND


@pytest.fixture(scope="module")
def pair_contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[TLSContext, TLSContext]:
    pki = real_pki()
    base: Path = tmp_path_factory.mktemp("ids")
    return contexts(identity_of(pki, base / "server", BACKEND), identity_of(pki, base / "client", FRONTEND))


async def _read_all(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    return data


async def test_bytes_written_then_a_close_all_reach_the_tls_peer(pair_contexts: tuple[TLSContext, TLSContext]) -> None:
    server, client = pair_contexts
    left, right = trio.testing.memory_stream_pair()
    client_tls, server_tls = await handshake_pair(left, right, server, client)
    async with trio.open_nursery() as nursery:
        plain = open_bridge(server_tls, nursery.start_soon)
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
    left, right = trio.testing.memory_stream_pair()
    client_tls, server_tls = await handshake_pair(left, right, server, client)
    async with trio.open_nursery() as nursery:
        plain = open_bridge(server_tls, nursery.start_soon)
        inner = trio.SocketStream(trio.socket.from_stdlib_socket(plain))
        await client_tls.send_all(b"all of it")
        await client_tls.send_eof()
        assert await _read_all(inner) == b"all of it"
        await inner.send_all(b"answer after the EOF")
        await inner.send_eof()
        assert await _read_all(client_tls) == b"answer after the EOF"
        await inner.aclose()
        await client_tls.aclose()
    assert plain.fileno() == -1 or plain.type == socket.SOCK_STREAM
