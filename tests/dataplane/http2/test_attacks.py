"""reliability.md G2 (floods) and G3 21/22 (what h2 accepts or rejects) driven with raw frames against our server
side: each ends in GOAWAY/close with the right kind counted, and the stream handler never sees a bad request."""

from __future__ import annotations

import socket

import pytest
import trio
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
)

from dataplane.http2.conn import MAX_CONCURRENT_STREAMS_REASON, H2Connection, H2Stream
from dataplane.http2.errors import H2ErrorCode, H2FloodError, H2ProtocolError
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


def _pairs(peer: RawPeer, first: int, count: int) -> bytes:
    return b"".join(
        peer.headers(sid, request(), end_stream=True) + RstStreamFrame(sid, error_code=8).serialize()
        for sid in range(first, first + 2 * count, 2)
    )


@deadline(60)
async def test_rapid_reset_closes_before_1000_streams() -> None:
    encoder_peer = RawPeer()
    flood = b"".join(_pairs(encoder_peer, 1 + 2000 * i, 1000) for i in range(50))  # 50,000 pairs
    target, frames = await attack(flood)
    assert isinstance(target.error, H2FloodError) and target.error.kind == "rapid_reset"
    assert target.conn.counters.flood_closed == {"rapid_reset": 1}
    last = goaway(frames)
    assert last.error_code == H2ErrorCode.ENHANCE_YOUR_CALM
    assert last.last_stream_id < 2000  # fewer than 1000 streams processed
    assert len(target.handled) <= 100


@deadline(60)
@pytest.mark.parametrize(
    "frame",
    [PingFrame(0, opaque_data=b"12345678").serialize(), SettingsFrame(0).serialize()],
    ids=["ping", "settings"],
)
async def test_control_frame_flood_from_a_client_that_does_not_read(frame: bytes) -> None:
    target, _ = await attack(frame * 1000, repeat=1000, small_buffers=True)  # up to 10^6 frames
    assert isinstance(target.error, H2FloodError) and target.error.kind == "outbound_control"
    assert target.conn.counters.flood_closed == {"outbound_control": 1}


@deadline(30)
async def test_priority_churn_is_capped_per_stream() -> None:
    peer = RawPeer()
    opened = b"".join(peer.headers(sid, request()) for sid in range(1, 21, 2))
    churn = b"".join(PriorityFrame(1 + 2 * (i % 10), depends_on=0).serialize() for i in range(100_000))
    target, frames = await attack(opened + churn)  # 10^5 PRIORITY frames on 10 streams
    assert isinstance(target.error, H2FloodError) and target.error.kind == "priority"
    assert target.conn.counters.flood_closed == {"priority": 1}
    assert goaway(frames).error_code == H2ErrorCode.ENHANCE_YOUR_CALM
    assert len(target.handled) <= 10  # the chunk that trips is never parsed by h2


@deadline(30)
async def test_one_stream_over_the_limit_is_refused_alone() -> None:
    release = trio.Event()
    answered: list[int] = []

    async def hold(stream: H2Stream) -> None:
        await release.wait()
        await stream.send_headers([(b":status", b"200")], end_stream=True)
        answered.append(stream.stream_id)

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
        await peer.send(peer.headers(203, request()))  # a slot is free again once the others are answered
        statuses: dict[int, object] = {}
        while len(statuses) < 101:
            frame = await peer.next_frame()
            assert frame is not None and not isinstance(frame, (GoAwayFrame, RstStreamFrame)), frame
            if isinstance(frame, HeadersFrame):
                statuses[frame.stream_id] = frame
        assert sorted(statuses) == [*range(1, 201, 2), 203]
        assert server.counters.rejected == {MAX_CONCURRENT_STREAMS_REASON: 1}
        nursery.cancel_scope.cancel()


@deadline(30)
async def test_empty_data_frames() -> None:
    peer = RawPeer()
    flood = peer.headers(1, request(b"/", b"POST"), end_stream=False) + DataFrame(1, b"").serialize() * 10
    target, frames = await attack(flood)
    assert isinstance(target.error, H2FloodError) and target.error.kind == "empty_frames"
    assert goaway(frames).error_code == H2ErrorCode.PROTOCOL_ERROR


@deadline(30)
async def test_continuation_flood() -> None:
    peer = RawPeer()
    block = peer.encoder.encode(request())
    flood = HeadersFrame(1, block).serialize() + ContinuationFrame(1, b"\x82").serialize() * 100_000
    target, frames = await attack(flood)
    assert isinstance(target.error, H2FloodError) and target.error.kind == "continuation"
    assert goaway(frames).error_code == H2ErrorCode.ENHANCE_YOUR_CALM
    assert target.handled == []


@deadline(30)
async def test_hpack_bomb() -> None:
    value = b"a" * 4000
    # literal with incremental indexing (new name), then the new entry (index 62) referenced 20 times: ~80 KB decoded
    add = b"\x40\x01x" + b"\x7f" + _hpack_int(len(value) - 127) + value
    block = b"\x82\x86\x84\x41\x0cexample.test" + add + b"\xbe" * 20
    target, frames = await attack(HeadersFrame(1, block, flags=["END_HEADERS", "END_STREAM"]).serialize())
    assert isinstance(target.error, H2FloodError) and target.error.kind == "hpack_bomb"
    assert goaway(frames).error_code == H2ErrorCode.ENHANCE_YOUR_CALM
    assert target.handled == []


def _hpack_int(value: int) -> bytes:
    out = bytearray()
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


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
