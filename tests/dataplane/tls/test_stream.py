"""TLSStream against trio's generic stream checks, half-close, and bounded buffering."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from dataplane.tls.openssl import TLSContext
from dataplane.tls.stream import RECORD_SIZE, TLSStream
from tests.dataplane.tls.mesh import contexts, handshake_pair, identity_of, real_pki
from tests.identity.pki import BACKEND, FRONTEND

TLS13_RECORD_OVERHEAD = 5 + 1 + 16  # header, inner content type, AEAD tag


@pytest.fixture(scope="module")
def pair_contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[TLSContext, TLSContext]:
    pki = real_pki()
    base: Path = tmp_path_factory.mktemp("ids")
    return contexts(identity_of(pki, base / "server", BACKEND), identity_of(pki, base / "client", FRONTEND))


async def test_trio_generic_half_closeable_stream_checks(pair_contexts: tuple[TLSContext, TLSContext]) -> None:
    server, client = pair_contexts

    async def stream_maker() -> tuple[TLSStream, TLSStream]:
        left, right = trio.testing.memory_stream_pair()
        return await handshake_pair(left, right, server, client)

    async def clogged_stream_maker() -> tuple[TLSStream, TLSStream]:
        left, right = trio.testing.lockstep_stream_pair()
        return await handshake_pair(left, right, server, client)

    await trio.testing.check_half_closeable_stream(stream_maker, clogged_stream_maker)


async def test_half_close_lets_the_other_direction_finish(pair_contexts: tuple[TLSContext, TLSContext]) -> None:
    server, client = pair_contexts
    left, right = trio.testing.memory_stream_pair()
    client_stream, server_stream = await handshake_pair(left, right, server, client)
    await client_stream.send_all(b"request")
    await client_stream.send_eof()
    assert await server_stream.receive_some() == b"request"
    assert await server_stream.receive_some() == b""
    await server_stream.send_all(b"response after the client's EOF")
    await server_stream.aclose()
    assert await client_stream.receive_some() == b"response after the client's EOF"
    assert await client_stream.receive_some() == b""
    await client_stream.aclose()


async def test_a_transport_eof_without_close_notify_is_a_truncation(
    pair_contexts: tuple[TLSContext, TLSContext],
) -> None:
    server, client = pair_contexts
    left, right = trio.testing.memory_stream_pair()
    client_stream, server_stream = await handshake_pair(left, right, server, client)
    await client_stream.transport_stream.aclose()
    with pytest.raises(trio.BrokenResourceError):
        await server_stream.receive_some()


class _Recording(trio.abc.Stream):
    """A transport that records the size of every write, to show what the TLS layer buffers."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.writes: list[int] = []

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(len(data))
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_send_all_hands_the_transport_one_record_at_a_time(
    pair_contexts: tuple[TLSContext, TLSContext],
) -> None:
    """A 1 MiB send never puts more than one encrypted record in flight, even when the peer is slow."""
    server, client = pair_contexts
    left, right = trio.testing.lockstep_stream_pair()
    recording = _Recording(left)
    client_stream, server_stream = await handshake_pair(recording, right, server, client)
    recording.writes.clear()
    payload = bytes(range(256)) * 4096
    received = bytearray()

    async def read_all() -> None:
        while len(received) < len(payload):
            received.extend(await server_stream.receive_some(1000))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_all)
        await client_stream.send_all(payload)
    assert received == payload
    assert max(recording.writes) <= RECORD_SIZE + TLS13_RECORD_OVERHEAD
    assert len(recording.writes) == len(payload) // RECORD_SIZE
