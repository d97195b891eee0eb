"""Draining with keep-alive HTTP connections: nothing in flight is dropped, nothing idle holds the drain up."""

from __future__ import annotations

import json

import trio

from dataplane.net.addr import SockAddr
from tests.apps import origin
from tests.dataplane.l7.harness import running_proxy

GET = b"GET /%s HTTP/1.1\r\nHost: app\r\n\r\n"


async def read_response(stream: trio.SocketStream) -> bytes:
    """One response with a Content-Length body (the origin's)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive_some(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(body) < length:
        body += await stream.receive_some(65536)
    return head + b"\r\n\r\n" + body


async def test_drain_closes_idle_keepalive_connections_and_finishes_busy_ones() -> None:
    with origin.running_origin() as (host, port):
        async with running_proxy(SockAddr(host, port), "--drain-timeout", "20s") as running:
            idle = await trio.open_tcp_stream(running.listen.ip, running.listen.port)
            busy = await trio.open_tcp_stream(running.listen.ip, running.listen.port)
            await idle.send_all(GET % b"first")
            assert b" 200 " in (await read_response(idle)).split(b"\r\n")[0]
            await busy.send_all(GET % b"slow/800")  # in flight when the drain starts
            await trio.sleep(0.2)
            started = trio.current_time()
            running.shutdown.set()
            with trio.fail_after(5):  # far below the 20 s drain timeout: nothing idle holds it up
                assert await idle.receive_some(100) == b""  # closed with a FIN, not left hanging
                answer = await read_response(busy)
                await running.stopped.wait()
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nconnection: close" in head.lower()
            assert json.loads(body)["target"] == "/slow/800"
            assert await busy.receive_some(100) == b""
            assert trio.current_time() - started < 5
            reasons = sorted(rec.close_reason or "" for rec in running.proxy.table.recent)
            assert reasons == ["drain", "drain"], reasons
            assert sorted(rec.requests for rec in running.proxy.table.recent) == [1, 1]
