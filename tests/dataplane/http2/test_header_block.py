"""HeaderBlockEncoder: every block decodes (hpack's decoder) to exactly the fields given, whatever came before."""

from __future__ import annotations

import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.http2.conn import RememberingDecoder
from dataplane.http2.header_block import (
    STATIC_TABLE,
    HeaderBlockEncoder,
    TableUse,
    encode_integer,
    fields_size,
    table_use,
)

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


_FIELDS = st.lists(st.tuples(_NAMES, st.sampled_from([b"", b"200", b"nginx", b"text/plain"]) | _VALUES), max_size=8)


@settings(max_examples=300, deadline=None)
@given(blocks=st.lists(st.tuples(st.booleans(), _FIELDS), min_size=1, max_size=8), limit=st.sampled_from([64, 65536]))
def test_the_remembering_decoder_decodes_and_indexes_like_hpack(
    blocks: list[tuple[bool, list[Header]]], limit: int
) -> None:
    """Blocks repeated byte for byte (as nginx repeats its response fields) are remembered; the fields and the
    dynamic table after each block are hpack's own, and an oversized block is refused the same way."""
    ours, theirs, steady = RememberingDecoder(), hpack.Decoder(), hpack.Encoder()
    ours.max_header_list_size = theirs.max_header_list_size = limit
    for fresh, headers in blocks * 2:
        # a fresh encoder's block uses no dynamic entry (incremental literals only), a steady one's refers to them
        block = (hpack.Encoder() if fresh else steady).encode(headers)
        try:
            expected = list(theirs.decode(block, raw=True))
        except hpack.OversizedHeaderListError:
            with pytest.raises(hpack.OversizedHeaderListError):
                ours.decode(block, raw=True)
            return
        assert list(ours.decode(block, raw=True)) == expected
        assert ours.header_table.dynamic_entries == theirs.header_table.dynamic_entries


def test_table_use() -> None:
    nginx_response = bytes.fromhex(
        "887689aa6355e580ae212e1f6196df3dbf4a09c5349fba82009c500ddc0bf702053168df5f87497ca58ae819aa5c023635"
    )  # :status 200, then server, date, content-type, content-length as literals with incremental indexing
    assert table_use(nginx_response) == TableUse(reads=False, added=(1, 2, 3, 4))
    assert table_use(b"\x82\x84") == TableUse(reads=False, added=())
    assert table_use(b"\xbe\x82") == TableUse(reads=True, added=())  # dynamic index 62
    assert table_use(b"\x7f\x00\x01x") == TableUse(reads=True, added=(0,))  # incremental, name from entry 63
    assert table_use(b"\x20\x88") is None  # size update
    assert table_use(b"\x80") is None  # index 0
    assert table_use(b"\x04\x05/abc") is None  # truncated value
    assert table_use(b"\x00\x01x\x01y") == TableUse(reads=False, added=())


def test_a_remembered_block_that_reads_the_table_follows_its_content() -> None:
    """The same bytes referring to entry 62 decode to whatever entry 62 is now, remembered or not."""
    decoder = RememberingDecoder()
    add_a, add_b = b"\x40\x01a\x011", b"\x40\x01b\x012"  # literals with incremental indexing
    assert list(decoder.decode(add_a, raw=True)) == [(b"a", b"1")]
    for _ in range(3):
        assert list(decoder.decode(b"\xbe", raw=True)) == [(b"a", b"1")]
    assert list(decoder.decode(add_b, raw=True)) == [(b"b", b"2")]
    for _ in range(3):
        assert list(decoder.decode(b"\xbe\xbf", raw=True)) == [(b"b", b"2"), (b"a", b"1")]
        assert list(decoder.decode(b"\xbe", raw=True)) == [(b"b", b"2")]
    assert list(decoder.decode(add_a, raw=True)) == [(b"a", b"1")]  # remembered: replayed, a is entry 62 again
    assert list(decoder.decode(b"\xbe\xbf\xc0", raw=True)) == [(b"a", b"1"), (b"b", b"2"), (b"a", b"1")]
    assert [tuple(e) for e in decoder.header_table.dynamic_entries] == [(b"a", b"1"), (b"b", b"2"), (b"a", b"1")]


def test_the_memos_are_bounded_by_what_they_keep_alive() -> None:
    """A 1 KiB block of one-byte references decodes to a thousand fields: the decoder's memo is bounded by the
    decoded fields (RFC 7541 sizes), not by the blocks' bytes; the encoder's by entries and field size."""
    decoder = RememberingDecoder()
    decoder.decode(b"\x40\x01a\x011", raw=True)  # entry 62: ("a", "1")
    for n in range(200):
        block = b"\xbe" * 900 + b"\x00\x01x" + encode_integer(len(str(n)), 7, 0) + str(n).encode()
        assert len(list(decoder.decode(block, raw=True))) == 901
    kept = sum(fields_size(headers) for headers, _, _ in decoder._remembered.values())
    assert kept <= 32768
    encoder = HeaderBlockEncoder()
    for n in range(5000):
        encoder.encode([(b"x-%d" % n, b"v" * (n % 400))])
    assert len(encoder._fields) <= 256
    assert all(len(name) + len(value) <= 256 for name, value in encoder._fields)
