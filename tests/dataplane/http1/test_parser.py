"""The HTTP/1.1 parsers' rules, one behaviour per test (reliability.md G1)."""

from __future__ import annotations

import pytest

from dataplane.http.model import CHUNKED, NO_BODY, UNTIL_CLOSE, BodyKind, Framing
from dataplane.http1.errors import Http1Error
from dataplane.http1.events import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    DataReceived,
    MessageEnded,
    RequestEvent,
    RequestReceived,
    ResponseEvent,
    ResponseReceived,
)
from dataplane.http1.framing import downstream_response_framing
from dataplane.http1.parser import RequestParser, ResponseParser


def drain(parser: RequestParser | ResponseParser) -> list[RequestEvent | ResponseEvent]:
    events: list[RequestEvent | ResponseEvent] = []
    for _ in range(1000):
        event = parser.next_event()
        events.append(event)
        if event is NEED_DATA or event is PAUSED or isinstance(event, ConnectionClosed):
            return events
    raise AssertionError("parser did not settle")


def refused(raw: bytes) -> Http1Error:
    p = RequestParser()
    p.receive_data(raw)
    with pytest.raises(Http1Error) as info:
        drain(p)
    return info.value


def test_pipelined_request_waits_for_start_next() -> None:
    p = RequestParser()
    p.receive_data(b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: h\r\n\r\n")
    first = drain(p)
    assert [type(e).__name__ for e in first] == ["RequestReceived", "DataReceived", "MessageEnded", "Pending"]
    assert first[-1] is PAUSED and p.next_event() is PAUSED
    p.start_next()
    second = p.next_event()
    assert isinstance(second, RequestReceived) and second.head.target == b"/b"


def test_refusal_is_final() -> None:
    p = RequestParser()
    p.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    with pytest.raises(Http1Error):
        p.next_event()
    with pytest.raises(Http1Error):
        p.next_event()


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400, "te_and_cl"),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\n", 400, "bad_content_length"),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1_0\r\n\r\n", 400, "bad_content_length"),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n", 400, "bad_content_length"),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775808\r\n\r\n", 400, "bad_content_length"),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,chunked\r\n\r\n", 400, "bad_transfer_encoding"),
        (b'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: "chunked"\r\n\r\n', 400, "bad_transfer_encoding"),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: cow, chunked\r\n\r\n", 501, "unsupported_transfer_coding"),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "bad_transfer_encoding"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400, "bad_header"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX : a\r\n\r\n", 400, "bad_header"),
        (b"GET / HTTP/1.1\nHost: h\n\n", 400, "bad_header"),
        (b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400, "bad_header"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent_Length: 5\r\n\r\n", 400, "bad_header"),
        (b"GET / HTTP/1.1\r\n\r\n", 400, "bad_host"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "bad_host"),
        (b"GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n", 400, "bad_host"),
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, "bad_version"),
        (b"GET / HTTP/1.32\r\nHost: h\r\n\r\n", 400, "bad_request_line"),
        (b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "bad_request_line"),
        (b"GET a HTTP/1.1\r\nHost: h\r\n\r\n", 400, "bad_request_line"),
        (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: y\r\n" * 100 + b"\r\n", 431, "headers_too_large"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"y" * 61 * 1024 + b"\r\n\r\n", 431, "headers_too_large"),
        (b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\n\r\n", 414, "request_line_too_long"),
        (b"GET /" + b"a" * 8200, 414, "request_line_too_long"),
    ],
)
def test_refusals(raw: bytes, status: int, reason: str) -> None:
    error = refused(raw)
    assert (error.status, error.reason) == (status, reason)


def test_limits_are_inclusive() -> None:
    p = RequestParser()
    p.receive_data(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 99 + b"Host: h\r\n\r\n")
    assert isinstance(p.next_event(), RequestReceived)


