"""Incremental HTTP/1.1 request and response parsers (pure, sans-I/O; h11's ``receive_data``/``next_event``).

Feed bytes as they arrive (``b""`` means the peer closed); pull events until ``NEED_DATA``. After each message
the parser pauses: a pipelined second request already in the buffer is not even looked at until the proxy has
finished the first exchange and calls ``start_next()``. Any Http1Error is final: the connection it came from
is closed (requests) or discarded (upstream responses), never reused.
"""

from __future__ import annotations

import enum
from typing import Final

from dataplane.http.model import BodyKind, Framing, Headers, RequestHead, ResponseHead
from dataplane.http1.chunked import ChunkedDecoder
from dataplane.http1.errors import Http1Error, Reason
from dataplane.http1.events import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    DataReceived,
    MessageEnded,
    Pending,
    RequestEvent,
    RequestReceived,
    ResponseEvent,
    ResponseReceived,
)
from dataplane.http1.framing import request_framing, response_framing
from dataplane.http1.head import check_host, check_line_ends, parse_fields, parse_request_line, parse_status_line
from dataplane.http1.limits import DEFAULT_LIMITS, Limits

_CONTENT_LENGTH: Final = b"content-length"
_TRANSFER_ENCODING: Final = b"transfer-encoding"
_CONNECTION: Final = b"connection"
_REQUEST_NOTED: Final = frozenset({_CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION, b"host", b"upgrade", b"expect"})
_RESPONSE_NOTED: Final = frozenset({_CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION})
_MAX_LEADING_CRLF: Final = 8
"""RFC 9112 section 2.2: ignore at least one empty line before a request line; a few, not an endless stream."""


class _State(enum.Enum):
    IDLE = "idle"  # response parser with no request outstanding
    HEAD = "head"
    BODY = "body"
    PAUSED = "paused"
    CLOSED = "closed"
    FAILED = "failed"


