"""The responses the HTTP/1.1 proxy writes itself (4xx/5xx with ``x-triomesh-error``) and the graceful close
after one; shared by the trio loop (``proxy.py``) and the epoll engine (``engine.py``)."""

from __future__ import annotations

import socket
from typing import Final

import trio

from dataplane.http.errors import ERROR_FIELD, error_value
from dataplane.http.model import BodyKind, Framing, Headers, ResponseHead
from dataplane.http.wire import serialise_response_head
from dataplane.upstream import direct_io

LINGER_SECONDS: Final = 2.0
LINGER_BYTES: Final = 1 << 20
_REASONS: Final = {
    400: b"Bad Request",
    403: b"Forbidden",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
}


def refusal(status: int, why: str, *, close: bool) -> bytes:
    """A complete response with ``status``, saying ``why`` in the body and in ``x-triomesh-error``."""
    reason = _REASONS.get(status, b"Error")
    body = b"%d %s: %s\n" % (status, reason, error_value(why))
    headers = Headers([(b"content-type", b"text/plain"), (ERROR_FIELD, error_value(why))])
    if close:
        headers.add(b"connection", b"close")
    head = serialise_response_head(
        ResponseHead(status, reason, b"HTTP/1.1", headers), Framing(BodyKind.LENGTH, len(body))
    )
    return head + body


async def linger(sock: socket.socket) -> None:
    """Close gracefully after refusing a request the client may still be sending: closing a socket with
    unread input sends a reset, which can destroy our error response before the client reads it. So pass our
    FIN, then read and discard what still comes (bounded in bytes and time) until the client's FIN."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return
    discarded = 0
    with trio.move_on_after(LINGER_SECONDS):
        while discarded < LINGER_BYTES and (n := await direct_io.receive(sock, _discard)):
            discarded += n


def _discard(data: memoryview) -> None:
    pass
