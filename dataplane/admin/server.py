"""The admin endpoint: a plain path switch (Linkerd's admin server), one request per connection.

Kept on its own loopback port and off the data path (ztunnel's reasoning): scrapes are cheap, bounded by a head
size and a read timeout, and a slow or hostile client cannot hold more than its own connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final, NoReturn

import msgspec
import trio

from dataplane.admin.documents import AdminView, config_report, connections_report, status_report
from dataplane.admin.request import MAX_HEAD, AdminRequest, BadRequestError, parse_request_head
from dataplane.net.addr import SockAddr
from dataplane.net.listener import open_listener
from dataplane.telemetry.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

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


async def serve_admin(
    addr: SockAddr,
    view: AdminView,
    render_metrics: Callable[[], bytes],
    *,
    task_status: trio.TaskStatus[SockAddr] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve the admin endpoint on ``addr`` until cancelled; ``started`` with the bound address."""
    listener = open_listener(addr)
    bound = SockAddr.from_sockname(listener.socket.getsockname())

    async def handle(stream: trio.SocketStream) -> None:
        await _handle(stream, view, render_metrics)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, [listener])
        task_status.started(bound)
        await trio.sleep_forever()
    raise AssertionError("unreachable")


async def _handle(stream: trio.SocketStream, view: AdminView, render_metrics: Callable[[], bytes]) -> None:
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
        await _send(stream, request.method, _route(request, view, render_metrics))
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


def _route(request: AdminRequest, view: AdminView, render_metrics: Callable[[], bytes]) -> Response:
    handler = _ROUTES.get(request.path)
    if handler is None:
        return 404, _TEXT, f"no such endpoint {request.path}; try {' '.join(sorted(_ROUTES))}\n".encode()
    if request.method not in ("GET", "HEAD"):
        return 405, _TEXT, b"only GET and HEAD\n"
    return handler(view, render_metrics)


def _live(view: AdminView, _: Callable[[], bytes]) -> Response:
    return 200, _TEXT, b"live\n"


def _ready(view: AdminView, _: Callable[[], bytes]) -> Response:
    state = view.state
    if state.ready and not state.draining:
        return 200, _TEXT, b"ready\n"
    return 503, _TEXT, f"not ready: {'draining' if state.draining else state.not_ready_reason}\n".encode()


def _metrics(view: AdminView, render_metrics: Callable[[], bytes]) -> Response:
    return 200, METRICS_CONTENT_TYPE, render_metrics()


def _connections(view: AdminView, _: Callable[[], bytes]) -> Response:
    return 200, _JSON, msgspec.json.encode(connections_report(view))


def _status(view: AdminView, _: Callable[[], bytes]) -> Response:
    return 200, _JSON, msgspec.json.encode(status_report(view))


def _config(view: AdminView, _: Callable[[], bytes]) -> Response:
    return 200, _JSON, msgspec.json.encode(config_report(view))


_ROUTES: Final[dict[str, Callable[[AdminView, Callable[[], bytes]], Response]]] = {
    "/live": _live,
    "/ready": _ready,
    "/metrics": _metrics,
    "/connections": _connections,
    "/status": _status,
    "/config": _config,
}


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
