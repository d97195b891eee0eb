"""The HTTP/1.1 engine itself: keep-alive and pipelining in the engine, hand-overs to the trio loop, failures on
either side, backpressure, metrics. Real clients (raw sockets read with h11, curl) and real servers."""

from __future__ import annotations

import hashlib
import socket
import struct
from collections.abc import Callable

import h11
import pytest
import trio

from dataplane.net.addr import SockAddr
from tests.apps import origin, ws_echo
from tests.dataplane.http1.engine_harness import engine_proxy
from tests.dataplane.http1.harness import Harness, Http1Proxy, http1_proxy
from tests.dataplane.http1.test_proxy import _bad_upstream, curl, raw_exchange, report

_RESET = struct.pack("ii", 1, 0)


class Client:
    """One raw client connection; responses read with h11 (an independent parser)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, proxy: Http1Proxy) -> Client:
        return cls(await trio.open_tcp_stream(proxy.address.ip, proxy.address.port))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def response(self) -> tuple[h11.Response, bytes]:
        """The next whole response; h11 is told each request was a GET so it frames the body itself."""
        self.conn.send(h11.Request(method="GET", target="/", headers=[("Host", "a")]))
        self.conn.send(h11.EndOfMessage())
        head: h11.Response | None = None
        body = bytearray()
        with trio.fail_after(10):
            while True:
                event = self.conn.next_event()
                if event is h11.NEED_DATA:
                    self.conn.receive_data(await self.stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    head = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    assert head is not None
                    if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                        self.conn.start_next_cycle()
                    return head, bytes(body)
                else:
                    raise AssertionError(event)

    async def aclose(self) -> None:
        await self.stream.aclose()


def get(target: str, *extra: bytes) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: a\r\n%s\r\n" % (target.encode(), b"".join(e + b"\r\n" for e in extra))


async def wait_for(condition: Callable[[], bool]) -> None:
    with trio.fail_after(5):
        while not condition():
            await trio.sleep(0.01)


async def test_keep_alive_is_reused_on_both_sides_inside_the_engine() -> None:
    with origin.running_origin() as (host, port):
        async with engine_proxy(SockAddr(host, port)) as proxy:
            assert proxy.engine is not None
            client = await Client.open(proxy)
            for i in range(1, 4):
                await client.send(get(f"/n{i}"))
                head, body = await client.response()
                assert head.status_code == 200
                rep = report(body)
                assert rep["target"] == f"/n{i}" and rep["requests_on_connection"] == i
            await client.aclose()
            assert proxy.pool.opened == 1 and proxy.engine.handed_over == 0
            await wait_for(lambda: proxy.contexts[0].rec.close_reason is not None)
            assert proxy.contexts[0].rec.requests == 3
            # A second client connection takes the same upstream connection from the engine's idle list.
            client = await Client.open(proxy)
            await client.send(get("/again"))
            _, body = await client.response()
            assert report(body)["requests_on_connection"] == 4 and proxy.pool.opened == 1
            await client.aclose()


async def test_pipelined_requests_are_answered_in_order_by_the_engine() -> None:
    with origin.running_origin() as (host, port):
        async with engine_proxy(SockAddr(host, port)) as proxy:
            assert proxy.engine is not None
            client = await Client.open(proxy)
            await client.send(get("/p1") + b"POST /p2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc" + get("/p3"))
            targets = []
            for _ in range(3):
                _, body = await client.response()
                targets.append(report(body)["target"])
            assert targets == ["/p1", "/p2", "/p3"]
            assert proxy.engine.handed_over == 0 and proxy.pool.opened == 1
            await client.aclose()


async def test_chunked_request_is_handed_over_and_arrives_whole() -> None:
    with origin.running_origin() as (host, port):
        async with engine_proxy(SockAddr(host, port)) as proxy:
            assert proxy.engine is not None
            client = await Client.open(proxy)
            await client.send(get("/first"))  # served by the engine
            await client.response()
            await client.send(
                b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )
            _, body = await client.response()
            rep = report(body)
            assert rep["body_length"] == 11 and rep["body_sha256"] == hashlib.sha256(b"hello world").hexdigest()
            assert proxy.engine.handed_over == 1
            await client.send(get("/after"))  # the trio loop carries the connection on
            _, body = await client.response()
            assert report(body)["requests_on_connection"] == 3
            assert proxy.contexts[0].rec.requests == 3
            await client.aclose()


async def test_expect_100_continue_is_handed_over() -> None:
    with origin.running_origin() as (host, port):
        async with engine_proxy(SockAddr(host, port)) as proxy:
            assert proxy.engine is not None
            code, out, _ = await curl(
                "-H", "Expect: 100-continue", "--data-binary", "x" * 2000, f"http://{proxy.address}/"
            )
            assert code == 0 and report(out)["body_length"] == 2000
            assert proxy.engine.handed_over == 1


async def test_websocket_upgrade_is_handed_over() -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(ws_echo.serve, "127.0.0.1", 0)
        async with engine_proxy(SockAddr("127.0.0.1", port)) as proxy:
            assert proxy.engine is not None
            assert await ws_echo.echo_many(f"ws://{proxy.address}/", 100) == 100
            assert proxy.engine.handed_over == 1 and proxy.contexts[0].rec.protocol == "http1-upgraded"
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n",
        get("/ok") + b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
    ],
    ids=["te_and_cl", "bad_request_line", "http2", "no_host", "too_large", "second_of_two"],
)
async def test_a_bad_request_gets_exactly_the_trio_loops_answer(request_bytes: bytes) -> None:
    with origin.running_origin() as (host, port):
        async with http1_proxy(SockAddr(host, port)) as loop:
            expected = await raw_exchange(loop, request_bytes)
        async with engine_proxy(SockAddr(host, port)) as proxy:
            got = await raw_exchange(proxy, request_bytes)
    # The same refusal byte for byte (status, fields, body, then the close); a good response before it differs
    # only in its request id and client port.
    assert expected.rsplit(b"HTTP/1.1 ", 1)[1].split(b" ", 1)[0] in (b"400", b"431", b"505")
    assert got.count(b"HTTP/1.1 ") == expected.count(b"HTTP/1.1 ")
    assert got.rsplit(b"HTTP/1.1 ", 1)[1] == expected.rsplit(b"HTTP/1.1 ", 1)[1]


async def test_upstream_reset_before_the_response_head_is_502() -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_bad_upstream, b"", True)
        async with engine_proxy(SockAddr("127.0.0.1", port)) as proxy:
            assert proxy.engine is not None
            got = await raw_exchange(proxy, get("/"))
            assert got.startswith(b"HTTP/1.1 502 ") and b"x-triomesh-error: upstream reset the connection" in got
            assert proxy.engine.handed_over == 0 and proxy.engine.idle_upstreams == 0
            assert [(k.status_code, k.error) for k in proxy.stats.responses] == [("502", "upstream_reset")]
        nursery.cancel_scope.cancel()


async def test_upstream_reset_after_the_response_head_closes_the_client_short() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_bad_upstream, answer, True)
        async with engine_proxy(SockAddr("127.0.0.1", port)) as proxy:
            assert proxy.engine is not None
            got = await raw_exchange(proxy, get("/"))
            assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"\r\n\r\nonly this")  # never completed
            assert proxy.contexts[0].rec.close_reason == "upstream_reset"
            assert [(k.status_code, k.error) for k in proxy.stats.responses] == [("200", "")]
            assert proxy.engine.idle_upstreams == 0
        nursery.cancel_scope.cancel()


async def test_client_reset_mid_response_discards_the_upstream_and_the_engine_carries_on() -> None:
    with origin.running_origin() as (host, port):
        async with engine_proxy(SockAddr(host, port)) as proxy:
            engine = proxy.engine
            assert engine is not None
            client = await Client.open(proxy)
            await client.send(get(f"/bytes/{10 * 1024 * 1024}"))
            await client.stream.receive_some(1000)
            client.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            client.stream.socket.close()
            rec = proxy.contexts[0].rec
            await wait_for(lambda: rec.close_reason is not None)
            assert rec.close_reason == "client_reset"
            assert engine.serving == 0 and engine.idle_upstreams == 0  # a half-read response: never reused
            code, out, _ = await curl(f"http://{proxy.address}/next")
            assert code == 0 and report(out)["target"] == "/next"


async def test_a_slow_reader_holds_back_a_10_mib_response_with_bounded_memory() -> None:
    size = 10 * 1024 * 1024
    with origin.running_origin() as (host, port):
        async with engine_proxy(SockAddr(host, port)) as proxy:
            engine = proxy.engine
            assert engine is not None
            sock = trio.socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await sock.connect((proxy.address.ip, proxy.address.port))
            client = Client(trio.SocketStream(sock))
            await client.send(get(f"/bytes/{size}"))
            rec_ready = lambda: bool(proxy.contexts) and proxy.contexts[0].rec.down.received > 0  # noqa: E731
            await wait_for(rec_ready)
            rec = proxy.contexts[0].rec
            # The client reads nothing: the proxy stops reading the upstream once the client's socket is full.
            previous = -1
            with trio.fail_after(5):
                while rec.down.received != previous:
                    previous = rec.down.received
                    await trio.sleep(0.2)
            assert rec.down.received < 4 * 1024 * 1024  # socket buffers plus one read, not the whole body
            assert engine.held <= 2 * 65536
            # Then the whole body arrives intact, the bound holding all the way.
            digest = hashlib.sha256()
            received = 0
            head_done = False
            pending = b""
            highest = 0
            while received < size:
                chunk = await client.stream.receive_some(65536)
                assert chunk
                highest = max(highest, engine.held)
                if not head_done:
                    pending += chunk
                    if b"\r\n\r\n" not in pending:
                        continue
                    chunk = pending.split(b"\r\n\r\n", 1)[1]
                    head_done = True
                digest.update(chunk)
                received += len(chunk)
            assert received == size and digest.hexdigest() == hashlib.sha256(origin.pattern(size)).hexdigest()
            assert highest <= 2 * 65536
            await client.aclose()


async def test_metrics_are_recorded_once_per_request() -> None:
    with origin.running_origin() as (host, port):
        async with engine_proxy(SockAddr(host, port)) as proxy:
            client = await Client.open(proxy)
            await client.send(get("/a") + get("/status/404") + get("/chunked/3"))
            statuses = [(await client.response())[0].status_code for _ in range(3)]
            assert statuses == [200, 404, 200]
            # A hand-over in the middle (a chunked request) is counted once too, by the trio loop.
            await client.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            await client.response()
            await client.aclose()
            assert sum(proxy.stats.requests.values()) == 4
            assert sum(proxy.stats.responses.values()) == 4
            assert sorted(k.status_code for k in proxy.stats.responses for _ in range(proxy.stats.responses[k])) == [
                "200",
                "200",
                "200",
                "404",
            ]
            assert sum(h.count for h in proxy.stats.latency.values()) == 4
            await wait_for(lambda: proxy.contexts[0].rec.close_reason is not None)
            assert proxy.contexts[0].rec.requests == 4


async def test_an_unreachable_upstream_is_503_and_the_connection_carries_on() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    async with engine_proxy(SockAddr("127.0.0.1", closed_port)) as proxy:
        client = await Client.open(proxy)
        for _ in range(2):
            await client.send(get("/"))
            head, body = await client.response()
            assert head.status_code == 503 and b"connect_refused" in body
        await client.aclose()
        assert [k.error for k in proxy.stats.responses] == ["connect_refused"]
        assert sum(proxy.stats.responses.values()) == 2


async def test_drain_closes_idle_connections_and_ends_busy_ones_with_connection_close() -> None:
    with origin.running_origin() as (host, port):
        async with engine_proxy(SockAddr(host, port)) as proxy:
            assert proxy.drain is not None
            idle = await Client.open(proxy)
            await idle.send(get("/idle"))
            await idle.response()
            busy = await Client.open(proxy)
            await busy.send(get("/slow/300"))
            await wait_for(lambda: len(proxy.contexts) == 2 and proxy.contexts[1].rec.requests == 1)
            proxy.drain.start()
            assert await idle.stream.receive_some(100) == b""  # closed at once
            head, _ = await busy.response()
            assert head.status_code == 200 and (b"connection", b"close") in head.headers
            assert await busy.stream.receive_some(100) == b""
            assert [c.rec.close_reason for c in proxy.contexts] == ["drain", "drain"]


async def test_http10_client_head_request_and_until_close_response() -> None:
    with origin.running_origin() as (host, port):
        async with engine_proxy(SockAddr(host, port)) as proxy:
            # HTTP/1.0 without keep-alive: one response, then the proxy closes.
            got = await raw_exchange(proxy, b"GET /ten HTTP/1.0\r\nHost: a\r\n\r\n")
            assert got.startswith(b"HTTP/1.1 200 ") and report(got.split(b"\r\n\r\n", 1)[1])["target"] == "/ten"
            # HEAD: the length is metadata, no body follows; the connection carries on.
            client = await Client.open(proxy)
            await client.send(b"HEAD /bytes/100 HTTP/1.1\r\nHost: a\r\n\r\n" + get("/after-head"))
            raw = b""
            with trio.fail_after(5):
                while raw.count(b"HTTP/1.1 200 ") < 2 or not raw.endswith(b"}"):
                    raw += await client.stream.receive_some(65536)
            head_response, rest = raw.split(b"\r\n\r\n", 1)
            assert b"Content-Length: 100" in head_response and rest.startswith(b"HTTP/1.1 200 ")
            await client.aclose()


@pytest.mark.parametrize("harness", [engine_proxy, http1_proxy], ids=["engine", "loop"])
async def test_an_until_close_response_is_chunked_to_the_client_and_1xx_forwarded(harness: Harness) -> None:
    answer = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.0 200 OK\r\nX-A: 1\r\n\r\nuntil the end"
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_bad_upstream, answer, False)
        async with harness(SockAddr("127.0.0.1", port)) as proxy:
            client = await Client.open(proxy)
            await client.send(get("/"))
            raw = b""
            with trio.move_on_after(1):  # the upstream never closes: the body streams, no end yet
                while True:
                    raw += await client.stream.receive_some(65536)
            assert raw.startswith(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\n")
            assert b"Transfer-Encoding: chunked\r\n" in raw and raw.endswith(b"\r\nd\r\nuntil the end\r\n")
            await client.aclose()
        nursery.cancel_scope.cancel()


async def _narrow_upstream(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """An upstream with a 4 KiB receive buffer (a small TCP window): a request body does not fit in one send.
    Answers each request with the SHA-256 of its Content-Length body."""
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited by accepted connections
    await sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    listener = trio.SocketListener(sock)
    task_status.started(sock.getsockname()[1])

    async def session(stream: trio.SocketStream) -> None:
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                data += await stream.receive_some(65536)
            head, data = data.split(b"\r\n\r\n", 1)
            length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
            while len(data) < length:
                await trio.sleep(0.001)  # a slow reader: the proxy's send finds the window closed
                data += await stream.receive_some(1024)
            body, data = data[:length], data[length:]
            digest = hashlib.sha256(body).hexdigest().encode()
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(digest), digest))

    await trio.serve_listeners(session, [listener])


async def test_a_request_the_upstream_socket_cannot_take_at_once_is_sent_whole() -> None:
    body = bytes(range(256)) * 234  # 59,904 bytes: served by the engine, more than the upstream's window
    request = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_narrow_upstream)
        async with engine_proxy(SockAddr("127.0.0.1", port), upstream_sndbuf=4096) as proxy:
            assert proxy.engine is not None
            client = await Client.open(proxy)
            for _ in range(3):
                await client.send(request)
                head, answer = await client.response()
                assert head.status_code == 200 and answer == hashlib.sha256(body).hexdigest().encode()
            assert proxy.engine.handed_over == 0 and proxy.pool.opened == 1
            await client.aclose()
        nursery.cancel_scope.cancel()
