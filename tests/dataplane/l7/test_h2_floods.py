"""reliability.md G2 floods through the whole proxy: each attacking connection gets GOAWAY with the right code (or,
when it does not read, is dropped), is closed, and shows up in the admin /metrics as
``triomesh_h2_flood_closed_total{side="client",kind=...}``; the proxy's memory grows by at most 1 MiB; the upstream
sees a bounded number of streams; and a legitimate client on another connection is served all along."""

from __future__ import annotations

import contextlib
import gc
import socket
from dataclasses import dataclass

import pytest
import trio
from hyperframe.frame import Frame, GoAwayFrame, RstStreamFrame

from dataplane.http2.conn import H2Connection
from dataplane.http2.errors import H2Error, H2ErrorCode
from dataplane.net.addr import SockAddr
from tests.dataplane.http2 import floods
from tests.dataplane.http2.pair import deadline, read_body, request
from tests.dataplane.http2.raw import RawPeer
from tests.dataplane.http2.upstream import Recorder, h2_upstream
from tests.dataplane.l7.harness import forwarding_proxy


@dataclass(frozen=True)
class Attack:
    flood: bytes
    kind: str
    goaway: H2ErrorCode | None
    """The GOAWAY code the attacker reads; None: it does not read (what the proxy wrote is dropped with it)."""
    upstream_streams: int
    """The most streams that may reach the upstream."""
    repeat: int = 1


ATTACKS = {
    # <= 1000 streams processed: the upstream sees at most that many (and <= 100 at once, asserted below)
    "rapid_reset": Attack(floods.rapid_reset(50_000), "rapid_reset", H2ErrorCode.ENHANCE_YOUR_CALM, 1000),
    "ping": Attack(floods.PING * 1000, "outbound_control", None, 0, repeat=1000),  # 10^6 PINGs
    "settings": Attack(floods.SETTINGS * 1000, "outbound_control", None, 0, repeat=1000),
    "empty_frames": Attack(floods.empty_data(), "empty_frames", H2ErrorCode.PROTOCOL_ERROR, 1),
    "continuation": Attack(floods.continuation_flood(), "continuation", H2ErrorCode.ENHANCE_YOUR_CALM, 0),
    "hpack_bomb": Attack(floods.hpack_bomb(), "hpack_bomb", H2ErrorCode.ENHANCE_YOUR_CALM, 0),
    # each refused request is a stream ended early: the rapid-reset detector closes the connection
    "invalid_requests": Attack(floods.invalid_requests(10_000), "rapid_reset", H2ErrorCode.ENHANCE_YOUR_CALM, 0),
    "priority": Attack(floods.priority_churn(), "priority", H2ErrorCode.ENHANCE_YOUR_CALM, 10),
}


class LegitClient:
    """One well-behaved connection sending GETs one after another until cancelled."""

    def __init__(self) -> None:
        self.served = 0
        self.failures: list[object] = []

    async def run(self, listen: SockAddr, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        conn = H2Connection(await trio.open_tcp_stream(listen.ip, listen.port), client_side=True)
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run)
            task_status.started()
            while True:
                try:
                    stream = await conn.open_stream(request(b"/legit"), end_stream=True)
                    head = await stream.receive_response()
                    if head[0] == (b":status", b"200") and await read_body(stream) == b"ok":
                        self.served += 1
                    else:
                        self.failures.append(head)
                except H2Error as exc:
                    self.failures.append(exc)
                    return
                await trio.sleep(0.005)

    async def served_more(self, than: int) -> None:
        with trio.fail_after(10):
            while self.served <= than:
                await trio.sleep(0.01)


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


async def scrape(admin: SockAddr) -> str:
    stream = await trio.open_tcp_stream(admin.ip, admin.port)
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n")
        data = bytearray()
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data.partition(b"\r\n\r\n")[2].decode()


async def attack(listen: SockAddr, what: Attack) -> list[Frame]:
    """Preface, then the flood (stopping when the proxy hangs up); the frames read until the proxy closed."""
    sock = await trio.open_tcp_stream(listen.ip, listen.port)
    if what.goaway is None:  # a client that does not read: nothing the proxy writes gets anywhere
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    peer = RawPeer(sock)
    frames: list[Frame] = []

    async def collect() -> None:
        frames.extend(await peer.frames_until_close())

    async with trio.open_nursery() as nursery:
        await peer.start_client()
        if what.goaway is not None:
            nursery.start_soon(collect)
        try:
            for _ in range(what.repeat):
                await peer.send(what.flood)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    if what.goaway is None:
        await peer.frames_until_close()  # now it reads: whatever is left, then the close
    await sock.aclose()
    return frames


