"""A kept-alive upstream connection that the server closes as the proxy reuses it (the keep-alive race every
proxy meets): an idempotent request goes once more on a fresh connection, anything else is answered 502. Through
the trio loop and through the epoll engine alike."""

from __future__ import annotations

import pytest
import trio

from dataplane.net.addr import SockAddr
from tests.dataplane.http1.engine_harness import engine_proxy
from tests.dataplane.http1.harness import Harness, http1_proxy

pytestmark = pytest.mark.parametrize("harness", [http1_proxy, engine_proxy], ids=["loop", "engine"])

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def _one_request_per_connection(
    seen: list[bytes], *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Answers the first request of each connection with keep-alive, then reads the second one and closes
    without a byte, as a server whose keep-alive timeout fires at that instant does."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])

    async def session(stream: trio.SocketStream) -> None:
        for answer in (True, False):
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                data += chunk
            seen.append(data.split(b"\r\n")[0])
            if answer:
                await stream.send_all(OK)
        await stream.aclose()

    await trio.serve_listeners(session, listeners)


async def _exchange(stream: trio.SocketStream, request: bytes) -> bytes:
    await stream.send_all(request)
    got = b""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in got or (b" 200 " in got and not got.endswith(b"ok")):
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            got += chunk
    return got


async def test_an_idempotent_request_on_a_connection_closed_under_it_is_sent_again(harness: Harness) -> None:
    seen: list[bytes] = []
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_one_request_per_connection, seen)
        async with harness(SockAddr("127.0.0.1", port)) as proxy:
            client = await trio.open_tcp_stream(proxy.address.ip, proxy.address.port)
            assert (await _exchange(client, b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")).endswith(OK[-2:])
            second = await _exchange(client, b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
            assert second.startswith(b"HTTP/1.1 200 ") and second.endswith(b"ok")
            # The second request reached the server twice: on the reused connection (closed unanswered) and
            # once more on a new one, where it was answered.
            assert seen == [b"GET /1 HTTP/1.1", b"GET /2 HTTP/1.1", b"GET /2 HTTP/1.1"]
            assert proxy.pool.opened == 2
            await client.aclose()
        nursery.cancel_scope.cancel()


async def test_a_post_on_a_connection_closed_under_it_is_502_and_sent_once(harness: Harness) -> None:
    seen: list[bytes] = []
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_one_request_per_connection, seen)
        async with harness(SockAddr("127.0.0.1", port)) as proxy:
            client = await trio.open_tcp_stream(proxy.address.ip, proxy.address.port)
            assert (await _exchange(client, b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")).endswith(b"ok")
            answer = await _exchange(client, b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
            assert answer.startswith(b"HTTP/1.1 502 ")
            assert b"x-triomesh-error: upstream closed without a response" in answer
            assert seen == [b"GET /1 HTTP/1.1", b"POST /2 HTTP/1.1"]
            await client.aclose()
        nursery.cancel_scope.cancel()
