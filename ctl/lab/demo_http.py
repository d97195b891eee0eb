"""The lab demo app's HTTP/1.1 side: a keep-alive server answering every request with one line of text that
shows what reached the application (method, path, and the fields the proxies set), so the demo can show it.

Deliberately minimal (the proxies in front of it are what is being shown): bodies with Content-Length are read
and discarded, anything it cannot read closes the connection.
"""

from __future__ import annotations

from typing import Final

import trio

from ctl.lab.lines import LineReader, LineTooLongError

IDLE_TIMEOUT: Final = 30.0  # seconds, as for the line protocol
MAX_FIELDS: Final = 100
SHOWN_FIELDS: Final = (b"x-request-id", b"x-forwarded-for", b"x-forwarded-proto")


def answer(name: str, method: bytes, target: bytes, fields: dict[bytes, bytes]) -> bytes:
    """The response body: one line naming the pod and the fields it saw."""
    seen = ", ".join(f"{key.decode()}={fields[key].decode('latin-1')}" for key in SHOWN_FIELDS if key in fields)
    return (
        f"{name} answers {method.decode('latin-1')} {target.decode('latin-1')} ({seen or 'no proxy fields'})\n".encode()
    )


async def handle_http(stream: trio.SocketStream, *, name: str) -> None:
    """Resource handling: closes ``stream`` on return. Error handling: a broken client ends its session."""
    async with stream:
        lines = LineReader(stream, max_line=8192)
        try:
            while True:
                with trio.move_on_after(IDLE_TIMEOUT):
                    request = await _read_head(lines)
                    if request is None:
                        return
                    method, target, fields = request
                    await _discard_body(lines, fields)
                    body = answer(name, method, target, fields)
                    close = fields.get(b"connection", b"").lower() == b"close"
                    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n%s\r\n" % (
                        len(body),
                        b"connection: close\r\n" if close else b"",
                    )
                    await stream.send_all(head + body)
                    if close:
                        return
                    continue
                return
        except (trio.BrokenResourceError, trio.ClosedResourceError, LineTooLongError, ValueError, EOFError):
            return


async def _read_head(lines: LineReader) -> tuple[bytes, bytes, dict[bytes, bytes]] | None:
    first = await lines.readline()
    if not first:
        return None
    method, target, _version = first.split(b" ", 2)
    fields: dict[bytes, bytes] = {}
    while line := await lines.readline():
        if len(fields) >= MAX_FIELDS:
            raise ValueError("too many header fields")
        key, _, value = line.partition(b":")
        fields[key.strip().lower()] = value.strip()
    return method, target, fields


async def _discard_body(lines: LineReader, fields: dict[bytes, bytes]) -> None:
    length = int(fields.get(b"content-length", b"0"))
    if length:
        await lines.read_exactly(length)
