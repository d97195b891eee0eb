"""A tiny h2c server on H2Connection: GET answers "hello", POST echoes the body. For real-client tests and for
`python -m tests.dataplane.http2.hello PORT` under h2load."""

from __future__ import annotations

import sys

import trio

from dataplane.http2.conn import H2Stream
from dataplane.http2.counters import H2Counters
from tests.dataplane.http2.upstream import serve_h2

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


async def serve_hello(
    port: int, counters: H2Counters, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    await serve_h2(hello, counters, port, task_status=task_status)


if __name__ == "__main__":
    trio.run(serve_hello, int(sys.argv[1]), H2Counters())
