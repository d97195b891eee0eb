"""The handler with detection on: relays stay byte-exact, the record and metrics say what was detected."""

from __future__ import annotations

import socket
import struct

import pytest
import trio
import trio.testing

from dataplane.detect.sniff import H2_PREFACE
from policy.duration import Duration
from policy.model import OutboundPolicy, Policy, Timeouts
from tests.dataplane.detect.hellos import client_hello
from tests.dataplane.proxy_harness import Harness, echo_server, loopback_server, running_proxy


@pytest.fixture(params=[True, False], ids=["engine", "tasks"])
def engine(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


async def _read_exactly(stream: trio.SocketStream, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await stream.receive_some(n - len(data))
        assert chunk, f"EOF after {len(data)} of {n} bytes"
        data += chunk
    return data


async def _closed(h: Harness) -> None:
    with trio.fail_after(5):
        while h.table.live:
            await trio.sleep(0.01)


@pytest.mark.parametrize(
    ("first", "protocol", "result"),
    [
        (b"POST /upload HTTP/1.1\r\nContent-Length: 100000\r\n\r\n", "http1", "http/1"),
        (H2_PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00", "h2", "http/2"),
        (b"\x00\x00\x00\x10binary", "opaque", "not_http"),
    ],
)
async def test_the_relay_is_byte_exact_with_detection_on(
    engine: bool, first: bytes, protocol: str, result: str
) -> None:
    body = bytes(range(256)) * 400
    async with echo_server() as upstream, running_proxy(upstream, engine=engine) as h:
        client = await h.connect()
        # The first bytes arrive in two pieces, the second while detection is still waiting for the first line.
        await client.send_all(first[:3])
        await trio.testing.wait_all_tasks_blocked()
        await client.send_all(first[3:])
        await client.send_all(body)
        await client.send_eof()
        with trio.fail_after(5):
            assert await _read_exactly(client, len(first) + len(body)) == first + body
            assert await client.receive_some(10) == b""
        await client.aclose()
        await _closed(h)
    rec = h.table.recent[0]
    assert (rec.close_reason, rec.protocol, rec.detect_result) == ("completed", protocol, result)
    assert rec.up.sent == rec.down.sent == len(first) + len(body)
    info = rec.info()
    assert (info.protocol, info.detect_result) == (protocol, result)
    assert info.detect_seconds is not None and 0 <= info.detect_seconds < 5
    assert h.table.detections.results == {("outbound", result): 1}


async def test_tls_is_relayed_with_its_server_name_recorded(engine: bool) -> None:
    hello = client_hello("orders.shop.svc")
    async with echo_server() as upstream, running_proxy(upstream, engine=engine) as h:
        client = await h.connect()
        await client.send_all(hello)
        with trio.fail_after(5):
            assert await _read_exactly(client, len(hello)) == hello
        await client.aclose()
        await _closed(h)
    info = h.table.recent[0].info()
    assert (info.protocol, info.detect_result, info.sni) == ("tls", "tls", "orders.shop.svc")


async def test_opaque_ports_are_not_detected(engine: bool) -> None:
    async with echo_server() as upstream:
        policy = Policy(outbound=OutboundPolicy(opaque_ports=(upstream.port,)))
        async with running_proxy(upstream, policy, engine=engine) as h:
            client = await h.connect()
            await client.send_all(b"GET")  # would make detection wait for the rest of a request line
            with trio.fail_after(2):
                assert await _read_exactly(client, 3) == b"GET"
            await client.aclose()
            await _closed(h)
    rec = h.table.recent[0]
    assert (rec.protocol, rec.detect_result, rec.detect_seconds) == ("opaque", None, None)
    assert h.table.detections.results == {}


async def test_a_banner_from_the_server_arrives_without_detection_delay(engine: bool) -> None:
    banner = b"* OK IMAP4rev1 ready\r\n"

    async def greet(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(banner)
            assert await stream.receive_some(100) == b"a1 LOGOUT\r\n"
            await stream.send_all(b"* BYE\r\n")

    async with loopback_server(greet) as dst, running_proxy(dst, engine=engine) as h:
        client = await h.connect()
        with trio.fail_after(2):  # the detect timeout is 10 s
            assert await _read_exactly(client, len(banner)) == banner
            await client.send_all(b"a1 LOGOUT\r\n")
            assert await _read_exactly(client, 7) == b"* BYE\r\n"
        await client.aclose()
        await _closed(h)
    rec = h.table.recent[0]
    assert (rec.protocol, rec.detect_result) == ("opaque", "server_first")


async def test_a_silent_client_is_relayed_after_the_detect_timeout(
    mock_clock: trio.testing.MockClock, engine: bool
) -> None:
    mock_clock.autojump_threshold = 0.02  # real sockets: let the kernel deliver before virtual time jumps
    policy = Policy(timeouts=Timeouts(detect=Duration.parse("3s")))
    async with echo_server() as upstream, running_proxy(upstream, policy, engine=engine) as h:
        client = await h.connect()
        await client.send_all(b"HELLO")  # a plausible method token: detection waits for the rest of the line
        start = trio.current_time()
        with trio.fail_after(60):
            assert await _read_exactly(client, 5) == b"HELLO"
        assert 3.0 <= trio.current_time() - start < 4.0
        await client.aclose()
        await _closed(h)
    rec = h.table.recent[0]
    assert (rec.protocol, rec.detect_result) == ("opaque", "read_timeout")


async def test_a_client_reset_during_detection_is_recorded(engine: bool) -> None:
    async with echo_server() as upstream, running_proxy(upstream, engine=engine) as h:
        client = await h.connect()
        await trio.testing.wait_all_tasks_blocked()
        client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.socket.close()
        await _closed(h)
    rec = h.table.recent[0]
    assert (rec.close_reason, rec.src_errno) == ("client_reset", "ECONNRESET")
