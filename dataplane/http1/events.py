"""What the HTTP/1.1 parsers hand to the proxy loop (h11 vocabulary: past-tense events, two sentinels)."""

from __future__ import annotations

import enum

import msgspec

from dataplane.http.model import Framing, Headers, RequestHead, ResponseHead


class Pending(enum.Enum):
    NEED_DATA = "need_data"
    """Feed more bytes (``receive_data``) before asking again."""
    PAUSED = "paused"
    """A message ended: nothing more is parsed until ``start_next()`` (or ``take_buffered()`` to switch)."""


NEED_DATA = Pending.NEED_DATA
PAUSED = Pending.PAUSED


class RequestReceived(msgspec.Struct, frozen=True):
    head: RequestHead
    framing: Framing
    """The body as received; the canonical forwarded head is written from it (``dataplane.http.wire``)."""
    keep_alive: bool
    """The client lets the connection carry another request after this one (Connection, HTTP version)."""
    expect_continue: bool
    """``Expect: 100-continue`` on a request with a body: the client may wait for a 100 before sending it."""
    upgrade: bytes | None
    """The protocol asked for with ``Upgrade`` + ``Connection: upgrade`` (HTTP/1.1 only), e.g. b"websocket".
    Switch to a raw relay only after the upstream's 101; otherwise ``start_next()`` as usual."""

    @property
    def is_connect(self) -> bool:
        """CONNECT: after a 2xx from the upstream, both sides become a raw relay (``take_buffered()``)."""
        return self.head.method == b"CONNECT"


class ResponseReceived(msgspec.Struct, frozen=True):
    head: ResponseHead
    framing: Framing
    keep_alive: bool
    """The upstream connection may be reused after this response (False: discard it after the body)."""

    @property
    def informational(self) -> bool:
        """A 1xx other than 101: forward it and keep reading; the final response follows."""
        return self.head.status < 200 and self.head.status != 101


class DataReceived(msgspec.Struct, frozen=True):
    data: bytes
    """Body bytes, de-chunked: re-frame them with ``encode_chunk`` or send them as they are for Content-Length."""


class MessageEnded(msgspec.Struct, frozen=True):
    trailers: Headers = msgspec.field(default_factory=Headers)
    """Trailer fields of a chunked body (empty otherwise)."""


class ConnectionClosed(msgspec.Struct, frozen=True):
    """The peer closed cleanly between messages."""


RequestEvent = RequestReceived | DataReceived | MessageEnded | ConnectionClosed | Pending
ResponseEvent = ResponseReceived | DataReceived | MessageEnded | ConnectionClosed | Pending
