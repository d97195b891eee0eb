"""classify(): the verdict on a client's first bytes, table-driven and property-tested."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dataplane.detect.sniff import (
    H2_PREFACE,
    HTTP1,
    MAX_REQUEST_LINE,
    NEED_MORE,
    Detected,
    NeedMore,
    Protocol,
    classify,
    is_h2_server_preface,
)
from tests.dataplane.detect.hellos import client_hello

REQUEST_LINES = [
    b"GET / HTTP/1.1\r\n",
    b"GET /index.html?q=1 HTTP/1.0\r\n",
    b"POST http://example.com/x HTTP/1.1\r\n",
    b"CONNECT example.com:443 HTTP/1.1\r\n",
    b"OPTIONS * HTTP/1.1\r\n",
    b"M-SEARCH * HTTP/1.1\r\n",
    b"PRI /not-the-preface HTTP/1.1\r\n",
]


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        (b"", NEED_MORE),
        (H2_PREFACE, Detected(Protocol.H2, "http/2")),
        (H2_PREFACE + b"\x00\x00\x12\x04", Detected(Protocol.H2, "http/2")),
        (H2_PREFACE[:14], NEED_MORE),
        (b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", Detected(Protocol.OPAQUE, "not_http")),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Detected(Protocol.HTTP1, "http/1")),
        (b"GET / HTTP/1.1\r\n", Detected(Protocol.HTTP1, "http/1")),
        (b"GET / HTTP/1.1\r", NEED_MORE),
        (b"GET / HTTP/1.", NEED_MORE),
        (b"GET /", NEED_MORE),
        (b"GET", NEED_MORE),
        (b"GET / HTTP/1.2\r\n", Detected(Protocol.OPAQUE, "not_http")),
        (b"GET / HTTP/2.0\r\n", Detected(Protocol.OPAQUE, "not_http")),
        (b"GET / HTTP/1.1\n", HTTP1),  # malformed HTTP: the parser's 400, not a relay
        (b"GET  / HTTP/1.1\r\n", HTTP1),  # malformed HTTP: the parser's 400, not a relay
        (b"GET /a b HTTP/1.1\r\n", HTTP1),  # malformed HTTP: the parser's 400, not a relay
        (b" GET / HTTP/1.1\r\n", HTTP1),  # malformed HTTP: the parser's 400, not a relay
        (b"\r\nGET / HTTP/1.1\r\n", Detected(Protocol.OPAQUE, "not_http")),
        (b"G(T / HTTP/1.1\r\n", HTTP1),  # malformed HTTP: the parser's 400, not a relay
        (b"GET /a\tHTTP/1.1\r\n", HTTP1),  # smuggling forms of a request line: the parser refuses them
        (b"GET /a\n HTTP/1.1 HTTP/1.1\r\n", HTTP1),
        (b"hello world\r\n", Detected(Protocol.OPAQUE, "not_http")),
        (b"SSH-2.0-OpenSSH_9.2\r\n", Detected(Protocol.OPAQUE, "not_http")),
        (b"\x00\x00\x00\x01", Detected(Protocol.OPAQUE, "not_http")),
        (b"*3\r\n$3\r\nSET\r\n", Detected(Protocol.OPAQUE, "not_http")),
        (b"\x16", NEED_MORE),
        (b"\x16\x03\x01\x02\x00", NEED_MORE),
        (b"\x16\x03\x01\x02\x00\x01", Detected(Protocol.TLS, "tls")),
        (b"\x16\x03\x01\x02\x00\x02", Detected(Protocol.OPAQUE, "not_http")),  # a ServerHello from a client
        (b"\x16\x02\x00", Detected(Protocol.OPAQUE, "not_http")),
        (b"\x16\x03\x09", Detected(Protocol.OPAQUE, "not_http")),
        (b"\x16\x03\x01\x00\x00\x01", Detected(Protocol.OPAQUE, "not_http")),
        (b"\x17\x03\x03\x00\x10", Detected(Protocol.OPAQUE, "not_http")),
    ],
)
def test_classify(prefix: bytes, expected: Detected | NeedMore) -> None:
    assert classify(prefix) == expected


def test_a_real_client_hello_is_tls_from_its_sixth_byte() -> None:
    hello = client_hello()
    assert [classify(hello[:n]) for n in range(6)] == [NEED_MORE] * 6
    assert classify(hello[:6]).protocol is Protocol.TLS  # type: ignore[union-attr]
    assert classify(hello) == Detected(Protocol.TLS, "tls")


def test_a_request_line_longer_than_the_limit_is_not_waited_for() -> None:
    long_target = b"GET /" + b"a" * MAX_REQUEST_LINE
    assert classify(long_target[: MAX_REQUEST_LINE - 1]) is NEED_MORE
    assert classify(long_target) == Detected(Protocol.OPAQUE, "line_too_long")
    fits = b"GET /" + b"a" * (MAX_REQUEST_LINE - 20) + b" HTTP/1.1\r\n"
    assert len(fits) <= MAX_REQUEST_LINE
    assert classify(fits) == Detected(Protocol.HTTP1, "http/1")


methods = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ-_!", min_size=1, max_size=12).map(str.encode)
targets = st.binary(min_size=1, max_size=200).map(lambda b: bytes(0x21 + x % 94 for x in b))
versions = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"])


@st.composite
def request_lines(draw: st.DrawFn) -> bytes:
    return draw(methods) + b" " + draw(targets) + b" " + draw(versions) + b"\r\n"


@given(st.binary(max_size=MAX_REQUEST_LINE + 100))
@example(H2_PREFACE[:-1])
@example(b"\x16\x03\x03")
def test_any_bytes_are_classified_or_need_more(prefix: bytes) -> None:
    verdict = classify(prefix)
    assert isinstance(verdict, Detected | NeedMore)
    if isinstance(verdict, NeedMore):
        assert len(prefix) < MAX_REQUEST_LINE  # never waits past the limit
    else:
        # Final means final: more bytes never change the verdict.
        assert classify(prefix + b"\r\n\x00more") == verdict


@given(request_lines(), st.binary(max_size=64))
def test_a_request_line_is_http1_and_every_proper_prefix_needs_more(line: bytes, rest: bytes) -> None:
    assert classify(line + rest) == Detected(Protocol.HTTP1, "http/1")
    for n in range(1, len(line)):
        assert classify(line[:n]) is NEED_MORE


@given(st.binary(max_size=64))
def test_the_preface_is_h2_whatever_follows_and_its_prefixes_need_more(rest: bytes) -> None:
    assert classify(H2_PREFACE + rest) == Detected(Protocol.H2, "http/2")
    for n in range(1, len(H2_PREFACE)):
        assert classify(H2_PREFACE[:n]) is NEED_MORE


@given(st.binary(min_size=1, max_size=64))
def test_a_first_byte_no_protocol_starts_with_is_opaque_at_once(rest: bytes) -> None:
    first = rest[:1]
    if first[0] == 0x16 or first[0] in b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz":
        return
    assert classify(rest) == Detected(Protocol.OPAQUE, "not_http")


def test_an_h2_server_preface_is_recognised() -> None:
    settings = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64"
    assert is_h2_server_preface(settings)
    assert is_h2_server_preface(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # empty SETTINGS
    assert not is_h2_server_preface(b"220 mail.example ESMTP ready\r\n")
    assert not is_h2_server_preface(b"\x00\x00\x00\x04\x00\x00\x00\x00\x01")  # stream 1: not a preface
    assert not is_h2_server_preface(settings[:5])


def test_tls_only_decides_on_the_first_byte() -> None:
    # An opaque port looked at for mesh clients: "PING" (no line end) would wait as a possible request line.
    assert classify(b"PING", tls_only=True) == Detected(Protocol.OPAQUE, "not_http")
    assert classify(b"PING") == NeedMore()
    assert classify(b"\x16\x03\x01", tls_only=True) == NeedMore()
