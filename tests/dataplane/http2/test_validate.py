"""Request/response header validation: what h2 accepts and a proxy must refuse (reliability.md A7, G3 21)."""

from __future__ import annotations

import h2.exceptions
import h2.utilities
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.http2.validate import BlockKind, malformed_block, validate_request, validate_response

Header = tuple[bytes, bytes]


def req(
    method: bytes | None = b"GET",
    scheme: bytes | None = b"https",
    path: bytes | None = b"/",
    authority: bytes | None = b"example.test",
    *extra: Header,
) -> list[Header]:
    pseudo = [(b":method", method), (b":scheme", scheme), (b":path", path), (b":authority", authority)]
    return [(n, v) for n, v in pseudo if v is not None] + list(extra)


@pytest.mark.parametrize(
    "headers",
    [
        req(),
        req(b"POST", b"http", b"/a/b?c=d&e=%20", b"svc.ns.svc.cluster.local:8080"),
        req(b"OPTIONS", path=b"*"),
        req(authority=b"[::1]:443"),
        req(authority=b"127.0.0.1"),
        req(b"CONNECT", None, None, b"example.test:443"),
        [*req(authority=None), (b"host", b"example.test")],
        req(b"GET", b"https", b"/caf\xc3\xa9"),
        req(b"GET", b"https", b"/", b"a.test", (b"te", b"trailers"), (b"content-type", b"application/grpc")),
    ],
)
def test_valid_requests_pass(headers: list[Header]) -> None:
    assert validate_request(headers) is None


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (req(b"GET /x HTTP/1.1\r\nHost: evil\r\n\r\nGET"), "bad_method"),
        (req(b"G ET"), "bad_method"),
        (req(b"get"), "bad_method"),
        (req(b""), "bad_method"),
        (req(None), "bad_method"),
        (req(scheme=b"ftp"), "bad_scheme"),
        (req(scheme=b"HTTP"), "bad_scheme"),
        (req(scheme=None), "bad_scheme"),
        (req(path=b"/a b"), "bad_path"),
        (req(path=b"/a HTTP/1.1"), "bad_path"),
        (req(path=b"a"), "bad_path"),
        (req(path=b"http://evil.test/"), "bad_path"),
        (req(path=b"/a#frag"), "bad_path"),
        (req(path=b"/a\tb"), "bad_path"),
        (req(path=b"/a\x7f"), "bad_path"),
        (req(path=b"*"), "bad_path"),
        (req(path=None), "bad_path"),
        (req(authority=b"good@evil.test"), "bad_authority"),
        (req(authority=b"a b.test"), "bad_authority"),
        (req(authority=b""), "bad_authority"),
        (req(authority=b"a.test:99999"), "bad_authority"),
        (req(authority=b"a.test:8o"), "bad_authority"),
        (req(authority=b"[::1"), "bad_authority"),
        (req(authority=b"[::1]x"), "bad_authority"),
        (req(authority=b"a.test/x"), "bad_authority"),
        (req(authority=None), "missing_authority"),
        (req(b"CONNECT", b"https", None, b"a.test:443"), "bad_connect"),
        (req(b"CONNECT", None, b"/", b"a.test:443"), "bad_connect"),
        (req(b"CONNECT", None, None, b"a.test"), "bad_connect"),
        (req(b"CONNECT", None, None, None), "bad_connect"),
        ([*req(), (b":protocol", b"websocket")], "unsupported_pseudo_header"),
        ([*req(), (b"x_forwarded_for", b"1.2.3.4")], "underscore_header"),
        ([*req(), (b"X-Upper", b"1")], "bad_header_name"),
        ([*req(), (b"bad name", b"1")], "bad_header_name"),
        ([*req(), (b"x-a", b"1\r\nx-b: 2")], "bad_header_value"),
        ([*req(authority=None), (b"host", b"good@evil.test")], "bad_authority"),
    ],
)
def test_invalid_requests_name_the_reason(headers: list[Header], reason: str) -> None:
    invalid = validate_request(headers)
    assert invalid is not None
    assert invalid.reason == reason
    assert invalid.message


