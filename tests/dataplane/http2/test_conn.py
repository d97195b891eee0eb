"""H2Connection client <-> server pairs over real loopback TCP."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame, SettingsFrame

from dataplane.http2.conn import H2Connection, H2Settings, H2Stream
from dataplane.http2.errors import (
    H2ConnectionClosedError,
    H2ErrorCode,
    H2GoAwayError,
    H2InvalidResponseError,
    H2StreamRefusedError,
    H2StreamResetError,
)
from tests.dataplane.http2.pair import deadline, echo, h2_pair, read_body, request
from tests.dataplane.http2.raw import RawPeer
from tests.dataplane.sockets import tcp_pair


@deadline(30)
async def test_many_concurrent_streams_all_complete() -> None:
    async with h2_pair(echo) as pair:
        results: dict[int, bytes] = {}

        async def one(i: int) -> None:
            stream = await pair.client.open_stream(request(b"/%d" % i, b"POST"))
            await stream.send_data(b"%d" % i, end_stream=True)
            assert (await stream.receive_response())[0] == (b":status", b"200")
            results[i] = await read_body(stream)

        async with trio.open_nursery() as nursery:
            for i in range(300):  # more than the server's 100 concurrent streams: the client queues
                nursery.start_soon(one, i)
        assert results == {i: b"%d" % i for i in range(300)}
        assert pair.server.counters.streams == 300


@deadline(30)
async def test_large_bodies_both_ways_with_a_slow_consumer_stay_bounded() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB per stream, 20 streams
    gate = trio.Event()
    peak = {"stream": 0, "conn": 0}
    received_bytes: list[int] = []

    async def slow(stream: H2Stream) -> None:
        await gate.wait()  # read nothing until the test has seen the sender stall
        await stream.send_headers([(b":status", b"200")])
        received_bytes.append(len(await read_body(stream)))
        await stream.send_data(body, end_stream=True)

    async with h2_pair(slow) as pair:
        streams = [await pair.client.open_stream(request(b"/up", b"POST")) for _ in range(20)]
        async with trio.open_nursery() as nursery:
            for stream in streams:
                nursery.start_soon(functools.partial(stream.send_data, body, end_stream=True))
            await trio.testing.wait_all_tasks_blocked(cushion=0.2)
            server_streams = list(pair.server._streams.values())
            peak["stream"] = max(s.buffered for s in server_streams)
            peak["conn"] = pair.server.buffered
            gate.set()
            down: list[str] = []

            async def fetch(stream: H2Stream) -> None:
                # each response read by its own task, as the proxy does: one reader for all streams would stall
                # once unread streams fill the connection window (that is flow control working, not a bug)
                await stream.receive_response()
                down.append(hashlib.sha256(await read_body(stream)).hexdigest())

            for stream in streams:
                nursery.start_soon(fetch, stream)
    assert 0 < peak["stream"] <= 65535
    assert peak["conn"] <= 1 << 20
    assert received_bytes == [len(body)] * 20
    assert down == [hashlib.sha256(body).hexdigest()] * 20


@deadline(30)
async def test_trailers_both_ways() -> None:
    async with h2_pair(echo) as pair:
        stream = await pair.client.open_stream([*request(b"/grpc", b"POST"), (b"te", b"trailers")])
        await stream.send_data(b"payload")
        await stream.send_trailers([(b"grpc-status", b"0"), (b"x-checksum", b"abc")])
        await stream.receive_response()
        assert await read_body(stream) == b"payload"
        assert stream.trailers == [(b"grpc-status", b"0"), (b"x-checksum", b"abc")]


@deadline(30)
async def test_client_reset_reaches_the_handler() -> None:
    seen: list[BaseException] = []
    started = trio.Event()
    done = trio.Event()

    async def handler(stream: H2Stream) -> None:
        started.set()
        try:
            await stream.receive_data()
            await stream.receive_data()
        except H2StreamResetError as exc:
            seen.append(exc)
            raise
        finally:
            done.set()

    async with h2_pair(handler) as pair:
        stream = await pair.client.open_stream(request(b"/", b"POST"))
        await stream.send_data(b"x")
        await started.wait()
        stream.reset(H2ErrorCode.CANCEL)
        await done.wait()
        with pytest.raises(H2StreamResetError):
            await stream.receive_data()
    assert isinstance(seen[0], H2StreamResetError)
    assert seen[0].remote and seen[0].code == H2ErrorCode.CANCEL


@deadline(30)
async def test_server_reset_reaches_the_client() -> None:
    async def handler(stream: H2Stream) -> None:
        stream.reset(H2ErrorCode.INTERNAL_ERROR)

    async with h2_pair(handler) as pair:
        stream = await pair.client.open_stream(request(), end_stream=True)
        with pytest.raises(H2StreamResetError) as caught:
            await stream.receive_response()
    assert caught.value.remote and caught.value.code == H2ErrorCode.INTERNAL_ERROR
    assert not caught.value.retryable


@deadline(30)
async def test_unfinished_handler_resets_instead_of_faking_a_complete_response() -> None:
    async def handler(stream: H2Stream) -> None:
        await stream.send_headers([(b":status", b"200")])
        await stream.send_data(b"partial")

    async with h2_pair(handler) as pair:
        stream = await pair.client.open_stream(request(), end_stream=True)
        await stream.receive_response()
        with pytest.raises(H2StreamResetError):
            await read_body(stream)


@deadline(30)
async def test_max_concurrent_streams_1_queues_the_client() -> None:
    active = 0
    peak = 0

    async def handler(stream: H2Stream) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await trio.testing.wait_all_tasks_blocked()
        active -= 1
        await stream.send_headers([(b":status", b"204")], end_stream=True)

    async with h2_pair(handler, server_settings=H2Settings(max_concurrent_streams=1)) as pair:
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)  # the server's SETTINGS arrived

        async def one() -> None:
            stream = await pair.client.open_stream(request(), end_stream=True)
            assert (await stream.receive_response())[0] == (b":status", b"204")

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(one)
    assert peak == 1


@deadline(30)
async def test_drain_sends_goaway_finishes_open_streams_and_refuses_new_ones() -> None:
    release = trio.Event()
    entered = trio.Event()

    async def handler(stream: H2Stream) -> None:
        entered.set()
        await release.wait()
        await stream.send_headers([(b":status", b"200")])
        await stream.send_data(b"done", end_stream=True)

    client_sock, server_sock = await tcp_pair()
    client = H2Connection(client_sock, client_side=True)
    server = H2Connection(server_sock, client_side=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run, handler)
        await nursery.start(client.run)
        stream = await client.open_stream(request(), end_stream=True)
        await entered.wait()
        nursery.start_soon(server.drain)
        while client.accepting:
            await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(H2GoAwayError) as caught:
            await client.open_stream(request(), end_stream=True)
        assert caught.value.retryable
        release.set()
        await stream.receive_response()
        assert await read_body(stream) == b"done"
    assert server.close_reason == "drained"


@asynccontextmanager
async def client_with_raw_server() -> AsyncIterator[tuple[H2Connection, RawPeer]]:
    """Our client side against a hand-driven server; the client runs until the block's end or its own close."""
    client_sock, server_sock = await tcp_pair()
    client = H2Connection(client_sock, client_side=True)
    peer = RawPeer(server_sock)
    async with trio.open_nursery() as nursery:
        await peer.start_server()
        await nursery.start(client.run)
        yield client, peer
        if client.accepting:
            nursery.cancel_scope.cancel()


