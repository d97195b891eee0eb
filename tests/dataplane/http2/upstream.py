"""In-process h2c upstreams for tests through the whole proxy: a server on H2Connection with any stream handler, and
a handler that records how many streams reached it, at most at once and in total."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from functools import partial

import trio

from dataplane.http2.conn import H2Connection, H2Settings, H2Stream, StreamHandler
from dataplane.http2.counters import H2Counters
from dataplane.http2.errors import H2Error
from dataplane.net.addr import SockAddr


async def _serve_one(
    handler: StreamHandler, counters: H2Counters, settings: H2Settings | None, sock: trio.SocketStream
) -> None:
    with contextlib.suppress(H2Error):  # a broken peer closes only its own connection
        await H2Connection(sock, client_side=False, settings=settings, counters=counters).run(handler)


async def serve_h2(
    handler: StreamHandler,
    counters: H2Counters | None = None,
    port: int = 0,
    *,
    settings: H2Settings | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve h2c on 127.0.0.1:``port``; started with the bound port."""
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(partial(_serve_one, handler, counters or H2Counters(), settings), listeners)


@contextlib.asynccontextmanager
async def h2_upstream(handler: StreamHandler, settings: H2Settings | None = None) -> AsyncIterator[SockAddr]:
    """An h2c server running ``handler`` for every stream until the block exits."""
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(serve_h2, handler, settings=settings))
        yield SockAddr("127.0.0.1", port)
        nursery.cancel_scope.cancel()


class Recorder:
    """A handler that counts the streams it gets, reads the request body, waits ``delay`` seconds (or until
    ``release`` is set, when ``hold``), then answers 200 ``ok``. A stream reset while its body is awaited ends
    at once, so ``active`` is what the proxy holds open here."""

    def __init__(self, *, delay: float = 0.0, hold: bool = False) -> None:
        self.delay = delay
        self.release = trio.Event()
        if not hold:
            self.release.set()
        self.total = 0
        self.active = 0
        self.peak = 0
        self.cancelled = 0
        """Streams that failed (reset by the proxy) before the answer was sent."""

    async def __call__(self, stream: H2Stream) -> None:
        self.total += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            while await stream.receive_data():
                pass
            await trio.sleep(self.delay)
            await self.release.wait()
            await stream.send_headers([(b":status", b"200"), (b"content-length", b"2")])
            await stream.send_data(b"ok", end_stream=True)
        except H2Error:
            self.cancelled += 1
            raise
        finally:
            self.active -= 1