class _MessageReader:
    """Buffering, head delimiting and body framing shared by both directions."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._buf = bytearray()
        self._eof = False
        self._state = _State.HEAD
        self._scanned = 0
        self._remaining = 0
        self._kind = BodyKind.NONE
        self._chunks: ChunkedDecoder | None = None
        self._error: Http1Error | None = None

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes read from the peer; ``b""`` records that the peer closed its side."""
        if not data:
            self._eof = True
        elif self._eof:
            raise RuntimeError("receive_data() after end of input")
        else:
            self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received and not yet turned into events (for read backpressure)."""
        return len(self._buf)

    def take_buffered(self) -> bytes:
        """After an upgrade or CONNECT is accepted: the bytes already read past the message, for the raw relay.

        The parser is finished afterwards.
        """
        if self._state is not _State.PAUSED:
            raise RuntimeError(f"take_buffered() in state {self._state.value}: only after a message ended")
        data = bytes(self._buf)
        self._buf.clear()
        self._state = _State.CLOSED
        return data

    def _fail(self, exc: Http1Error) -> Http1Error:
        self._state = _State.FAILED
        self._error = exc
        return exc

    def _first_line_too_long(self) -> Http1Error:
        raise NotImplementedError

    def _head_lines(self) -> list[bytes] | None:
        """The lines of the next complete head (consumed from the buffer), or None if it is not all here yet."""
        buf = self._buf
        end = buf.find(b"\r\n\r\n", max(0, self._scanned - 3))
        self._scanned = check_line_ends(buf, self._scanned, len(buf) if end < 0 else end + 4)
        limit = self._limits.max_head_bytes
        if end < 0:
            if len(buf) > self._limits.max_request_line and buf.find(b"\r\n", 0, self._limits.max_request_line + 2) < 0:
                raise self._first_line_too_long()
            if len(buf) > limit:
                raise Http1Error(Reason.HEADERS_TOO_LARGE, f"head larger than {limit} bytes", status=431)
            if self._eof:
                raise Http1Error(Reason.INCOMPLETE_MESSAGE, "connection closed in the middle of a head")
            return None
        if end > limit:
            raise Http1Error(Reason.HEADERS_TOO_LARGE, f"head larger than {limit} bytes", status=431)
        lines = bytes(buf[:end]).split(b"\r\n")
        del buf[: end + 4]
        self._scanned = 0
        return lines

    def _start_body(self, framing: Framing) -> None:
        self._state = _State.BODY
        self._kind = framing.kind
        self._remaining = framing.length
        self._chunks = ChunkedDecoder(self._limits) if framing.kind is BodyKind.CHUNKED else None

    def _body_event(self) -> DataReceived | MessageEnded | Pending:
        buf = self._buf
        kind = self._kind
        if kind is BodyKind.LENGTH or kind is BodyKind.NONE:
            if not self._remaining:
                self._state = _State.PAUSED
                return MessageEnded()
            if not buf:
                return self._starved()
            n = min(self._remaining, len(buf))
            data = bytes(buf[:n])
            del buf[:n]
            self._remaining -= n
            return DataReceived(data)
        if kind is BodyKind.CHUNKED:
            assert self._chunks is not None
            piece = self._chunks.decode(buf)
            if piece is None:
                return self._starved()
            if not piece:
                self._state = _State.PAUSED
                return MessageEnded(self._chunks.trailers)
            return DataReceived(piece)
        if buf:
            data = bytes(buf)
            buf.clear()
            return DataReceived(data)
        if self._eof:
            self._state = _State.CLOSED
            return MessageEnded()
        return NEED_DATA

    def _starved(self) -> Pending:
        if self._eof:
            raise Http1Error(Reason.INCOMPLETE_MESSAGE, "connection closed in the middle of a body")
        return NEED_DATA


def _tokens(values: list[bytes]) -> set[bytes]:
    return {t.strip(b" \t").lower() for value in values for t in value.split(b",")}


def _keep_alive(version: bytes, tokens: set[bytes]) -> bool:
    if version == b"1.0":
        return b"keep-alive" in tokens
    return b"close" not in tokens


def _canonical_framing_fields(fields: list[tuple[bytes, bytes]], framing: Framing) -> list[tuple[bytes, bytes]]:
    """One Content-Length (identical duplicates were checked equal) and one Transfer-Encoding in canonical
    spelling (``gzip, chunked``, no parameters), each where the first one was: the head the proxy reasons
    about is exactly the head it forwards."""
    te_value = b"%s, chunked" % framing.codings if framing.codings else b"chunked"
    out: list[tuple[bytes, bytes]] = []
    seen_cl = seen_te = False
    for name, value in fields:
        lname = name.lower()
        if lname == _CONTENT_LENGTH:
            if seen_cl:
                continue
            seen_cl = True
        elif lname == _TRANSFER_ENCODING:
            if seen_te:
                continue
            seen_te = True
            out.append((name, te_value))
            continue
        out.append((name, value))
    return out


class RequestParser(_MessageReader):
    """The downstream side: requests from a client.

    ``next_event()`` gives RequestReceived, then DataReceived* and MessageEnded, then PAUSED until
    ``start_next()``; ConnectionClosed when the client closed between requests; NEED_DATA for more input.
    Raises Http1Error (``status`` 400/414/431/501/505) on a request that must be refused.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(limits)

    def next_event(self) -> RequestEvent:
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except Http1Error as exc:
            raise self._fail(exc) from None

    def start_next(self) -> None:
        """Begin parsing the next request on this connection (after the previous exchange is finished)."""
        if self._state is not _State.PAUSED:
            raise RuntimeError(f"start_next() in state {self._state.value}: only after MessageEnded")
        self._state = _State.HEAD

    def _next(self) -> RequestEvent:
        state = self._state
        if state is _State.BODY:
            return self._body_event()
        if state is _State.HEAD:
            return self._head_event()
        if state is _State.PAUSED:
            return PAUSED
        return ConnectionClosed()

    def _first_line_too_long(self) -> Http1Error:
        limit = self._limits.max_request_line
        return Http1Error(Reason.REQUEST_LINE_TOO_LONG, f"request line longer than {limit} bytes", status=414)

    def _head_event(self) -> RequestReceived | ConnectionClosed | Pending:
        buf = self._buf
        if self._scanned == 0:
            skipped = 0
            while buf[:2] == b"\r\n" and skipped < _MAX_LEADING_CRLF:
                del buf[:2]
                skipped += 1
        if not buf:
            if self._eof:
                self._state = _State.CLOSED
                return ConnectionClosed()
            return NEED_DATA
        lines = self._head_lines()
        if lines is None:
            return NEED_DATA
        method, target, version = parse_request_line(lines[0], self._limits)
        fields, noted = parse_fields(lines, 1, self._limits, _REQUEST_NOTED)
        check_host(target, noted.get(b"host", []), version)
        lengths = noted.get(_CONTENT_LENGTH, [])
        codings = noted.get(_TRANSFER_ENCODING, [])
        framing = request_framing(method, version, lengths, codings)
        if len(lengths) > 1 or codings:
            fields = _canonical_framing_fields(fields, framing)
        connection = _tokens(noted.get(_CONNECTION, []))
        upgrade = None
        if version == b"1.1" and b"upgrade" in noted and b"upgrade" in connection:
            upgrade = b", ".join(noted[b"upgrade"])
        has_body = framing.kind is BodyKind.CHUNKED or framing.length > 0
        expect_continue = (
            version == b"1.1" and has_body and any(v.lower() == b"100-continue" for v in noted.get(b"expect", []))
        )
        self._start_body(framing)
        return RequestReceived(
            head=RequestHead(method, target, version, Headers(fields)),
            framing=framing,
            keep_alive=_keep_alive(version, connection),
            expect_continue=expect_continue,
            upgrade=upgrade,
        )


