"""detect() on real loopback sockets: each verdict, the server-first path, timeouts, EOF and reset; nothing consumed."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import trio
import trio.testing

from dataplane.detect.detect import Detection, detect
from dataplane.detect.sniff import H2_PREFACE, Protocol
from dataplane.errors import ClientResetError
from tests.dataplane.detect.hellos import client_hello

REQUEST = b"GET /status HTTP/1.1\r\nHost: svc\r\n\r\n"


@dataclass
class Legs:
    app: trio.SocketStream
    """The application's end of the client connection."""
    accepted: trio.socket.SocketType
    """The proxy's end of the client connection: what detect() peeks at."""
    upstream: socket.socket
    """The proxy's connection to the server (non-blocking)."""
    server: trio.SocketStream
    """The server's end of the upstream connection."""

    async def detect(self, timeout: float = 10.0) -> Detection:
        return await detect(self.accepted, self.upstream.fileno(), timeout=timeout)

    def detect_soon(self, nursery: trio.Nursery) -> list[Detection]:
        """Start detection in the background; the list gets its result."""
        found: list[Detection] = []

        async def run() -> None:
            found.append(await self.detect())

        nursery.start_soon(run)
        return found

    async def still_queued(self, n: int) -> bytes:
        """What the proxy can still read from the client: detection must have consumed nothing."""
        data = b""
        while len(data) < n:
            chunk = await self.accepted.recv(n - len(data))
            assert chunk
            data += chunk
        return data


async def _tcp_pair() -> tuple[trio.SocketStream, trio.socket.SocketType]:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    dialer = await trio.open_tcp_stream(*listener.getsockname())
    accepted, _ = await listener.accept()
    listener.close()
    return dialer, accepted


@asynccontextmanager
async def legs() -> AsyncIterator[Legs]:
    app, accepted = await _tcp_pair()
    proxy_side, server_sock = await _tcp_pair()
    upstream = socket.socket(fileno=proxy_side.socket.detach())
    upstream.setblocking(False)
    server = trio.SocketStream(server_sock)
    try:
        yield Legs(app, accepted, upstream, server)
    finally:
        for sock in (accepted, upstream):
            sock.close()
        await app.aclose()
        await server.aclose()


async def test_an_http1_request_is_decided_on_the_first_segment_and_left_unread() -> None:
    async with legs() as lg:
        await lg.app.send_all(REQUEST)
        detection = await lg.detect()
        assert (detection.protocol, detection.result, detection.sni) == (Protocol.HTTP1, "http/1", None)
        assert await lg.still_queued(len(REQUEST)) == REQUEST


