"""reliability.md G2 20 through the whole proxy: a stream over our MAX_CONCURRENT_STREAMS (100) is refused alone
with RST_STREAM(REFUSED_STREAM) while the connection and its other streams carry on; real clients that queue
(h2load -m 200, grpcio with 200 concurrent calls) complete every request."""

from __future__ import annotations

import grpc
import trio
from hyperframe.frame import GoAwayFrame, HeadersFrame, RstStreamFrame

from dataplane.http2.conn import MAX_CONCURRENT_STREAMS_REASON
from dataplane.http2.errors import H2ErrorCode
from dataplane.net.addr import SockAddr
from tests.apps import grpc_app
from tests.dataplane.http2.hello import hello
from tests.dataplane.http2.pair import deadline, request
from tests.dataplane.http2.raw import RawPeer
from tests.dataplane.http2.upstream import Recorder, h2_upstream
from tests.dataplane.l7.harness import forwarding_proxy
from tests.tools import need


@deadline(30)
async def test_the_101st_stream_is_refused_and_the_others_complete() -> None:
    upstream = Recorder(hold=True)
    async with h2_upstream(upstream) as addr, forwarding_proxy(addr) as (listen, proxy):
        peer = RawPeer(await trio.open_tcp_stream(listen.ip, listen.port))
        await peer.start_client()
        await peer.send(b"".join(peer.headers(sid, request()) for sid in range(1, 203, 2)))  # 101 streams
        frame = await peer.next_frame()
        while not isinstance(frame, RstStreamFrame):
            assert frame is not None and not isinstance(frame, GoAwayFrame), frame
            frame = await peer.next_frame()
        assert (frame.stream_id, frame.error_code) == (201, H2ErrorCode.REFUSED_STREAM)
        while upstream.total < 100:
            await trio.sleep(0.01)
        assert upstream.peak == 100
        upstream.release.set()
        answered: set[int] = set()
        ended: set[int] = set()
        while len(ended) < 100:
            frame = await peer.next_frame()
            assert frame is not None and not isinstance(frame, (GoAwayFrame, RstStreamFrame)), frame
            if isinstance(frame, HeadersFrame):
                answered.add(frame.stream_id)
            if "END_STREAM" in frame.flags:
                ended.add(frame.stream_id)
        assert answered == ended == set(range(1, 201, 2))
        # the connection carries on: the refused stream's request goes through on a new stream
        await peer.send(peer.headers(203, request()))
        frame = await peer.next_frame()
        while not isinstance(frame, HeadersFrame):
            frame = await peer.next_frame()
        assert frame.stream_id == 203
        assert proxy.http.h2_clients.rejected == {MAX_CONCURRENT_STREAMS_REASON: 1}
        assert proxy.http.h2_clients.flood_closed == {} and proxy.http.h2_clients.protocol_errors == 0
        await peer.stream.aclose()


@deadline(60)
async def test_h2load_with_200_streams_per_connection_completes_every_request() -> None:
    async with h2_upstream(hello) as addr, forwarding_proxy(addr) as (listen, proxy):
        argv = [need("h2load"), "-n", "4000", "-c", "2", "-m", "200", f"http://{listen}/"]
        out = (await trio.run_process(argv, capture_stdout=True)).stdout.decode()
        assert "4000 succeeded, 0 failed, 0 errored" in out, (out[-600:], proxy.http.h2_clients.rejected)
        assert proxy.http.h2_clients.flood_closed == {} and proxy.http.h2_clients.protocol_errors == 0


def _concurrent_calls(target: str, count: int) -> list[bytes]:
    """``count`` gRPC calls started at once on one channel (grpcio queues what the proxy's limit holds back)."""
    client = grpc_app.Client(target)
    try:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = client.channel.unary_unary(f"/{grpc_app.SERVICE}/Slow")
        futures = [call.future(b"20", timeout=30) for _ in range(count)]
        return [future.result() for future in futures]
    finally:
        client.close()


@deadline(60)
async def test_grpc_with_200_concurrent_calls_completes_200() -> None:
    with grpc_app.running_server() as port:
        async with forwarding_proxy(SockAddr("127.0.0.1", port)) as (listen, proxy):
            results = await trio.to_thread.run_sync(_concurrent_calls, str(listen), 200)
            assert results == [b"done"] * 200
            assert sum(proxy.http.stats.responses.values()) == 200
            assert proxy.http.h2_clients.flood_closed == {} and proxy.http.h2_clients.protocol_errors == 0