def test_underscores_can_be_allowed() -> None:
    assert validate_request([*req(), (b"x_a", b"1")], allow_underscores=True) is None


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        ([(b":status", b"200")], True),
        ([(b":status", b"103"), (b"link", b"</a>")], True),
        ([(b":status", b"599")], True),
        ([(b":status", b"20")], False),
        ([(b":status", b"2000")], False),
        ([(b":status", b"600")], False),
        ([(b":status", b"099")], False),
        ([(b":status", b"2 0")], False),
        ([], False),
        ([(b":status", b"200"), (b":path", b"/")], False),
        ([(b":status", b"200"), (b"x-a", b"a\nb")], False),
    ],
)
def test_responses(headers: list[Header], ok: bool) -> None:
    assert (validate_response(headers) is None) is ok


def _request_line(headers: list[Header]) -> bytes:
    """How an H2->H1 translation writes the request line and Host (the thing injection would break)."""
    values = dict(headers)
    host = values.get(b":authority", values.get(b"host", b""))
    target = values.get(b":path", host)
    return values[b":method"] + b" " + target + b" HTTP/1.1\r\nhost: " + host + b"\r\n"


_ANY = st.binary(max_size=24) | st.sampled_from([b"GET", b"/", b"*", b"a.test:80", b"CONNECT", b"http", b"[::1]"])


@settings(max_examples=2000, deadline=None)
@given(method=_ANY, scheme=_ANY, path=_ANY, authority=_ANY)
def test_nothing_that_passes_can_inject_into_a_request_line(
    method: bytes, scheme: bytes, path: bytes, authority: bytes
) -> None:
    headers = req(method, scheme, path, authority)
    if validate_request(headers) is not None:
        return
    line = _request_line(headers)
    first, _, rest = line.partition(b"\r\n")
    assert first.count(b" ") == 2
    assert b"\r" not in first and b"\n" not in first
    assert rest.count(b"\r\n") == 1 and rest.endswith(b"\r\n")
    assert b"\n" not in rest[:-2] and b"\r" not in rest[:-2] and b" " not in rest[len(b"host: ") : -2]


# === malformed_block: the connection-level rules h2's inbound validation applied, now ours ===