@deadline(30)
async def test_goaway_received_refuses_streams_above_last_id() -> None:
    async with client_with_raw_server() as (client, peer):
        streams = [await client.open_stream(request(), end_stream=True) for _ in range(3)]  # ids 1, 3, 5
        seen: set[int] = set()
        while len(seen) < 3:
            frame = await peer.next_frame()
            if isinstance(frame, HeadersFrame):
                seen.add(frame.stream_id)
            elif isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                await peer.send(SettingsFrame(0, flags=["ACK"]))
        await peer.send(GoAwayFrame(0, last_stream_id=1, error_code=0))
        for stream in streams[1:]:
            with pytest.raises(H2StreamRefusedError) as caught:
                await stream.receive_response()
            assert caught.value.retryable
        with pytest.raises(H2GoAwayError):
            await client.open_stream(request(), end_stream=True)
        # stream 1 still completes after the GOAWAY
        await peer.send(
            peer.headers(1, [(b":status", b"200")], end_stream=False), DataFrame(1, b"ok", flags=["END_STREAM"])
        )
        assert await streams[0].receive_response() == [(b":status", b"200")]
        assert await read_body(streams[0]) == b"ok"
    assert client.close_reason == "goaway_received"


@deadline(30)
async def test_refused_stream_is_retryable_and_bad_response_is_reported() -> None:
    async with client_with_raw_server() as (client, peer):
        first = await client.open_stream(request(), end_stream=True)
        second = await client.open_stream(request(), end_stream=True)
        await peer.send(
            RstStreamFrame(1, error_code=H2ErrorCode.REFUSED_STREAM),
            peer.headers(3, [(b":status", b"20x")], end_stream=True),
        )
        with pytest.raises(H2StreamRefusedError):
            await first.receive_response()
        with pytest.raises(H2InvalidResponseError):
            await second.receive_response()
        assert client.counters.rejected["bad_status"] == 1


