"""reliability.md G2 (floods) and G3 21/22 (what h2 accepts or rejects) driven with raw frames against our server
side: each ends in GOAWAY/close with the right kind counted, and the stream handler never sees a bad request."""

from __future__ import annotations

import socket

import pytest
import trio
from hyperframe.frame import (
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
)

from dataplane.http2.conn import MAX_CONCURRENT_STREAMS_REASON, H2Connection, H2Stream
from dataplane.http2.errors import H2ErrorCode, H2FloodError, H2ProtocolError
from tests.dataplane.http2 import floods
from tests.dataplane.http2.pair import deadline, request
from tests.dataplane.http2.raw import RawPeer
from tests.dataplane.sockets import tcp_pair


class Target:
    """Our server side, recording every stream its handler is given."""

    def __init__(self) -> None:
        self.handled: list[list[tuple[bytes, bytes]]] = []
        self.error: BaseException | None = None
        self.conn: H2Connection

    async def handler(self, stream: H2Stream) -> None:
        self.handled.append(stream.request_headers)
        await stream.send_headers([(b":status", b"200")], end_stream=True)

    async def serve(self, sock: trio.SocketStream, *, task_status: trio.TaskStatus[None]) -> None:
        self.conn = H2Connection(sock, client_side=False)
        try:
            await self.conn.run(self.handler, task_status=task_status)
        except (H2ProtocolError, H2FloodError) as exc:
            self.error = exc


async def attack(flood: bytes | None, *, repeat: int = 1, small_buffers: bool = False) -> tuple[Target, list[object]]:
    """Send the preface, then ``flood`` up to ``repeat`` times (stopping when the server hangs up); return the
    target and the frames the server sent."""
    client_sock, server_sock = await tcp_pair()
    if small_buffers:  # a client that does not read: nothing the server writes gets anywhere
        client_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    target = Target()
    peer = RawPeer(client_sock)
    frames: list[object] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(target.serve, server_sock)
        await peer.start_client()
        if not small_buffers:
            nursery.start_soon(lambda: _collect(peer, frames))
        if flood is not None:
            try:
                for _ in range(repeat):
                    await peer.send(flood)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
    await client_sock.aclose()
    return target, frames


async def _collect(peer: RawPeer, frames: list[object]) -> None:
    frames.extend(await peer.frames_until_close())


def goaway(frames: list[object]) -> GoAwayFrame:
    found = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert found, f"no GOAWAY in {frames}"
    return found[-1]


@deadline(60)
async def test_rapid_reset_closes_before_1000_streams() -> None:
    target, frames = await attack(floods.rapid_reset(50_000))
    assert isinstance(target.error, H2FloodError) and target.error.kind == "rapid_reset"
    assert target.conn.counters.flood_closed == {"rapid_reset": 1}
    last = goaway(frames)
    assert last.error_code == H2ErrorCode.ENHANCE_YOUR_CALM
    assert last.last_stream_id < 2000  # fewer than 1000 streams processed
    assert len(target.handled) <= 100


@deadline(60)
@pytest.mark.parametrize(
    "frame",
    [floods.PING, floods.SETTINGS],
    ids=["ping", "settings"],
)
async def test_control_frame_flood_from_a_client_that_does_not_read(frame: bytes) -> None:
    target, _ = await attack(frame * 1000, repeat=1000, small_buffers=True)  # up to 10^6 frames
    assert isinstance(target.error, H2FloodError) and target.error.kind == "outbound_control"
    assert target.conn.counters.flood_closed == {"outbound_control": 1}


@deadline(30)
async def test_priority_churn_is_capped_per_stream() -> None:
    target, frames = await attack(floods.priority_churn())  # 10^5 PRIORITY frames on 10 streams
    assert isinstance(target.error, H2FloodError) and target.error.kind == "priority"
    assert target.conn.counters.flood_closed == {"priority": 1}
    assert goaway(frames).error_code == H2ErrorCode.ENHANCE_YOUR_CALM
    assert len(target.handled) <= 10  # the chunk that trips is never parsed by h2


@deadline(30)
async def test_one_stream_over_the_limit_is_refused_alone() -> None:
    release = trio.Event()

    async def hold(stream: H2Stream) -> None:
        await release.wait()
        await stream.send_headers([(b":status", b"200")], end_stream=True)

    async def answered(peer: RawPeer, count: int) -> set[int]:
        streams: set[int] = set()
        while len(streams) < count:
            frame = await peer.next_frame()
            assert frame is not None and not isinstance(frame, (GoAwayFrame, RstStreamFrame)), frame
            if isinstance(frame, HeadersFrame):
                streams.add(frame.stream_id)
        return streams

    client_sock, server_sock = await tcp_pair()
    server = H2Connection(server_sock, client_side=False)
    peer = RawPeer(client_sock)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run, hold)
        await peer.start_client()
        await peer.send(b"".join(peer.headers(sid, request()) for sid in range(1, 203, 2)))  # 101 streams
        frame = await peer.next_frame()
        while not isinstance(frame, RstStreamFrame):
            frame = await peer.next_frame()
        assert (frame.stream_id, frame.error_code) == (201, H2ErrorCode.REFUSED_STREAM)
        release.set()
        assert await answered(peer, 100) == set(range(1, 201, 2))
        await peer.send(peer.headers(203, request()))  # the slots are free again once answered
        assert await answered(peer, 1) == {203}
        assert server.counters.rejected == {MAX_CONCURRENT_STREAMS_REASON: 1}
        nursery.cancel_scope.cancel()


