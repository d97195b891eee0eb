"""HTTP/2 through the whole proxy (detection -> HTTP/2 proxy -> HTTP/2 upstream) with real clients and servers:
grpcio (unary, server streaming, bidirectional streaming, error statuses with trailers, deadlines), h2load and
curl against an h2c server."""

from __future__ import annotations

import trio

from dataplane.http2.counters import H2Counters
from dataplane.net.addr import SockAddr
from tests.apps import grpc_app
from tests.dataplane.http2.hello import HELLO, serve_hello
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