class ResponseParser(_MessageReader):
    """The upstream side: responses to the requests the proxy forwarded, one outstanding at a time.

    Call ``expect(method)`` before (or after) forwarding each request; then ``next_event()`` gives
    ResponseReceived (1xx ones first, each followed directly by the next head), DataReceived*, MessageEnded,
    then PAUSED. Bytes from an upstream with no request outstanding are an error (``unsolicited_response``),
    so an idle pooled connection can be checked by feeding what it sent. Every Http1Error has status 502.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(limits)
        self._state = _State.IDLE
        self._method = b""
        self._upgrade = False
        self._informational = 0

    def expect(self, method: bytes, *, upgrade: bool = False) -> None:
        """Announce the request whose response comes next (``upgrade``: it asked for a protocol switch)."""
        if self._state not in (_State.IDLE, _State.PAUSED):
            raise RuntimeError(f"expect() in state {self._state.value}: the previous response is not finished")
        self._method = method
        self._upgrade = upgrade
        self._informational = 0
        self._state = _State.HEAD

    def next_event(self) -> ResponseEvent:
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except Http1Error as exc:
            if exc.status != 502:
                exc = Http1Error(exc.reason, f"upstream response: {exc}", status=502)
            raise self._fail(exc) from None

    def _next(self) -> ResponseEvent:
        state = self._state
        if state is _State.BODY:
            return self._body_event()
        if state is _State.HEAD:
            return self._head_event()
        if state is _State.IDLE or state is _State.PAUSED:
            if self._buf:
                raise Http1Error(Reason.UNSOLICITED_RESPONSE, "bytes from the upstream with no request outstanding")
            if self._eof:
                self._state = _State.CLOSED
                return ConnectionClosed()
            return NEED_DATA if state is _State.IDLE else PAUSED
        return ConnectionClosed()

    def _first_line_too_long(self) -> Http1Error:
        return Http1Error(Reason.BAD_STATUS_LINE, "status line too long", status=502)

    def _head_event(self) -> ResponseReceived | Pending:
        if not self._buf and self._eof:
            raise Http1Error(Reason.INCOMPLETE_MESSAGE, "upstream closed before sending a response")
        lines = self._head_lines()
        if lines is None:
            return NEED_DATA
        status, reason, version = parse_status_line(lines[0])
        fields, noted = parse_fields(lines, 1, self._limits, _RESPONSE_NOTED)
        lengths = noted.get(_CONTENT_LENGTH, [])
        codings = noted.get(_TRANSFER_ENCODING, [])
        framing = response_framing(self._method, status, version, lengths, codings)
        if len(lengths) > 1 or (codings and framing.kind is BodyKind.CHUNKED):
            fields = _canonical_framing_fields(fields, framing)
        keep_alive = framing.kind is not BodyKind.UNTIL_CLOSE and _keep_alive(
            version, _tokens(noted.get(_CONNECTION, []))
        )
        event = ResponseReceived(ResponseHead(status, reason, version, Headers(fields)), framing, keep_alive)
        if status == 101:
            if not self._upgrade:
                raise Http1Error(Reason.UNEXPECTED_SWITCH, "101 Switching Protocols to a request that asked for none")
            self._state = _State.PAUSED
        elif status < 200:
            self._informational += 1
            if self._informational > self._limits.max_informational:
                raise Http1Error(Reason.TOO_MANY_INFORMATIONAL, f"more than {self._limits.max_informational} 1xx")
        else:
            self._start_body(framing)
        return event
