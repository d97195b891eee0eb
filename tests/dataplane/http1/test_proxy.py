"""HTTP/1.1 through the proxy loop with real clients (curl, raw sockets, trio-websocket) and real servers."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
from pathlib import Path
from typing import Any

import pytest
import trio

from dataplane.net.addr import SockAddr
from tests.apps import origin, ws_echo
from tests.dataplane.http1.harness import Http1Proxy, http1_proxy
from tests.tools import need


async def curl(*args: str) -> tuple[int, bytes, str]:
    """curl's exit status, body (stdout), and the response heads it saw (``-D /dev/stderr``)."""
    done = await trio.run_process(
        [need("curl"), "-sS", "--noproxy", "*", "-D", "/dev/stderr", *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr.decode(errors="replace")


def report(body: bytes) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def header(rep: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in rep["headers"] if k.lower() == name.lower()]


async def raw_exchange(proxy: Http1Proxy, request: bytes) -> bytes:
    """Send raw bytes, read until the proxy closes (or 5 s)."""
    stream = await trio.open_tcp_stream(proxy.address.ip, proxy.address.port)
    await stream.send_all(request)
    got = b""
    with trio.move_on_after(5):
        while chunk := await stream.receive_some(65536):
            got += chunk
    await stream.aclose()
    return got


async def test_requests_are_rewritten_and_connections_kept_alive() -> None:
    with origin.running_origin() as (host, port):
        async with http1_proxy(SockAddr(host, port)) as proxy:
            url = f"http://{proxy.address}/first"
            code, out, _ = await curl(
                "-H", "Connection: close, X-Secret", "-H", "X-Secret: s", "-H", "Keep-Alive: 5",
                "-H", "X-Forwarded-For: 6.6.6.6", url, "-o", "/dev/null", url.replace("first", "second"),
            )  # fmt: skip
            assert code == 0
            rep = report(out)
            assert rep["target"] == "/second"
            assert header(rep, "x-forwarded-for") == ["127.0.0.1"]  # replaced, never appended
            assert header(rep, "x-forwarded-proto") == ["http"]
            assert len(header(rep, "x-request-id")) == 1
            assert not header(rep, "x-secret") and not header(rep, "keep-alive")
            # curl asked to close after the first request, so two client connections; the upstream one is reused.
            assert rep["requests_on_connection"] == 2 and proxy.pool.opened == 1
            ok = [k for k in proxy.stats.responses if k.status_code == "200" and k.classification == "success"]
            assert sum(proxy.stats.responses[k] for k in ok) == 2


async def test_large_bodies_both_ways_arrive_intact(tmp_path: Path) -> None:
    body = os.urandom(3 * 1024 * 1024 + 17)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(body)
    with origin.running_origin() as (host, port):
        async with http1_proxy(SockAddr(host, port)) as proxy:
            # A chunked upload (curl also sends Expect: 100-continue for a body this big).
            code, out, heads = await curl(
                "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{upload}", f"http://{proxy.address}/up"
            )
            assert code == 0, heads
            rep = report(out)
            assert rep["body_sha256"] == hashlib.sha256(body).hexdigest() and rep["body_length"] == len(body)
            code, out, _ = await curl("--data-binary", f"@{upload}", f"http://{proxy.address}/up")
            assert report(out)["body_sha256"] == hashlib.sha256(body).hexdigest()
            code, out, _ = await curl(f"http://{proxy.address}/bytes/5000001")
            assert code == 0 and out == origin.pattern(5000001)
            code, out, heads = await curl(f"http://{proxy.address}/chunked/4")
            assert out == b"".join(b"chunk %d\n" % i for i in range(4)) and "chunked" in heads.lower()


async def test_a_smuggling_attempt_is_refused_and_never_reaches_the_upstream() -> None:
    with origin.running_origin() as (host, port):
        async with http1_proxy(SockAddr(host, port)) as proxy:
            got = await raw_exchange(
                proxy,
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
            )
            assert got.startswith(b"HTTP/1.1 400 ")
            assert b"x-triomesh-error: bad request: te_and_cl" in got
            assert got.count(b"HTTP/1.1") == 1  # the smuggled request was never answered
            assert proxy.pool.opened == 0 and not proxy.stats.requests
            got = await raw_exchange(proxy, b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n")
            assert got.startswith(b"HTTP/1.1 431 ")


async def test_pipelined_requests_are_answered_in_order() -> None:
    with origin.running_origin() as (host, port):
        async with http1_proxy(SockAddr(host, port)) as proxy:
            got = await raw_exchange(
                proxy,
                b"POST /one HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                b"GET /two HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            )
            first, second = got.index(b'"/one"'), got.index(b'"/two"')
            assert first < second and got.count(b"HTTP/1.1 200 OK") == 2


async def test_upstream_unreachable_is_503_and_says_why() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    async with http1_proxy(SockAddr("127.0.0.1", closed_port)) as proxy:
        code, _, heads = await curl(f"http://{proxy.address}/")
        assert code == 0 and " 503 " in heads.splitlines()[0]
        assert "x-triomesh-error: upstream 127.0.0.1:" in heads and "connect_refused" in heads
        assert [k.error for k in proxy.stats.responses] == ["connect_refused"]


async def _bad_upstream(
    answer: bytes, reset: bool = False, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Reads a request head, then writes ``answer`` (b"": nothing) and resets the connection (``reset``) or
    keeps it open without another byte."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])

    async def session(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        if answer:
            await stream.send_all(answer)
        if reset:
            await trio.sleep(0.05)
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            stream.socket.close()
            return
        await trio.sleep_forever()

    await trio.serve_listeners(session, listeners)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        b"garbage\r\n\r\n",
    ],
)
async def test_a_malformed_response_is_502(answer: bytes) -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_bad_upstream, answer)
        async with http1_proxy(SockAddr("127.0.0.1", port)) as proxy:
            _code, _, heads = await curl(f"http://{proxy.address}/")
            assert " 502 " in heads.splitlines()[0] and "bad response from upstream" in heads
            assert proxy.pool.idle == 0  # the upstream connection was discarded
        nursery.cancel_scope.cancel()


async def test_no_response_in_time_is_504() -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_bad_upstream, b"")
        async with http1_proxy(SockAddr("127.0.0.1", port), response_timeout=0.3) as proxy:
            _code, _, heads = await curl(f"http://{proxy.address}/")
            assert " 504 " in heads.splitlines()[0] and "no response from upstream within 0.3s" in heads
        nursery.cancel_scope.cancel()


async def test_a_response_cut_short_is_never_completed_by_the_proxy() -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_bad_upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        async with http1_proxy(SockAddr("127.0.0.1", port)) as proxy:
            # The upstream stalls mid-body; closing it from our side would be a reset. Here: curl times out short.
            code, out, _ = await curl("--max-time", "1", f"http://{proxy.address}/")
            assert code == 28 and out == b"only this"  # curl: timeout, 9 of 100 bytes
        nursery.cancel_scope.cancel()


async def test_websocket_upgrade_becomes_a_raw_relay() -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(ws_echo.serve, "127.0.0.1", 0)
        async with http1_proxy(SockAddr("127.0.0.1", port)) as proxy:
            assert await ws_echo.echo_many(f"ws://{proxy.address}/", 10_000) == 10_000
            assert proxy.contexts[0].rec.protocol == "http1-upgraded"
        nursery.cancel_scope.cancel()


async def test_a_client_reset_mid_request_ends_quietly() -> None:
    with origin.running_origin() as (host, port):
        async with http1_proxy(SockAddr(host, port)) as proxy:
            stream = await trio.open_tcp_stream(proxy.address.ip, proxy.address.port)
            await stream.send_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\npartial")
            await trio.sleep(0.1)
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            stream.socket.close()
            with trio.fail_after(5):
                while proxy.contexts[0].rec.close_reason is None:
                    await trio.sleep(0.01)
            assert proxy.contexts[0].rec.close_reason == "client_reset"


async def test_a_bad_chunk_after_the_head_is_400_and_the_upstream_connection_discarded() -> None:
    with origin.running_origin() as (host, port):
        async with http1_proxy(SockAddr(host, port)) as proxy:
            stream = await trio.open_tcp_stream(proxy.address.ip, proxy.address.port)
            await stream.send_all(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            await trio.sleep(0.1)  # the head and a good chunk are forwarded while the body streams
            await stream.send_all(b"zz\r\n")  # not a chunk size
            got = b""
            with trio.move_on_after(5):
                while chunk := await stream.receive_some(65536):
                    got += chunk
            assert got.startswith(b"HTTP/1.1 400 ") and b"bad request: " in got
            assert proxy.pool.idle == 0


async def test_a_bad_response_while_the_request_body_still_streams_is_502() -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_bad_upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        async with http1_proxy(SockAddr("127.0.0.1", port)) as proxy:
            stream = await trio.open_tcp_stream(proxy.address.ip, proxy.address.port)
            # A body that never finishes: the response (a bad one) comes while the pump still waits for it.
            await stream.send_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\nsome")
            got = b""
            with trio.move_on_after(5):
                while chunk := await stream.receive_some(65536):
                    got += chunk
            assert got.startswith(b"HTTP/1.1 502 ") and b"bad response from upstream" in got
            assert proxy.pool.idle == 0
        nursery.cancel_scope.cancel()