@deadline(30)
async def test_empty_data_frames() -> None:
    target, frames = await attack(floods.empty_data())
    assert isinstance(target.error, H2FloodError) and target.error.kind == "empty_frames"
    assert goaway(frames).error_code == H2ErrorCode.PROTOCOL_ERROR


@deadline(30)
async def test_continuation_flood() -> None:
    target, frames = await attack(floods.continuation_flood())
    assert isinstance(target.error, H2FloodError) and target.error.kind == "continuation"
    assert goaway(frames).error_code == H2ErrorCode.ENHANCE_YOUR_CALM
    assert target.handled == []


@deadline(30)
async def test_hpack_bomb() -> None:
    target, frames = await attack(floods.hpack_bomb())
    assert isinstance(target.error, H2FloodError) and target.error.kind == "hpack_bomb"
    assert goaway(frames).error_code == H2ErrorCode.ENHANCE_YOUR_CALM
    assert target.handled == []


G3_21 = [
    request(b"/a b"),
    request(b"a"),
    request(b"http://evil.test/"),
    request(b"/#frag"),
    request(b"*"),
    request(method=b"G ET"),
    request(method=b"get"),
    request(authority=b"good@evil.test"),
    request(authority=b"a b"),
    request(authority=b""),
    [(b":method", b"GET"), (b":scheme", b"gopher"), (b":path", b"/"), (b":authority", b"a.test")],
]


@deadline(30)
async def test_g3_21_invalid_pseudo_headers_are_reset_and_never_reach_the_handler() -> None:
    peer = RawPeer()
    frames_out = b"".join(peer.headers(1 + 2 * i, headers) for i, headers in enumerate(G3_21))
    frames_out += peer.headers(101, request(b"/fine"))
    target, frames = await attack(frames_out + GoAwayFrame(0, last_stream_id=0).serialize())
    resets = {f.stream_id: f.error_code for f in frames if isinstance(f, RstStreamFrame)}
    assert resets == {1 + 2 * i: H2ErrorCode.PROTOCOL_ERROR for i in range(len(G3_21))}
    assert [dict(h)[b":path"] for h in target.handled] == [b"/fine"]
    assert sum(target.conn.counters.rejected.values()) == len(G3_21)


@deadline(30)
async def test_a_repeated_block_is_judged_the_same_each_time() -> None:
    """Blocks that passed every check are remembered per connection (and skip the checks when repeated); invalid
    ones never are: the same invalid request is refused every time, the same valid one served every time."""
    peer = RawPeer()
    valid, invalid = request(b"/fine"), request(b"/a b")
    frames_out = b"".join(peer.headers(1 + 2 * i, invalid if i % 2 else valid) for i in range(6))
    target, frames = await attack(frames_out + GoAwayFrame(0, last_stream_id=0).serialize())
    resets = {f.stream_id: f.error_code for f in frames if isinstance(f, RstStreamFrame)}
    assert resets == {3: H2ErrorCode.PROTOCOL_ERROR, 7: H2ErrorCode.PROTOCOL_ERROR, 11: H2ErrorCode.PROTOCOL_ERROR}
    assert [dict(h)[b":path"] for h in target.handled] == [b"/fine"] * 3
    assert target.conn.counters.rejected == {"bad_path": 3}


G3_22 = [
    [*request(), (b"x-a", b"1\r\ntransfer-encoding: chunked")],
    request(b"/\r\nx: y"),
    [*request(), (b"transfer-encoding", b"chunked")],
    [*request(), (b"X-Upper", b"1")],
    [*request(), (b"connection", b"close")],
]


@deadline(30)
@pytest.mark.parametrize("headers", G3_22, ids=["crlf-value", "crlf-path", "te", "uppercase", "connection"])
async def test_g3_22_downgrade_payloads_close_the_connection(headers: list[tuple[bytes, bytes]]) -> None:
    peer = RawPeer()
    # hpack encodes whatever it is given; h2 refuses it on decode
    block = peer.encoder.encode(headers)
    target, frames = await attack(HeadersFrame(1, block, flags=["END_HEADERS", "END_STREAM"]).serialize())
    assert isinstance(target.error, H2ProtocolError) and not isinstance(target.error, H2FloodError)
    assert goaway(frames).error_code == H2ErrorCode.PROTOCOL_ERROR
    assert target.handled == []
    assert target.conn.counters.protocol_errors == 1
