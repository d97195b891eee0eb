"""HeaderBlockEncoder: every block decodes (hpack's decoder) to exactly the fields given, whatever came before."""

from __future__ import annotations

import hpack
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.http2.header_block import STATIC_TABLE, HeaderBlockEncoder, encode_integer

Header = tuple[bytes, bytes]

_NAMES = st.sampled_from([name for name, _ in STATIC_TABLE] + [b"x-request-id", b"grpc-status"]) | st.binary(
    min_size=1, max_size=300
)
_VALUES = st.sampled_from([value for _, value in STATIC_TABLE]) | st.binary(max_size=300)


@settings(max_examples=500, deadline=None)
@given(blocks=st.lists(st.lists(st.tuples(_NAMES, _VALUES), max_size=12), min_size=1, max_size=4))
def test_blocks_decode_to_what_was_encoded(blocks: list[list[Header]]) -> None:
    encoder, decoder = HeaderBlockEncoder(), hpack.Decoder()
    for headers in blocks:
        assert decoder.decode(encoder.encode(headers), raw=True) == headers
    assert decoder.header_table_size == 0  # the dynamic table is never used


def test_static_matches_are_one_byte_and_credentials_are_never_indexed() -> None:
    encoder = HeaderBlockEncoder()
    encoder.encode([])  # the first block carries the size update
    assert encoder.encode([(b":method", b"GET"), (b":status", b"200")]) == bytes([0x82, 0x88])
    block = encoder.encode([(b"authorization", b"secret"), (b"x-a", b"1")])
    decoded = hpack.Decoder().decode(b"\x20" + block, raw=True)
    assert [type(h) for h in decoded] == [hpack.NeverIndexedHeaderTuple, hpack.HeaderTuple]
    # a field that arrived never indexed is forwarded never indexed (RFC 7541 7.1.3)
    block = encoder.encode([hpack.NeverIndexedHeaderTuple(b"x-token", b"t")])
    assert [type(h) for h in hpack.Decoder().decode(b"\x20" + block, raw=True)] == [hpack.NeverIndexedHeaderTuple]


def test_a_new_peer_table_size_is_answered_with_a_size_update() -> None:
    encoder = HeaderBlockEncoder()
    assert encoder.encode([(b":path", b"/")]) == b"\x20\x84"
    assert encoder.encode([(b":path", b"/")]) == b"\x84"
    encoder.header_table_size = 0
    assert encoder.encode([(b":path", b"/")]) == b"\x20\x84"


def test_integers() -> None:
    assert encode_integer(10, 5, 0) == bytes([10])
    assert encode_integer(1337, 5, 0) == bytes([31, 154, 10])  # RFC 7541 C.1.2
    assert encode_integer(42, 8, 0) == bytes([42])
