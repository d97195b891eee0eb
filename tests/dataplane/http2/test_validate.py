"""Request/response header validation: what h2 accepts and a proxy must refuse (reliability.md A7, G3 21)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.http2.validate import validate_request, validate_response

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