@deadline(30)
async def test_peer_close_fails_open_streams() -> None:
    client_sock, server_sock = await tcp_pair()
    client = H2Connection(client_sock, client_side=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        stream = await client.open_stream(request(), end_stream=True)
        await server_sock.aclose()
        with pytest.raises(H2ConnectionClosedError):
            await stream.receive_response()
    assert client.close_reason == "peer_closed"


@deadline(30)
async def test_a_complete_response_stays_readable_after_the_server_resets_with_no_error() -> None:
    # RFC 9113 8.1: a server may answer before the request ends and then RST_STREAM(NO_ERROR) to stop the body;
    # the client must not lose the response it already has.
    async def answer_early(stream: H2Stream) -> None:
        await stream.send_headers([(b":status", b"200"), (b"content-length", b"6")])
        await stream.send_data(b"hello\n", end_stream=True)
        # returning with the request still open: the connection resets the stream with NO_ERROR

    async with h2_pair(answer_early) as pair:
        for _ in range(50):
            stream = await pair.client.open_stream(request(b"/", b"POST"))
            await trio.testing.wait_all_tasks_blocked()  # the response and the reset have both arrived
            assert (await stream.receive_response())[0] == (b":status", b"200")
            assert await read_body(stream) == b"hello\n"


@deadline(30)
async def test_resetting_a_complete_unread_response_gives_its_window_back() -> None:
    body = b"x" * 65535

    async def answer_early(stream: H2Stream) -> None:
        if dict(stream.request_headers)[b":method"] == b"GET":
            await echo(stream)
            return
        await stream.send_headers([(b":status", b"200")])
        await stream.send_data(body, end_stream=True)  # then reset with NO_ERROR: the request is still open

    async with h2_pair(answer_early) as pair:
        for _ in range(40):  # 40 x 64 KiB unread: 2.5 times the client's 1 MiB connection window
            stream = await pair.client.open_stream(request(b"/", b"POST"))
            assert (await stream.receive_response())[0] == (b":status", b"200")
            while stream.buffered < len(body):
                await trio.sleep(0.001)
            stream.reset()  # the caller gives up on the rest without reading it
        assert pair.client.buffered == 0
        stream = await pair.client.open_stream(request(), end_stream=True)
        assert (await stream.receive_response())[0] == (b":status", b"200")
        assert await read_body(stream) == b""
