"""The request-safety rules end to end, through the whole proxy (detection, then the HTTP proxies), in front of a
server that records what reaches it: every Severe smuggling case of the AWS corpus is answered 400 and closed with
nothing reaching the server; h2 requests that h2 itself accepts but we must not forward are refused per stream;
nghttp talks to it like any h2c server."""

from __future__ import annotations

import pytest
import trio
from hyperframe.frame import RstStreamFrame

from dataplane.http2.counters import H2Counters
from dataplane.http2.errors import H2ErrorCode
from dataplane.net.addr import SockAddr
from tests.dataplane.http1.corpus import load_cases
from tests.dataplane.http2.hello import serve_hello
from tests.dataplane.http2.raw import RawPeer
from tests.dataplane.l7.harness import forwarding_proxy
from tests.tools import need

SEVERE = [case for case in load_cases() if case.tier == "Severe"]


async def _recording_server(seen: list[bytes], *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Records every byte any connection sends it; answers nothing."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])

    async def session(stream: trio.SocketStream) -> None:
        async with stream:
            while data := await stream.receive_some(65536):
                seen.append(data)

    await trio.serve_listeners(session, listeners)


async def test_every_severe_smuggling_case_is_400_and_nothing_reaches_the_server() -> None:
    seen: list[bytes] = []
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_recording_server, seen)
        async with forwarding_proxy(SockAddr("127.0.0.1", port)) as (listen, proxy):
            for case in SEVERE:
                stream = await trio.open_tcp_stream(listen.ip, listen.port)
                await stream.send_all(case.raw)
                answer = b""
                with trio.move_on_after(5) as scope:
                    while chunk := await stream.receive_some(65536):  # until the proxy closes
                        answer += chunk
                assert not scope.cancelled_caught, (case.id, answer[:200], seen[-1:])
                await stream.aclose()
                assert answer.startswith(b"HTTP/1.1 4"), (case.id, answer[:80])
            await trio.sleep(0.2)
            assert seen == [], "bytes of a refused request reached the server"
            assert not proxy.http.stats.requests
        nursery.cancel_scope.cancel()


BAD_H2_REQUESTS = [
    ("space in :path", [(b":path", b"/a b")]),
    ("no leading slash", [(b":path", b"a")]),
    ("fragment in :path", [(b":path", b"/a#b")]),
    ("userinfo in :authority", [(b":authority", b"good@evil.test")]),
    ("empty :authority", [(b":authority", b"")]),
    ("space in :method", [(b":method", b"GET /x")]),
    ("lowercase :method", [(b":method", b"get")]),
    ("bogus :scheme", [(b":scheme", b"gopher")]),
]


@pytest.mark.parametrize(("what", "override"), BAD_H2_REQUESTS, ids=[w for w, _ in BAD_H2_REQUESTS])
async def test_h2_requests_h2_accepts_but_we_must_not_forward_are_refused(
    what: str, override: list[tuple[bytes, bytes]]
) -> None:
    async with trio.open_nursery() as nursery:
        counters = H2Counters()
        port = await nursery.start(serve_hello, 0, counters)
        async with forwarding_proxy(SockAddr("127.0.0.1", port)) as (listen, proxy):
            peer = RawPeer(await trio.open_tcp_stream(listen.ip, listen.port))
            await peer.start_client()
            headers = dict([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")])
            headers.update(override)
            await peer.send(peer.headers(1, list(headers.items())))
            with trio.fail_after(5):
                while not isinstance(frame := await peer.next_frame(), RstStreamFrame):
                    assert frame is not None, "connection closed without RST_STREAM"
            assert frame.error_code == H2ErrorCode.PROTOCOL_ERROR, what
            assert counters.streams == 0  # the upstream never saw the request
            assert sum(proxy.http.h2_clients.rejected.values()) == 1
        nursery.cancel_scope.cancel()


async def test_nghttp_through_the_proxy() -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_hello, 0, H2Counters())
        async with forwarding_proxy(SockAddr("127.0.0.1", port)) as (listen, _):
            done = await trio.run_process([need("nghttp"), "-n", "-s", f"http://{listen}/"], capture_stdout=True)
            assert done.returncode == 0
            out = await trio.run_process([need("nghttp"), f"http://{listen}/"], capture_stdout=True)
            assert out.stdout == b"hello\n"
        nursery.cancel_scope.cancel()
