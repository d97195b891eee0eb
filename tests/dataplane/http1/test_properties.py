"""Hypothesis properties of the parser and the canonical serialiser (reliability.md table (c): 2,000 examples)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.http.model import BodyKind, Framing, Headers, RequestHead, ResponseHead
from dataplane.http.tokens import TCHAR
from dataplane.http.wire import serialise_request_head, serialise_response_head
from dataplane.http1.errors import Http1Error
from dataplane.http1.events import RequestReceived, ResponseReceived
from dataplane.http1.parser import RequestParser, ResponseParser

EXAMPLES = settings(max_examples=2000, deadline=None)

tokens = st.binary(min_size=1, max_size=12).map(lambda b: bytes(TCHAR[x % len(TCHAR)] for x in b))
# A field value as the parser yields it: no CR/LF/NUL, no leading or trailing whitespace.
value_bytes = st.binary(max_size=20).map(lambda b: bytes(x for x in b if x not in b"\r\n\x00").strip(b" \t"))
framing_names = {b"content-length", b"transfer-encoding", b"host"}
plain_fields = st.lists(
    st.tuples(tokens, value_bytes).filter(
        lambda f: f[0].lower() not in framing_names and f[0].lower().replace(b"_", b"-") not in framing_names
    ),
    max_size=8,
)
targets = st.binary(max_size=30).map(lambda b: b"/" + bytes(x for x in b if 0x21 <= x <= 0x7E or x >= 0x80))
framings = st.one_of(
    st.just(Framing(BodyKind.NONE)),
    st.integers(0, 2**40).map(lambda n: Framing(BodyKind.LENGTH, n)),
    st.just(Framing(BodyKind.CHUNKED)),
)


@st.composite
def request_heads(draw: st.DrawFn) -> tuple[RequestHead, Framing]:
    framing = draw(framings)
    fields = [(b"Host", b"example.test"), *draw(plain_fields)]
    if framing.kind is BodyKind.LENGTH:
        fields.insert(draw(st.integers(0, len(fields))), (b"Content-Length", b"%d" % framing.length))
    elif framing.kind is BodyKind.CHUNKED:
        fields.insert(draw(st.integers(0, len(fields))), (b"Transfer-Encoding", b"chunked"))
    method = draw(tokens.filter(lambda m: m != b"CONNECT"))
    return RequestHead(method, draw(targets), b"1.1", Headers(fields)), framing


@given(request_heads())
@EXAMPLES
def test_request_round_trip(case: tuple[RequestHead, Framing]) -> None:
    head, framing = case
    wire = serialise_request_head(head, framing)
    p = RequestParser()
    p.receive_data(wire)
    event = p.next_event()
    assert isinstance(event, RequestReceived)
    assert event.head == head
    assert event.framing == framing


@given(st.integers(200, 599).filter(lambda s: s not in (204, 304)), plain_fields, framings)
@EXAMPLES
def test_response_round_trip(status: int, fields: list[tuple[bytes, bytes]], framing: Framing) -> None:
    if framing.kind is BodyKind.NONE:
        framing = Framing(BodyKind.LENGTH, 0)
    head = ResponseHead(status, b"Reason", b"1.1", Headers(fields))
    p = ResponseParser()
    p.expect(b"GET")
    p.receive_data(serialise_response_head(head, framing))
    event = p.next_event()
    assert isinstance(event, ResponseReceived)
    assert event.framing == framing
    assert [f for f in event.head.headers if f[0].lower() not in framing_names] == fields


@given(st.binary(max_size=300), st.integers(1, 50))
@EXAMPLES
def test_arbitrary_bytes_raise_only_http1error(data: bytes, step: int) -> None:
    for parser in (RequestParser(), ResponseParser()):
        if isinstance(parser, ResponseParser):
            parser.expect(b"GET")
        try:
            for i in range(0, len(data), step):
                parser.receive_data(data[i : i + step])
                for _ in range(len(data) + 5):
                    event = parser.next_event()
                    if not isinstance(event, (RequestReceived, ResponseReceived)) and type(event).__name__ != (
                        "DataReceived"
                    ):
                        break
            parser.receive_data(b"")
            for _ in range(len(data) + 5):
                parser.next_event()
        except Http1Error:
            pass


@given(st.lists(st.tuples(st.binary(max_size=10), st.binary(max_size=10)), max_size=6))
@EXAMPLES
def test_serialised_fields_never_carry_cr_or_lf(fields: list[tuple[bytes, bytes]]) -> None:
    head = RequestHead(b"GET", b"/", b"1.1", Headers(fields))
    try:
        wire = serialise_request_head(head, Framing(BodyKind.NONE))
    except ValueError:
        return
    lines = wire.split(b"\r\n")
    assert lines[-2:] == [b"", b""]
    for line in lines[:-2]:
        assert b"\r" not in line and b"\n" not in line
    assert len(lines) - 3 == len(fields)
