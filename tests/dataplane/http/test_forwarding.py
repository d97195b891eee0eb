"""Hop-by-hop removal, X-Forwarded-*, X-Request-Id, and the canonical writer's refusals."""

from __future__ import annotations

import pytest

from dataplane.http.forwarding import ensure_request_id, set_forwarded, strip_hop_by_hop
from dataplane.http.model import CHUNKED, NO_BODY, BodyKind, Framing, Headers, RequestHead, ResponseHead
from dataplane.http.request_id import RequestIds
from dataplane.http.wire import encode_chunk, encode_last_chunk, serialise_request_head, serialise_response_head


def test_hop_by_hop_and_nominated_fields_are_removed() -> None:
    headers = Headers(
        [
            (b"Host", b"h"),
            (b"Connection", b"close, X-Secret, Host"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Proxy-Connection", b"keep-alive"),
            (b"TE", b"gzip"),
            (b"Trailer", b"X-T"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Upgrade", b"h2c"),
            (b"x-secret", b"1"),
            (b"Accept", b"*/*"),
        ]
    )
    assert list(strip_hop_by_hop(headers)) == [(b"Host", b"h"), (b"Accept", b"*/*")]


def test_upgrade_is_kept_when_switching() -> None:
    headers = Headers([(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket"), (b"Sec-WebSocket-Key", b"k")])
    out = strip_hop_by_hop(headers, upgrade=b"websocket")
    assert out.get(b"upgrade") == b"websocket"
    assert out.get_all(b"connection") == [b"upgrade"]
    assert out.get(b"sec-websocket-key") == b"k"


def test_forwarded_headers_replace_client_values() -> None:
    headers = Headers([(b"X-Forwarded-For", b"6.6.6.6"), (b"x-forwarded-for", b"7.7.7.7"), (b"A", b"b")])
    set_forwarded(headers, client=b"10.1.2.3", proto=b"https")
    assert headers.get_all(b"x-forwarded-for") == [b"10.1.2.3"]
    assert headers.get(b"X-Forwarded-Proto") == b"https"


def test_request_ids() -> None:
    ids = RequestIds(b"0123456789abcdef")
    assert ids.next() == b"01234567-89ab-cdef-0000-000000000001"
    headers = Headers()
    assert ensure_request_id(headers, ids) == b"01234567-89ab-cdef-0000-000000000002"
    assert ensure_request_id(headers, ids) == b"01234567-89ab-cdef-0000-000000000002"
    assert RequestIds().next() != RequestIds().next()
    with pytest.raises(ValueError, match="prefix"):
        RequestIds(b"xyz")


def test_canonical_form() -> None:
    head = RequestHead(b"POST", b"/u", b"1.0", Headers([(b"host", b"h"), (b"Content-Length", b"9")]))
    assert serialise_request_head(head, CHUNKED) == b"POST /u HTTP/1.1\r\nhost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert serialise_request_head(head, Framing(BodyKind.LENGTH, 4)) == (
        b"POST /u HTTP/1.1\r\nhost: h\r\nContent-Length: 4\r\n\r\n"
    )
    response = ResponseHead(304, b"Not Modified", b"1.1", Headers([(b"Content-Length", b"9")]))
    assert serialise_response_head(response, NO_BODY) == b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"


@pytest.mark.parametrize(
    "head",
    [
        RequestHead(b"GET", b"/a b", b"1.1", Headers()),
        RequestHead(b"GET X", b"/", b"1.1", Headers()),
        RequestHead(b"GET", b"/", b"1.1", Headers([(b"X", b"a\r\nInjected: 1")])),
        RequestHead(b"GET", b"/", b"1.1", Headers([(b"X: y", b"a")])),
        RequestHead(b"GET", b"/", b"1.1", Headers([(b"X", b"a\x00")])),
    ],
)
def test_writer_refuses_injection(head: RequestHead) -> None:
    with pytest.raises(ValueError):
        serialise_request_head(head, NO_BODY)


def test_chunks() -> None:
    assert encode_chunk(b"") == b""
    assert encode_chunk(b"abc") == b"3\r\nabc\r\n"
    assert encode_last_chunk() == b"0\r\n\r\n"
    assert encode_last_chunk(Headers([(b"grpc-status", b"0")])) == b"0\r\ngrpc-status: 0\r\n\r\n"
    with pytest.raises(ValueError):
        encode_last_chunk(Headers([(b"x", b"1\r\n")]))