async def test_an_h2_preface_split_over_two_segments() -> None:
    async with legs() as lg, trio.open_nursery() as nursery:
        found = lg.detect_soon(nursery)
        await lg.app.send_all(H2_PREFACE[:10])
        await trio.testing.wait_all_tasks_blocked()
        assert not found  # ten bytes of the preface: still waiting, and waiting (not spinning)
        await lg.app.send_all(H2_PREFACE[10:] + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    assert (found[0].protocol, found[0].result) == (Protocol.H2, "http/2")


async def test_a_tls_client_hello_gives_its_server_name() -> None:
    hello = client_hello("Payments.svc.cluster.local", alpn=["h2", "http/1.1"])
    async with legs() as lg:
        await lg.app.send_all(hello)
        detection = await lg.detect()
        assert detection.protocol is Protocol.TLS
        assert (detection.sni, detection.alpn) == ("payments.svc.cluster.local", ("h2", "http/1.1"))
        assert await lg.still_queued(len(hello)) == hello


async def test_a_tls_hello_in_pieces_is_waited_for_until_its_record_is_whole() -> None:
    hello = client_hello("db.internal")
    async with legs() as lg, trio.open_nursery() as nursery:
        found = lg.detect_soon(nursery)
        await lg.app.send_all(hello[:6])  # already TLS, but the server name is further on
        await trio.testing.wait_all_tasks_blocked()
        assert not found
        await lg.app.send_all(hello[6:100])
        await trio.testing.wait_all_tasks_blocked()
        assert not found
        await lg.app.send_all(hello[100:])
    assert (found[0].protocol, found[0].sni) == (Protocol.TLS, "db.internal")


async def test_garbage_is_opaque_at_once() -> None:
    async with legs() as lg:
        await lg.app.send_all(b"\x00\x01\x02binary protocol")
        detection = await lg.detect()
        assert (detection.protocol, detection.result) == (Protocol.OPAQUE, "not_http")


async def test_a_server_that_speaks_first_makes_it_opaque_without_waiting() -> None:
    banner = b"220 mail.example ESMTP ready\r\n"
    async with legs() as lg:
        await lg.server.send_all(banner)
        with trio.fail_after(2):  # far below the 10 s detect timeout
            detection = await lg.detect()
        assert (detection.protocol, detection.result) == (Protocol.OPAQUE, "server_first")
        assert lg.upstream.recv(100, socket.MSG_PEEK) == banner  # not consumed either


async def test_an_h2_server_greeting_first_is_no_server_first_protocol() -> None:
    # HTTP/2 servers (grpcio, nginx) send SETTINGS as soon as they accept: the client's preface is still h2.
    settings = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00" + b"\x00\x03\x00\x00\x00\x64"
    async with legs() as lg, trio.open_nursery() as nursery:
        await lg.server.send_all(settings)
        found = lg.detect_soon(nursery)
        await trio.testing.wait_all_tasks_blocked()
        await lg.app.send_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        await trio.testing.wait_all_tasks_blocked()
        assert (found[0].protocol, found[0].result) == (Protocol.H2, "http/2")
        assert lg.upstream.recv(100, socket.MSG_PEEK) == settings  # not consumed


async def test_a_client_that_speaks_while_the_server_is_silent_is_still_detected() -> None:
    async with legs() as lg, trio.open_nursery() as nursery:
        found = lg.detect_soon(nursery)
        await trio.testing.wait_all_tasks_blocked()
        await lg.app.send_all(REQUEST)
    assert found[0].protocol is Protocol.HTTP1


@pytest.mark.parametrize("sent", [b"", b"GET /half-a-line"])
async def test_the_timeout_gives_opaque(autojump_clock: trio.testing.MockClock, sent: bytes) -> None:
    autojump_clock.autojump_threshold = 0.02  # real sockets: let the kernel deliver before time jumps
    async with legs() as lg:
        await lg.app.send_all(sent)
        detection = await lg.detect(timeout=10.0)
        assert (detection.protocol, detection.result) == (Protocol.OPAQUE, "read_timeout")
        assert 10.0 <= detection.seconds < 10.5
        assert await lg.still_queued(len(sent)) == sent


async def test_a_tls_hello_cut_short_by_the_timeout_is_tls_without_a_name(
    autojump_clock: trio.testing.MockClock,
) -> None:
    autojump_clock.autojump_threshold = 0.02
    async with legs() as lg:
        await lg.app.send_all(client_hello("cut.example")[:50])
        detection = await lg.detect(timeout=3.0)
        assert (detection.protocol, detection.result, detection.sni) == (Protocol.TLS, "tls", None)


@pytest.mark.parametrize("sent", [b"", b"GE"])
async def test_client_eof_during_detection_decides_on_what_was_sent(sent: bytes) -> None:
    async with legs() as lg:
        await lg.app.send_all(sent)
        await lg.app.send_eof()
        with trio.fail_after(2):
            detection = await lg.detect()
        assert (detection.protocol, detection.result) == (Protocol.OPAQUE, "client_eof")
        assert await lg.still_queued(len(sent)) == sent


async def test_client_reset_during_detection_raises() -> None:
    async with legs() as lg:
        lg.app.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        lg.app.socket.close()
        with trio.fail_after(2), pytest.raises(ClientResetError) as info:
            await lg.detect()
        assert info.value.reason == "client_reset"
        assert info.value.errno_name == "ECONNRESET"


async def test_rcvlowat_is_back_to_one_for_the_relay() -> None:
    async with legs() as lg, trio.open_nursery() as nursery:

        async def finish() -> None:
            await trio.testing.wait_all_tasks_blocked()
            await lg.app.send_all(b"T / HTTP/1.0\r\n")

        nursery.start_soon(finish)
        await lg.app.send_all(b"GE")
        assert (await lg.detect()).protocol is Protocol.HTTP1
        assert lg.accepted.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1
