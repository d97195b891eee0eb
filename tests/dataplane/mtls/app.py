"""The application behind a proxy under test: it records every connection and every byte it ever receives.

Every refusal test asserts that this stays at zero. For the positive controls it also answers: a connection
that starts with the HTTP/2 preface is served as h2c (``tests.dataplane.http2.hello``: GET answers ``hello``),
one that starts with an HTTP/1.1 request line gets ``200`` naming the request, anything else is echoed.
"""

from __future__ import annotations

import contextlib
import functools
import re
from dataclasses import dataclass, field
from typing import Final

import trio

from dataplane.http2.conn import H2Connection
from dataplane.http2.errors import H2Error
from tests.dataplane.http2.hello import hello

H2_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_REQUEST_LINE: Final = re.compile(rb"^([A-Z]{1,20}) (\S+) HTTP/1\.[01]\r\n")
_HEAD_END: Final = b"\r\n\r\n"
_MAX_HEAD: Final = 64 * 1024


@dataclass
class RecordingApp:
    """What reached the application: accepted connections, bytes, and the HTTP/1.1 request lines."""

    connections: int = 0
    received: bytearray = field(default_factory=bytearray)
    requests: list[str] = field(default_factory=list)
    h2_connections: int = 0

    @property
    def untouched(self) -> bool:
        return self.connections == 0 and not self.received

    async def serve(self, port: int, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on 127.0.0.1:``port`` (the port the proxy under test was started with) until cancelled."""
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        recorded = _Recorded(stream, self.received)
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, H2Error):
                first = await recorded.receive_some()
                if not first:
                    return
                if H2_PREFACE.startswith(first[: len(H2_PREFACE)]):
                    self.h2_connections += 1
                    recorded.push_back(first)
                    await H2Connection(recorded, client_side=False).run(hello)
                elif _REQUEST_LINE.match(first):
                    await self._http1(recorded, first)
                else:
                    await _echo(recorded, first)

    async def _http1(self, stream: _Recorded, buffer: bytes) -> None:
        """Keep-alive HTTP/1.1 without bodies: answer each request with 200 naming it."""
        pending = bytearray(buffer)
        while True:
            while _HEAD_END not in pending:
                if len(pending) > _MAX_HEAD or not (data := await stream.receive_some()):
                    return
                pending += data
            head, _, rest = bytes(pending).partition(_HEAD_END)
            pending = bytearray(rest)
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            self.requests.append(line)
            body = f"app saw {line}\n".encode()
            close = b"connection: close" in head.lower()
            response = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n" % len(body)
            response += b"connection: close\r\n\r\n" if close else b"\r\n"
            await stream.send_all(response + body)
            if close:
                return


async def _echo(stream: _Recorded, first: bytes) -> None:
    data = first
    while data:
        await stream.send_all(data)
        data = await stream.receive_some()
    await stream.send_eof()


class _Recorded(trio.abc.HalfCloseableStream):
    """The accepted stream, adding every byte received to the app's record; bytes pushed back are read again
    (without being counted twice)."""

    def __init__(self, stream: trio.SocketStream, record: bytearray) -> None:
        self._stream = stream
        self._record = record
        self._pushed = b""

    def push_back(self, data: bytes) -> None:
        self._pushed = data + self._pushed

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._pushed:
            data, self._pushed = self._pushed, b""
            return data
        data = await self._stream.receive_some(max_bytes)
        self._record += data
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def start_app(nursery: trio.Nursery, port: int) -> RecordingApp:
    """A fresh RecordingApp serving 127.0.0.1:``port`` in ``nursery`` (cancelled with it)."""
    app = RecordingApp()
    await nursery.start(functools.partial(app.serve, port))
    return app