@deadline(60)
@pytest.mark.parametrize("name", list(ATTACKS))
async def test_flood_through_the_proxy(name: str) -> None:
    what = ATTACKS[name]
    upstream = Recorder()
    legit = LegitClient()
    async with h2_upstream(upstream) as addr, forwarding_proxy(addr) as (listen, proxy), trio.open_nursery() as bg:
        await bg.start(legit.run, listen)
        await legit.served_more(than=0)
        before = legit.served
        gc.collect()
        rss = _rss_kib()
        frames = await attack(listen, what)
        gc.collect()
        assert _rss_kib() - rss <= 1024  # reliability.md G2 12/16: the proxy (this process) grew <= 1 MiB
        if what.goaway is not None:
            goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
            assert goaways and goaways[-1].error_code == what.goaway, frames[-5:]
        assert proxy.http.h2_clients.flood_closed == {what.kind: 1}
        metrics = await scrape(proxy.settings.admin)
        assert f'triomesh_h2_flood_closed_total{{kind="{what.kind}",side="client"}} 1.0' in metrics
        legit_total = legit.served + 1  # the one in flight may still reach the upstream
        assert upstream.total - legit_total <= what.upstream_streams
        assert upstream.peak <= 100
        await legit.served_more(than=before)
        assert legit.failures == []
        assert proxy.http.h2_upstreams.flood_closed == {} and proxy.http.h2_upstreams.protocol_errors == 0
        bg.cancel_scope.cancel()


@deadline(60)
async def test_rapid_reset_of_streams_that_reached_the_upstream() -> None:
    """HEADERS and their RST_STREAMs in separate writes, so the proxy forwards each stream before it is reset."""
    upstream = Recorder()
    legit = LegitClient()
    async with h2_upstream(upstream) as addr, forwarding_proxy(addr) as (listen, proxy), trio.open_nursery() as bg:
        await bg.start(legit.run, listen)
        await legit.served_more(than=0)
        peer = RawPeer(await trio.open_tcp_stream(listen.ip, listen.port))
        await peer.start_client()
        frames: list[Frame] = []

        async def collect() -> None:
            frames.extend(await peer.frames_until_close())

        bg.start_soon(collect)
        batch = 20
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            for first in range(1, 200_000, 2 * batch):  # up to 100,000 streams, 20 at a time
                ids = range(first, first + 2 * batch, 2)
                await peer.send(b"".join(peer.headers(sid, request(b"/", b"POST"), end_stream=False) for sid in ids))
                await trio.sleep(0.005)  # the proxy opens them upstream
                await peer.send(*(RstStreamFrame(sid, error_code=H2ErrorCode.CANCEL) for sid in ids))
        with trio.fail_after(5):
            while not frames:
                await trio.sleep(0.01)
        goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
        assert goaways and goaways[-1].error_code == H2ErrorCode.ENHANCE_YOUR_CALM
        assert goaways[-1].last_stream_id < 2000  # fewer than 1000 streams processed
        assert proxy.http.h2_clients.flood_closed == {"rapid_reset": 1}
        attack_streams = upstream.total - legit.served - 1
        assert 0 < attack_streams <= 1000  # forwarded before their reset (some reach the handler), then the cutoff
        assert upstream.peak <= 100
        with trio.fail_after(5):
            while upstream.active > 1:
                await trio.sleep(0.01)
        assert upstream.cancelled >= attack_streams - 1  # the proxy cancelled them upstream too
        before = legit.served
        await legit.served_more(than=before)
        assert legit.failures == []
        bg.cancel_scope.cancel()


@deadline(30)
async def test_a_settings_frame_with_2400_entries_is_processed_in_bounded_time() -> None:
    upstream = Recorder()
    async with h2_upstream(upstream) as addr, forwarding_proxy(addr) as (listen, proxy):
        peer = RawPeer(await trio.open_tcp_stream(listen.ip, listen.port))
        await peer.start_client()
        started = trio.current_time()
        await peer.send(floods.settings_with_entries(2400), peer.headers(1, request()))
        with trio.fail_after(2):
            frame = await peer.next_frame()
            while frame is not None and not (frame.stream_id == 1 and "END_STREAM" in frame.flags):
                assert not isinstance(frame, GoAwayFrame), frame
                frame = await peer.next_frame()
        assert frame is not None, "the proxy closed the connection"
        assert trio.current_time() - started < 1.0
        assert proxy.http.h2_clients.flood_closed == {} and proxy.http.h2_clients.protocol_errors == 0
        await peer.stream.aclose()
