"""The admin endpoint: a plain path switch (Linkerd's admin server), one request per connection.

Kept on its own loopback port and off the data path (ztunnel's reasoning): scrapes are cheap, bounded by a head
size and a read timeout, and a slow or hostile client cannot hold more than its own connection.
"""

from __future__ import annotations

import logging
from typing import Final, NoReturn, Protocol

import trio

from dataplane.admin.request import MAX_HEAD, AdminRequest, BadRequestError, parse_request_head

log = logging.getLogger(__name__)

READ_TIMEOUT: Final = 10.0  # seconds to send the request head (kubelet probes time out at 1 s anyway)
_JSON: Final = "application/json"
_TEXT: Final = "text/plain; charset=utf-8"
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

Response = tuple[int, str, bytes]
JSON: Final = _JSON
TEXT: Final = _TEXT


class AdminBackend(Protocol):
    """Answers admin paths: the proxy's own state, or (with --workers) the merged state of its workers."""

    paths: tuple[str, ...]

    async def answer(self, path: str) -> Response | None:
        """The response for ``path``; None when there is no such endpoint."""


async def serve_admin(
    listener: trio.SocketListener,
    backend: AdminBackend,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve the admin endpoint on ``listener`` until cancelled."""

    async def handle(stream: trio.SocketStream) -> None:
        await _handle(stream, backend)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, [listener])
        task_status.started()
        await trio.sleep_forever()
    raise AssertionError("unreachable")


async def _handle(stream: trio.SocketStream, backend: AdminBackend) -> None:
    try:
        with trio.move_on_after(READ_TIMEOUT) as timeout:
            head = await _read_head(stream)
        if timeout.cancelled_caught:
            await _send(stream, "GET", (408, _TEXT, b"request head not received in time\n"))
            return
        if head is None:
            await _send(stream, "GET", (431, _TEXT, b"request head too large\n"))
            return
        try:
            request = parse_request_head(head)
        except BadRequestError as exc:
            await _send(stream, "GET", (exc.status, _TEXT, f"{exc}\n".encode()))
            return
        await _send(stream, request.method, await _route(request, backend))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def _read_head(stream: trio.SocketStream) -> bytes | None:
    buf = bytearray()
    while (end := buf.find(b"\r\n\r\n")) < 0:
        if len(buf) > MAX_HEAD:
            return None
        chunk = await stream.receive_some(4096)
        if not chunk:
            return bytes(buf)
        buf += chunk
    return None if end + 4 > MAX_HEAD else bytes(buf[: end + 4])


async def _route(request: AdminRequest, backend: AdminBackend) -> Response:
    if request.path not in backend.paths:
        return 404, _TEXT, f"no such endpoint {request.path}; try {' '.join(backend.paths)}\n".encode()
    if request.method not in ("GET", "HEAD"):
        return 405, _TEXT, b"only GET and HEAD\n"
    response = await backend.answer(request.path)
    assert response is not None
    return response


async def _send(stream: trio.SocketStream, method: str, response: Response) -> None:
    status, content_type, body = response
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    if status == 405:
        head = head.replace(b"\r\nConnection", b"\r\nAllow: GET, HEAD\r\nConnection", 1)
    await stream.send_all(head if method == "HEAD" else head + body)
