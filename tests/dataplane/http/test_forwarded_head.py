"""The one-pass forwarded request head is byte for byte the rewrite-then-serialise composition it replaces."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.http.forwarding import ensure_request_id, forwarded_request_head, set_forwarded, strip_hop_by_hop
from dataplane.http.model import BodyKind, Framing, Headers, RequestHead
from dataplane.http.request_id import RequestIds
from dataplane.http.tokens import TCHAR
from dataplane.http.wire import serialise_request_head

PREFIX = b"0123456789abcdef"
# Names the rewrite acts on, in mixed case, plus arbitrary tokens; values that name fields (for Connection).
special = st.sampled_from(
    [b"Connection", b"connection", b"Upgrade", b"X-Forwarded-For", b"x-forwarded-proto", b"X-Request-Id",
     b"Content-Length", b"Transfer-Encoding", b"Keep-Alive", b"TE", b"Host", b"X-Secret", b"x-secret"]
)  # fmt: skip
tokens = st.binary(min_size=1, max_size=8).map(lambda b: bytes(TCHAR[x % len(TCHAR)] for x in b))
names = st.one_of(special, tokens)
values = st.one_of(
    st.just(b""),
    st.sampled_from([b"close, X-Secret", b"upgrade", b"x-request-id, host", b"x-forwarded-for", b"content-length"]),
    st.binary(max_size=12).map(lambda b: bytes(x for x in b if x not in b"\r\n\x00").strip(b" \t")),
)
framings = st.one_of(
    st.just(Framing(BodyKind.NONE)),
    st.integers(0, 2**40).map(lambda n: Framing(BodyKind.LENGTH, n)),
    st.just(Framing(BodyKind.CHUNKED)),
    st.just(Framing(BodyKind.CHUNKED, codings=b"gzip")),
)


def composed(head: RequestHead, framing: Framing, upgrade: bytes | None, ids: RequestIds) -> bytes:
    headers = strip_hop_by_hop(head.headers, upgrade=upgrade)
    set_forwarded(headers, client=b"10.0.0.1", proto=b"http")
    ensure_request_id(headers, ids)
    return serialise_request_head(RequestHead(head.method, head.target, b"HTTP/1.1", headers), framing)


@settings(max_examples=2000, deadline=None)
@given(
    fields=st.lists(st.tuples(names, values), max_size=10),
    framing=framings,
    upgrade=st.one_of(st.none(), st.just(b"websocket")),
    version=st.sampled_from([b"1.1", b"1.0"]),
)
def test_one_pass_equals_the_composition(
    fields: list[tuple[bytes, bytes]], framing: Framing, upgrade: bytes | None, version: bytes
) -> None:
    head = RequestHead(b"GET", b"/p?q=1", version, Headers(fields))
    expected = composed(head, framing, upgrade, RequestIds(PREFIX))
    got = forwarded_request_head(
        head, framing, upgrade=upgrade, client=b"10.0.0.1", proto=b"http", ids=RequestIds(PREFIX)
    )
    assert got == expected


def test_refusals_are_the_serialisers() -> None:
    ids = RequestIds(PREFIX)
    for head in (
        RequestHead(b"GET", b"/a b", b"1.1", Headers()),
        RequestHead(b"G T", b"/", b"1.1", Headers()),
        RequestHead(b"GET", b"/", b"1.1", Headers([(b"X", b"a\r\nInjected: 1")])),
        RequestHead(b"GET", b"/", b"1.1", Headers([(b"Bad Name", b"v")])),
    ):
        try:
            composed(head, Framing(BodyKind.NONE), None, RequestIds(PREFIX))
        except ValueError as exc:
            expected = str(exc)
        else:
            raise AssertionError(f"the serialiser accepted {head}")
        try:
            forwarded_request_head(head, Framing(BodyKind.NONE), upgrade=None, client=b"c", proto=b"http", ids=ids)
        except ValueError as exc:
            assert str(exc) == expected
        else:
            raise AssertionError(f"forwarded_request_head accepted {head}")
