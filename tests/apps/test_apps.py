"""Each test application works on its own, without a proxy, so proxy tests can trust them."""

from __future__ import annotations

import hashlib
import http.client
import json

import trio

from tests.apps import banner, grpc_app, origin, ws_echo


def _request(
    port: int, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


async def test_origin_reports_what_it_received_and_keeps_connections_alive() -> None:
    with origin.running_origin() as (_, port):
        status, body = await trio.to_thread.run_sync(_request, port, "POST", "/x?y=1", b"hello", {"X-A": "1"})
        report = json.loads(body)
        assert status == 200 and report["method"] == "POST" and report["target"] == "/x?y=1"
        assert ["X-A", "1"] in report["headers"]
        assert report["body_sha256"] == hashlib.sha256(b"hello").hexdigest()

        def two_on_one_connection() -> list[int]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            counts = []
            for _ in range(2):
                conn.request("GET", "/")
                counts.append(json.loads(conn.getresponse().read())["requests_on_connection"])
            conn.close()
            return counts

        assert await trio.to_thread.run_sync(two_on_one_connection) == [1, 2]
        status, body = await trio.to_thread.run_sync(_request, port, "GET", "/bytes/100000")
        assert status == 200 and body == origin.pattern(100000)
        status, body = await trio.to_thread.run_sync(_request, port, "GET", "/chunked/3")
        assert body == b"chunk 0\nchunk 1\nchunk 2\n"
        status, _ = await trio.to_thread.run_sync(_request, port, "GET", "/status/503")
        assert status == 503


async def test_grpc_service_unary_streaming_errors_and_deadlines() -> None:
    with grpc_app.running_server() as port:
        problems = await trio.to_thread.run_sync(grpc_app.check, f"127.0.0.1:{port}")
        assert problems == []


async def test_websocket_echo() -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(ws_echo.serve, "127.0.0.1", 0)
        assert await ws_echo.echo_many(f"ws://127.0.0.1:{port}/", 200) == 200
        nursery.cancel_scope.cancel()


async def test_banner_arrives_before_the_client_says_anything() -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(banner.serve, "127.0.0.1", 0)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        with trio.fail_after(5):
            assert await stream.receive_some(100) == banner.BANNER
        await stream.send_all(b"EHLO x\r\n")
        assert await stream.receive_some(100) == b"EHLO x\r\n"
        await stream.aclose()
        nursery.cancel_scope.cancel()
