"""HTTP/2 timeouts through the whole proxy, in virtual time (autojump with a threshold, so the kernel delivers
before time jumps): the response timeout (504, like HTTP/1.1), the per-stream idle timeout with flow-control
buffers bounded while a client never opens its window or dribbles it open (reliability.md G2 18), and keepalive
PINGs that find a dead upstream connection. Each test is bounded at 120 virtual seconds, past every timeout set
here, so a hang fails at once."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing
from hyperframe.frame import DataFrame, RstStreamFrame, WindowUpdateFrame

from dataplane.http2.conn import H2Connection, H2Settings, H2Stream
from dataplane.http2.errors import H2Error, H2ErrorCode
from dataplane.http2.proxy import STREAM_IDLE_ERROR, UPSTREAM_SETTINGS
from dataplane.net.addr import SockAddr
from tests.dataplane.http2.hello import HELLO, hello
from tests.dataplane.http2.pair import deadline, read_body, request
from tests.dataplane.http2.raw import RawPeer
from tests.dataplane.http2.upstream import Recorder, h2_upstream
from tests.dataplane.l7.harness import Running, running_proxy


@pytest.fixture
def virtual_time(mock_clock: trio.testing.MockClock) -> trio.testing.MockClock:
    """The test's clock (pytest-trio takes the clock a test asks for), jumping when nothing ran for 20 ms: real
    sockets, so the kernel delivers before virtual time jumps."""
    mock_clock.autojump_threshold = 0.02
    return mock_clock


WINDOW = 65535  # a stream's and a connection's initial window (the client's and the proxy's upstream side)
BIG = 10 << 20
CHUNK = 1024  # the upstream counts whole chunks: small ones keep its count close to what flow control let out


def _policy(tmp_path: Path, timeouts: str) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(f"timeouts: {{{timeouts}}}\n")
    return str(path)


@contextlib.asynccontextmanager
async def _client(running: Running) -> AsyncIterator[H2Connection]:
    listen = running.listen
    conn = H2Connection(await trio.open_tcp_stream(listen.ip, listen.port), client_side=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(conn.run)
        yield conn
        nursery.cancel_scope.cancel()


def _errors(running: Running) -> dict[tuple[str, str], int]:
    return {(k.status_code, k.error): n for k, n in running.proxy.http.stats.responses.items()}


@deadline(120)
async def test_no_response_head_in_time_is_504_and_the_upstream_stream_cancelled(
    virtual_time: trio.testing.MockClock, tmp_path: Path
) -> None:
    upstream = Recorder(delay=30)
    policy = _policy(tmp_path, "response: 300ms")
    async with (
        h2_upstream(upstream) as addr,
        running_proxy(addr, "--policy", policy) as running,
        _client(running) as client,
    ):
        started = trio.current_time()
        stream = await client.open_stream(request(), end_stream=True)
        head = dict(await stream.receive_response())
        took = trio.current_time() - started
        assert head[b":status"] == b"504"
        assert head[b"x-triomesh-error"] == b"no response from upstream within 0.3s"
        assert 0.3 <= took < 1.0
        assert await read_body(stream) == b""
        with trio.fail_after(60):
            while upstream.active:
                await trio.sleep(1)
        assert upstream.cancelled == 1  # its stream was reset: the late answer had nowhere to go
        assert _errors(running) == {("504", "response_timeout"): 1}


@deadline(120)
async def test_a_streaming_request_waits_for_its_end_before_the_response_timeout_starts(
    virtual_time: trio.testing.MockClock, tmp_path: Path
) -> None:

    async def echo_after_end(stream: H2Stream) -> None:
        body = await read_body(stream)
        await stream.send_headers([(b":status", b"200")])
        await stream.send_data(body, end_stream=True)

    policy = _policy(tmp_path, "response: 1s")
    async with (
        h2_upstream(echo_after_end) as addr,
        running_proxy(addr, "--policy", policy) as running,
        _client(running) as client,
    ):
        stream = await client.open_stream(request(method=b"POST"))
        for i in range(5):  # 5 s of request body: longer than the response timeout, shorter than stream idle
            await stream.send_data(b"%d" % i)
            await trio.sleep(1)
        await stream.end()
        assert (await stream.receive_response())[0] == (b":status", b"200")
        assert await read_body(stream) == b"01234"
        assert _errors(running) == {("200", ""): 1}


class _BigResponses:
    """Answers every stream with up to 10 MiB, counting what flow control let out, until the proxy resets it."""

    def __init__(self) -> None:
        self.sent: dict[int, int] = {}
        self.reset = 0

    async def __call__(self, stream: H2Stream) -> None:
        self.sent[stream.stream_id] = 0
        await stream.send_headers([(b":status", b"200")])
        chunk = b"x" * CHUNK
        try:
            while self.sent[stream.stream_id] < BIG:
                await stream.send_data(chunk)
                self.sent[stream.stream_id] += len(chunk)
        except H2Error:
            self.reset += 1
            raise

    async def wait_reset(self, count: int) -> None:
        with trio.fail_after(5):
            while self.reset < count:
                await trio.sleep(0.1)


@contextlib.asynccontextmanager
async def _big_responses_idle_5s(tmp_path: Path) -> AsyncIterator[tuple[_BigResponses, Running, RawPeer]]:
    """The proxy with ``stream_idle: 5s`` in front of ``_BigResponses``, and a raw client connected to it."""
    upstream = _BigResponses()
    policy = _policy(tmp_path, "stream_idle: 5s")
    async with h2_upstream(upstream) as addr, running_proxy(addr, "--policy", policy) as running:
        peer = RawPeer(await trio.open_tcp_stream(running.listen.ip, running.listen.port))
        await peer.start_client()
        yield upstream, running, peer
        await peer.stream.aclose()


async def _data(peer: RawPeer) -> bytes:
    """The payload of the next DATA frame."""
    with trio.fail_after(60):
        frame = await peer.next_frame()
        while not isinstance(frame, DataFrame):
            assert frame is not None, "the proxy closed the connection"
            frame = await peer.next_frame()
    return bytes(frame.data)


async def _resets(peer: RawPeer, count: int) -> dict[int, int]:
    """Read frames until ``count`` RST_STREAMs came; their codes by stream id."""
    resets: dict[int, int] = {}
    with trio.fail_after(60):  # virtual seconds: well past every timeout these tests set
        while len(resets) < count:
            frame = await peer.next_frame()
            assert frame is not None, "the proxy closed the connection"
            if isinstance(frame, RstStreamFrame):
                resets[frame.stream_id] = frame.error_code
    return resets


@deadline(120)
async def test_a_client_that_never_opens_its_window_is_bounded_and_reset_when_idle(
    virtual_time: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with _big_responses_idle_5s(tmp_path) as (upstream, running, peer):
        streams = range(1, 61, 2)  # 30 streams of 10 MiB: more than the proxy's 1 MiB upstream connection window
        started = trio.current_time()
        await peer.send(b"".join(peer.headers(sid, request()) for sid in streams))
        await trio.sleep(4)  # everything flow control lets through has moved by now (virtual time)
        stalled = dict(upstream.sent)
        # Per stream: the client's window forwarded plus the proxy's stream window buffered; per connection: the
        # client's connection window forwarded plus the proxy's 1 MiB upstream connection window buffered.
        assert len(stalled) == len(streams)
        assert max(stalled.values()) <= 2 * WINDOW
        assert (1 << 20) - len(streams) * CHUNK <= sum(stalled.values()) <= WINDOW + (1 << 20)
        resets = await _resets(peer, len(streams))
        assert 5 <= trio.current_time() - started < 7
        assert resets == dict.fromkeys(streams, H2ErrorCode.CANCEL)
        await upstream.wait_reset(len(streams))
        assert _errors(running) == {("", STREAM_IDLE_ERROR): len(streams)}  # heads came through, bodies were cut


@deadline(120)
async def test_a_one_byte_window_dribble_moves_bytes_but_buffers_no_more(
    virtual_time: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with _big_responses_idle_5s(tmp_path) as (upstream, running, peer):
        await peer.send(peer.headers(1, request()))
        received = 0
        while received < WINDOW:  # the whole initial window arrives
            received += len(await _data(peer))
        dribbles = 2000
        for i in range(dribbles):  # 2000 one-byte grants over 8 s: each moves a byte, so the stream is never idle
            await peer.send(WindowUpdateFrame(0, window_increment=1), WindowUpdateFrame(1, window_increment=1))
            assert len(await _data(peer)) == 1
            if i % 100 == 99:
                await trio.sleep(0.4)
        assert await _resets(peer, 1) == {1: H2ErrorCode.CANCEL}
        await upstream.wait_reset(1)
        assert upstream.sent[1] <= 2 * WINDOW + dribbles
        assert _errors(running) == {("", STREAM_IDLE_ERROR): 1}


@deadline(120)
async def test_the_idle_timeout_resets_streams_waiting_for_a_response_head_or_an_upstream_slot(
    virtual_time: trio.testing.MockClock, tmp_path: Path
) -> None:
    upstream = Recorder(hold=True)
    policy = _policy(tmp_path, "stream_idle: 5s")
    one_at_a_time = H2Settings(max_concurrent_streams=1)
    async with h2_upstream(upstream, one_at_a_time) as addr, running_proxy(addr, "--policy", policy) as running:
        peer = RawPeer(await trio.open_tcp_stream(running.listen.ip, running.listen.port))
        await peer.start_client()
        await peer.send(peer.headers(1, request()), peer.headers(3, request()))  # 3 waits for 1's upstream slot
        started = trio.current_time()
        assert await _resets(peer, 2) == {1: H2ErrorCode.CANCEL, 3: H2ErrorCode.CANCEL}
        assert 5 <= trio.current_time() - started < 6
        upstream.release.set()
        with trio.fail_after(5):
            while upstream.active:
                await trio.sleep(0.1)
        assert (upstream.total, upstream.cancelled) == (1, 1)  # stream 1 cancelled upstream; 3 never got there
        assert _errors(running) == {("", STREAM_IDLE_ERROR): 2}
        await peer.stream.aclose()


class _DeadFirst:
    """An upstream whose first connection goes silent (reads, never writes: no SETTINGS, no PING answers, no
    responses); later connections are served by ``hello``."""

    def __init__(self) -> None:
        self.connections = 0

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._one, listeners)

    async def _one(self, sock: trio.SocketStream) -> None:
        self.connections += 1
        if self.connections == 1:
            with contextlib.suppress(trio.BrokenResourceError):
                while await sock.receive_some(65536):
                    pass
            return
        with contextlib.suppress(H2Error):
            await H2Connection(sock, client_side=False).run(hello)


@deadline(120)
async def test_keepalive_closes_a_dead_upstream_connection_and_the_next_stream_gets_a_new_one(
    virtual_time: trio.testing.MockClock,
) -> None:
    assert (UPSTREAM_SETTINGS.ping_interval, UPSTREAM_SETTINGS.ping_timeout) == (10.0, 20.0)  # Linkerd's
    upstream = _DeadFirst()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(upstream.serve)
        async with running_proxy(SockAddr("127.0.0.1", port)) as running, _client(running) as client:
            started = trio.current_time()
            stream = await client.open_stream(request(), end_stream=True)
            head = dict(await stream.receive_response())
            took = trio.current_time() - started
            assert head[b":status"] == b"502"
            assert b"h2_keepalive_timeout" in head[b"x-triomesh-error"]
            assert 30 <= took < 31  # the first PING after 10 s, unanswered for 20 s
            assert _errors(running) == {("502", "h2_connection_closed"): 1}  # the status the client got, as HTTP/1.1
            stream = await client.open_stream(request(), end_stream=True)
            assert (await stream.receive_response())[0] == (b":status", b"200")
            assert await read_body(stream) == HELLO
            assert upstream.connections == 2
            assert running.proxy.http.h2_upstreams.flood_closed == {}
        nursery.cancel_scope.cancel()
