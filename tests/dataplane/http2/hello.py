"""A tiny h2c server on H2Connection: GET answers "hello", POST echoes the body. For real-client tests and for
`python -m tests.dataplane.http2.hello PORT` under h2load."""

from __future__ import annotations

import contextlib
import sys
from functools import partial

import trio

from dataplane.http2.conn import H2Connection, H2Stream
from dataplane.http2.counters import H2Counters
from dataplane.http2.errors import H2Error

HELLO = b"hello\n"


async def hello(stream: H2Stream) -> None:
    method = dict(stream.request_headers)[b":method"]
    if method == b"POST":
        await stream.send_headers([(b":status", b"200")])
        while chunk := await stream.receive_data():
            await stream.send_data(chunk)
        await stream.end()
        return
    await stream.send_headers([(b":status", b"200"), (b"content-length", b"%d" % len(HELLO))])
    await stream.send_data(HELLO, end_stream=True)


async def _serve_one(counters: H2Counters, sock: trio.SocketStream) -> None:
    with contextlib.suppress(H2Error):  # a broken client closes only its own connection
        await H2Connection(sock, client_side=False, counters=counters).run(hello)


async def serve_hello(
    port: int, counters: H2Counters, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(partial(_serve_one, counters), listeners)


if __name__ == "__main__":
    trio.run(serve_hello, int(sys.argv[1]), H2Counters())