@pytest.mark.parametrize(
    ("headers", "kind", "problem"),
    [
        (req(), BlockKind.REQUEST, None),
        ([*req(authority=None), (b"host", b"a.test")], BlockKind.REQUEST, None),
        (req(b"CONNECT", None, None, b"a.test:443"), BlockKind.REQUEST, None),
        ([(b":status", b"200"), (b"x-a", b"")], BlockKind.RESPONSE, None),
        ([(b"grpc-status", b"0")], BlockKind.TRAILERS, None),
        ([*req(), (b"", b"1")], BlockKind.REQUEST, "empty header name"),
        ([*req(), (b"X-Upper", b"1")], BlockKind.REQUEST, "illegal character"),
        ([*req(), (b"x a", b"1")], BlockKind.REQUEST, "illegal character"),
        ([*req(), (b"x:a", b"1")], BlockKind.REQUEST, "illegal character"),
        ([*req(), (b"x-\xff", b"1")], BlockKind.REQUEST, "illegal character"),
        ([*req(), (b"x-a", b"1\r\nx: y")], BlockKind.REQUEST, "CR, LF or NUL in"),
        ([*req(), (b"x-a", b"a\x00")], BlockKind.REQUEST, "CR, LF or NUL in"),
        ([*req(), (b"x-a", b" 1")], BlockKind.REQUEST, "whitespace around"),
        ([*req(), (b"x-a", b"1\t")], BlockKind.REQUEST, "whitespace around"),
        ([*req(), (b"connection", b"close")], BlockKind.REQUEST, "connection-specific"),
        ([*req(), (b"transfer-encoding", b"chunked")], BlockKind.REQUEST, "connection-specific"),
        ([*req(), (b"te", b"gzip")], BlockKind.REQUEST, "te "),
        ([*req(), (b"te", b"Trailers")], BlockKind.REQUEST, None),
        ([*req(path=None), (b"x", b"1"), (b":path", b"/")], BlockKind.REQUEST, "after a regular"),
        ([(b":method", b"GET"), *req()[1:], (b"x", b"1")], BlockKind.REQUEST, None),
        ([(b":method", b"GET"), (b":method", b"GET"), *req()[1:]], BlockKind.REQUEST, "duplicate"),
        ([(b":foo", b"1"), *req()], BlockKind.REQUEST, "unknown pseudo-header"),
        (req(method=None), BlockKind.REQUEST, "without :method"),
        (req(path=None), BlockKind.REQUEST, "without :scheme or :path"),
        (req(path=b""), BlockKind.REQUEST, "empty :path"),
        (req(b"CONNECT", b"https", None, b"a.test:443"), BlockKind.REQUEST, "plain CONNECT"),
        ([*req(), (b"x", b"1"), (b":protocol", b"ws")], BlockKind.REQUEST, "after a regular"),
        ([*req(authority=b"a.test")[:4], (b":protocol", b"ws")], BlockKind.REQUEST, ":protocol without CONNECT"),
        ([*req(authority=None)], BlockKind.REQUEST, "without :authority or host"),
        ([*req(authority=b"a.test"), (b"host", b"b.test")], BlockKind.REQUEST, "differ"),
        ([*req(authority=None), (b"host", b"a"), (b"host", b"a")], BlockKind.REQUEST, "more than one host"),
        ([*req(), (b":status", b"200")], BlockKind.REQUEST, "with :status"),
        ([(b":status", b"200"), *req()], BlockKind.REQUEST, "with :status"),
        ([(b"x-a", b"1")], BlockKind.RESPONSE, "without :status"),
        ([(b":status", b"200"), (b":path", b"/")], BlockKind.RESPONSE, "request pseudo-headers"),
        ([(b":status", b"200")], BlockKind.TRAILERS, "in trailers"),
    ],
)
def test_malformed_blocks(headers: list[Header], kind: BlockKind, problem: str | None) -> None:
    found = malformed_block(headers, kind)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


_FLAGS = {
    BlockKind.REQUEST: h2.utilities.HeaderValidationFlags(False, False, False, False),
    BlockKind.RESPONSE: h2.utilities.HeaderValidationFlags(True, False, True, False),
    BlockKind.TRAILERS: h2.utilities.HeaderValidationFlags(False, True, False, False),
}
_NAMES = st.sampled_from(
    [
        b":method",
        b":scheme",
        b":path",
        b":authority",
        b":status",
        b":protocol",
        b":x",
        b"host",
        b"te",
        b"connection",
        b"keep-alive",
        b"x-a",
        b"X-A",
        b"x a",
        b"x:a",
        b"",
        b"cookie",
    ]
) | st.binary(max_size=6)
_VALUES = st.sampled_from([b"GET", b"CONNECT", b"/", b"", b"a.test", b"b.test", b"trailers", b"200", b" x", b"x\t"]) | (
    st.binary(max_size=6)
)


@settings(max_examples=3000, deadline=None)
@given(headers=st.lists(st.tuples(_NAMES, _VALUES), max_size=8), kind=st.sampled_from(list(BlockKind)))
def test_malformed_block_refuses_exactly_what_h2_refused(headers: list[Header], kind: BlockKind) -> None:
    """No rule lost by turning h2's inbound validation off: the same blocks pass and fail."""
    try:
        list(h2.utilities.validate_headers(headers, _FLAGS[kind]))
        h2_refuses = False
    except h2.exceptions.ProtocolError:
        h2_refuses = True
    assert (malformed_block(headers, kind) is not None) is h2_refuses


def test_the_common_names_shortcut_only_skips_names_that_pass() -> None:
    from dataplane.http2.validate import _GOOD_NAMES, _malformed_field

    assert all(_malformed_field(name, b"any value") is None for name in _GOOD_NAMES)
