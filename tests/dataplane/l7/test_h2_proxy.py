"""HTTP/2 through the whole proxy (detection -> HTTP/2 proxy -> HTTP/2 upstream) with real clients and servers:
grpcio (unary, server streaming, bidirectional streaming, error statuses with trailers, deadlines), h2load and
curl against an h2c server."""

from __future__ import annotations

import trio
from hyperframe.frame import DataFrame, WindowUpdateFrame

from dataplane.http2.conn import H2Connection, H2Stream
from dataplane.http2.counters import H2Counters
from dataplane.net.addr import SockAddr
from tests.apps import grpc_app
from tests.dataplane.http2.hello import HELLO, serve_hello
from tests.dataplane.http2.raw import RawPeer
from tests.dataplane.l7.harness import forwarding_proxy
from tests.tools import need


def _grpc_responses(proxy_stats: object) -> dict[tuple[str, str, str], int]:
    from dataplane.telemetry.http_stats import HttpStats

    assert isinstance(proxy_stats, HttpStats)
    out: dict[tuple[str, str, str], int] = {}
    for key, count in proxy_stats.responses.items():
        out[(key.status_code, key.grpc_status, key.classification)] = (
            out.get((key.status_code, key.grpc_status, key.classification), 0) + count
        )
    return out


async def test_grpc_through_the_proxy() -> None:
    with grpc_app.running_server() as port:
        async with forwarding_proxy(SockAddr("127.0.0.1", port)) as (listen, proxy):
            # Unary, server streaming, bidirectional streaming, an error status with trailers, a deadline.
            problems = await trio.to_thread.run_sync(grpc_app.check, str(listen))
            assert problems == []
            conns = [r for r in proxy.table.recent if r.protocol == "h2"] + [
                r for r in proxy.table.live.values() if r.protocol == "h2"
            ]
            assert conns, "the gRPC connection was not detected as h2"
            assert sum(rec.requests for rec in conns) == 5  # one stream per call, shown in the connection table
            responses = _grpc_responses(proxy.http.stats)
            assert responses[("200", "0", "success")] >= 3
            assert responses[("200", "14", "failure")] == 1  # UNAVAILABLE: a failure, as Linkerd counts it


async def test_h2load_and_curl_through_the_proxy() -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_hello, 0, H2Counters())
        async with forwarding_proxy(SockAddr("127.0.0.1", port)) as (listen, proxy):
            done = await trio.run_process(
                [need("h2load"), "-n", "2000", "-c", "4", "-m", "10", f"http://{listen}/"], capture_stdout=True
            )
            out = done.stdout.decode()
            errors = {(k.status_code, k.error): v for k, v in proxy.http.stats.responses.items()}
            assert "2000 succeeded, 0 failed, 0 errored" in out, (out[-600:], errors, proxy.http.h2_clients.rejected)
            curl = await trio.run_process(
                [need("curl"), "-sS", "--noproxy", "*", "--http2-prior-knowledge", f"http://{listen}/"],
                capture_stdout=True,
            )
            assert curl.stdout == HELLO
            assert proxy.http.h2_clients.streams >= 2001
        nursery.cancel_scope.cancel()


async def test_h2_requests_get_the_forwarding_fields_set_not_appended() -> None:
    seen: list[list[tuple[bytes, bytes]]] = []

    async def record(stream: H2Stream) -> None:
        seen.append(stream.request_headers)
        await stream.send_headers([(b":status", b"204")], end_stream=True)

    async def serve(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])

        async def one(sock: trio.SocketStream) -> None:
            await H2Connection(sock, client_side=False).run(record)

        await trio.serve_listeners(one, listeners)

    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve)
        async with forwarding_proxy(SockAddr("127.0.0.1", port)) as (listen, _):
            client = H2Connection(await trio.open_tcp_stream(listen.ip, listen.port), client_side=True)
            await nursery.start(client.run)
            request = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"app")]
            spoofed = [(b"x-forwarded-for", b"6.6.6.6"), (b"x-request-id", b"trace-1")]
            stream = await client.open_stream([*request, *spoofed], end_stream=True)
            assert (await stream.receive_response())[0] == (b":status", b"204")
        nursery.cancel_scope.cancel()
    (headers,) = seen
    fields = [(n, v) for n, v in headers if n in (b"x-forwarded-for", b"x-forwarded-proto", b"x-request-id")]
    assert sorted(fields) == [
        (b"x-forwarded-for", b"127.0.0.1"),
        (b"x-forwarded-proto", b"http"),
        (b"x-request-id", b"trace-1"),
    ]


async def test_the_last_chunk_of_a_response_carries_end_stream() -> None:
    """An upstream chunk that ended its stream goes to the client as one DATA frame with END_STREAM (no extra empty
    DATA frame per response), 100 streams in a row on one connection."""
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_hello, 0, H2Counters())
        async with forwarding_proxy(SockAddr("127.0.0.1", port)) as (listen, _):
            peer = RawPeer(await trio.open_tcp_stream(listen.ip, listen.port))
            await peer.start_client()
            get = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"app")]
            for stream_id in range(1, 200, 2):
                await peer.send(peer.headers(stream_id, get))
                with trio.fail_after(10):
                    data: list[DataFrame] = []
                    while not data or "END_STREAM" not in data[-1].flags:
                        frame = await peer.next_frame()
                        assert frame is not None, "the proxy closed the connection"
                        if isinstance(frame, DataFrame) and frame.stream_id == stream_id:
                            data.append(frame)
                assert [bytes(f.data) for f in data] == [HELLO]
                await peer.send(WindowUpdateFrame(0, window_increment=len(HELLO)))
            await peer.stream.aclose()
        nursery.cancel_scope.cancel()