@pytest.mark.parametrize(
    "body",
    [
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"+5\r\nhello\r\n0\r\n\r\n",
        b"\r\nhello\r\n0\r\n\r\n",
        b"5\rx\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloX\r\n0\r\n\r\n",
        b"100000000\r\n",
        b"5;" + b"a" * 5000 + b"\r\n",
        b"5\nhello\r\n0\r\n\r\n",
    ],
)
def test_bad_chunks(body: bytes) -> None:
    error = refused(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    assert error.status == 400


def test_chunked_byte_by_byte() -> None:
    p = RequestParser()
    raw = (
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nT: v\r\n\r\n"
    )
    data = b""
    ended = None
    for i in range(len(raw)):
        p.receive_data(raw[i : i + 1])
        for event in drain(p):
            if isinstance(event, DataReceived):
                data += event.data
            elif isinstance(event, MessageEnded):
                ended = event
    assert data == b"abcde"
    assert ended is not None and ended.trailers.get(b"t") == b"v"


def test_eof() -> None:
    p = RequestParser()
    p.receive_data(b"")
    assert isinstance(p.next_event(), ConnectionClosed)
    p = RequestParser()
    p.receive_data(b"GET / HTTP/1.1\r\nHost")
    assert p.next_event() is NEED_DATA
    p.receive_data(b"")
    with pytest.raises(Http1Error) as info:
        p.next_event()
    assert info.value.reason == "incomplete_message"
    p = RequestParser()
    p.receive_data(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab")
    p.receive_data(b"")
    with pytest.raises(Http1Error) as info:
        drain(p)
    assert info.value.reason == "incomplete_message"


def test_request_facts() -> None:
    p = RequestParser()
    p.receive_data(
        b"GET /chat HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nraw websocket bytes"
    )
    event = p.next_event()
    assert isinstance(event, RequestReceived)
    assert event.upgrade == b"websocket" and event.keep_alive
    assert isinstance(p.next_event(), MessageEnded)
    assert p.take_buffered() == b"raw websocket bytes"

    p = RequestParser()
    p.receive_data(b"PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    event = p.next_event()
    assert isinstance(event, RequestReceived) and event.expect_continue

    p = RequestParser()
    p.receive_data(b"CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n")
    event = p.next_event()
    assert isinstance(event, RequestReceived) and event.is_connect and event.framing == NO_BODY

    p = RequestParser()
    p.receive_data(b"GET / HTTP/1.0\r\n\r\n")
    event = p.next_event()
    assert isinstance(event, RequestReceived) and not event.keep_alive


def response_events(method: bytes, raw: bytes, *, upgrade: bool = False) -> list[RequestEvent | ResponseEvent]:
    p = ResponseParser()
    p.expect(method, upgrade=upgrade)
    p.receive_data(raw)
    return drain(p)


def test_response_framing() -> None:
    head = response_events(b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    assert isinstance(head[0], ResponseReceived) and head[0].framing == NO_BODY
    assert isinstance(head[1], MessageEnded)
    assert head[0].head.headers.get(b"content-length") == b"5"

    for status in (b"204 No Content", b"304 Not Modified"):
        events = response_events(b"GET", b"HTTP/1.1 " + status + b"\r\n\r\n")
        assert isinstance(events[1], MessageEnded)

    close = response_events(b"GET", b"HTTP/1.1 200 OK\r\n\r\nabc")
    assert isinstance(close[0], ResponseReceived) and close[0].framing == UNTIL_CLOSE and not close[0].keep_alive

    informational = response_events(
        b"GET", b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(informational[0], ResponseReceived) and informational[0].informational
    assert isinstance(informational[1], ResponseReceived) and informational[1].head.status == 200

    switched = response_events(b"GET", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", upgrade=True)
    assert switched[-1] is PAUSED


@pytest.mark.parametrize(
    ("method", "raw", "reason"),
    [
        (b"GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", "te_and_cl"),
        (b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", "bad_content_length"),
        (b"GET", b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n", "bad_content_length"),
        (b"GET", b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "unexpected_switch"),
        (b"GET", b"HTTP/1.1 100 Continue\r\n\r\n" * 11, "too_many_informational"),
        (b"GET", b"HTTP/1.1 200 OK\r\nX: " + b"y" * 61 * 1024 + b"\r\n\r\n", "headers_too_large"),
        (b"GET", b"HTTP/1.1 2000 OK\r\n\r\n", "bad_status_line"),
        (b"GET", b"ICY 200 OK\r\n\r\n", "bad_status_line"),
    ],
)
def test_bad_responses_are_502(method: bytes, raw: bytes, reason: str) -> None:
    with pytest.raises(Http1Error) as info:
        response_events(method, raw)
    assert (info.value.status, info.value.reason) == (502, reason)


def test_response_longer_than_its_length_poisons_the_connection() -> None:
    p = ResponseParser()
    p.expect(b"GET")
    p.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab")
    assert isinstance(p.next_event(), ResponseReceived)
    assert p.next_event() == DataReceived(b"a")
    assert isinstance(p.next_event(), MessageEnded)
    with pytest.raises(Http1Error) as info:
        p.next_event()
    assert info.value.reason == "unsolicited_response"


def test_downstream_framing() -> None:
    assert downstream_response_framing(CHUNKED, b"1.0") == UNTIL_CLOSE
    assert downstream_response_framing(UNTIL_CLOSE, b"1.1") == CHUNKED
    assert downstream_response_framing(Framing(BodyKind.LENGTH, 3), b"1.0") == Framing(BodyKind.LENGTH, 3)
