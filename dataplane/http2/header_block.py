"""HeaderBlockEncoder: the HPACK encoder h2 is given for what we send. Pure.

hpack's own encoder searches and grows a dynamic table and Huffman-codes every string, about a tenth of the CPU
of a proxied request. A proxy forwards mostly fields that either match the static table (``:method GET``,
``:status 200``) or carry values that change per request (``x-request-id``, ``date``), so this encoder never uses the
dynamic table: a static match is one indexed byte, anything else a literal without indexing (never indexed for
credentials and for fields that arrived never indexed, RFC 7541 7.1.3), and strings
are sent raw (no Huffman). The output is a function of the header list alone, so each connection remembers the
encoding of the (small) fields it sent. Its dynamic table size is 0: the
first block of a connection, and the first after the peer changes SETTINGS_HEADER_TABLE_SIZE, starts with a
dynamic table size update to 0 (RFC 7541 4.2, 6.3), which any decoder accepts.

h2 uses it through the attributes it touches: ``encode(headers)`` and ``header_table_size`` (set on the peer's
SETTINGS).

``table_use`` is the other direction's shortcut: a received block decodes to the same fields for the same bytes and
the same dynamic-table content (or whatever the content, when it refers to no dynamic entry: nginx sends every
response field as a literal with incremental indexing), so ``conn.py``'s decoder may remember it and replay only its
additions to the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, NamedTuple

Header = tuple[bytes, bytes]

STATIC_TABLE: Final = (
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
)
"""RFC 7541 Appendix A, index 1 first."""
_EXACT: Final = {entry: bytes([0x80 | index]) for index, entry in reversed(list(enumerate(STATIC_TABLE, 1)))}
_NAME_INDEX: Final = {name: index for index, (name, _) in reversed(list(enumerate(STATIC_TABLE, 1)))}
_SENSITIVE: Final = frozenset((b"authorization", b"proxy-authorization", b"cookie", b"set-cookie"))
_SIZE_UPDATE_TO_ZERO: Final = b"\x20"
_MEMO_LIMIT: Final = 256
"""Encoded fields kept per connection (the fields are the peers' choice: the memo is emptied when full)."""
_MEMO_FIELD_SIZE: Final = 256
"""Only fields whose name and value take up to this many bytes are kept (at most 256 x ~600 bytes of objects)."""


def fields_size(headers: Iterable[Header]) -> int:
    """What ``headers`` weigh by HPACK's measure (RFC 7541 4.1: name, value and 32 bytes of overhead per field):
    the budget of the per-connection memos, which keep fields alive (and the objects around them) after a message."""
    return sum(len(header[0]) + len(header[1]) + 32 for header in headers)


def encode_integer(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 5.1: ``value`` in a ``prefix_bits``-bit prefix whose other bits are ``first``."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def _literal_prefix(name: bytes, never_indexed: bool) -> bytes:
    """The representation byte(s) and the name of a literal field (6.2.2 without indexing, 6.2.3 never indexed)."""
    flag = 0x10 if never_indexed else 0x00
    index = _NAME_INDEX.get(name)
    if index is not None:
        return encode_integer(index, 4, flag)
    return bytes([flag]) + encode_integer(len(name), 7, 0) + name


class HeaderBlockEncoder:
    """Stands in for ``hpack.Encoder`` in an h2 connection (see the module docstring)."""

    __slots__ = ("_announce", "_fields", "_table_size")

    def __init__(self) -> None:
        self._table_size = 4096
        self._announce = True
        self._fields: dict[Header, bytes] = {}

    @property
    def header_table_size(self) -> int:
        """The peer's SETTINGS_HEADER_TABLE_SIZE (we use none of it)."""
        return self._table_size

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self._table_size = value
        self._announce = True

    def encode(self, headers: Iterable[Header], huffman: bool = True) -> bytes:
        """One header block; ``huffman`` is accepted for hpack's signature and ignored (raw strings)."""
        parts = [_SIZE_UPDATE_TO_ZERO] if self._announce else []
        self._announce = False
        memo = self._fields
        for header in headers:
            if not getattr(header, "indexable", True):  # arrived never indexed: stays so, never memoised
                parts.append(_field(header[0], header[1], never=True))
                continue
            encoded = memo.get(header)
            if encoded is None:
                name, value = header[0], header[1]
                encoded = _field(name, value, never=name in _SENSITIVE)
                if len(name) + len(value) <= _MEMO_FIELD_SIZE:
                    if len(memo) >= _MEMO_LIMIT:
                        memo.clear()
                    memo[header] = encoded
            parts.append(encoded)
        return b"".join(parts)


def _field(name: bytes, value: bytes, *, never: bool) -> bytes:
    """One field: its static-table index when it is there whole, else a literal (see ``_literal_prefix``)."""
    if not never:
        exact = _EXACT.get((name, value))
        if exact is not None:
            return exact
    length = len(value)
    size = bytes((length,)) if length < 127 else encode_integer(length, 7, 0)
    return _literal_prefix(name, never) + size + value


_MAX_INTEGER_BYTES: Final = 4
"""Continuation bytes an integer may take here (28 bits); longer ones are left to hpack to refuse."""
_STATIC_ENTRIES: Final = len(STATIC_TABLE)


class TableUse(NamedTuple):
    """What decoding one header block does with the HPACK dynamic table, size updates aside."""

    reads: bool
    """It refers to dynamic-table entries (its fields depend on the table's content)."""
    added: tuple[int, ...]
    """The positions (in field order) of the fields it adds to the table (literals with incremental indexing)."""


def table_use(block: bytes) -> TableUse | None:
    """How decoding ``block`` uses the dynamic table (RFC 7541 6.1, 6.2); None when it carries a size update (6.3)
    or is truncated (hpack decodes, and refuses, it). A block that reads nothing decodes to the same fields whatever
    came before; one that does, to the same fields for the same table content; either way its only other effect on
    the table is to add the ``added`` fields, which ``conn.py``'s decoder replays when it remembers the block."""
    added: list[int] = []
    reads = False
    i, end, position = 0, len(block), 0
    while i < end:
        first = block[i]
        if first & 0x80:  # indexed field
            index, i = _integer(block, i, 7)
            if index <= 0:
                return None
            reads = reads or index > _STATIC_ENTRIES
        elif first & 0xE0 == 0x20:  # size update
            return None
        else:  # 01xxxxxx incremental indexing; 0000xxxx without indexing, 0001xxxx never indexed
            incremental = first & 0x40
            index, i = _integer(block, i, 6 if incremental else 4)
            if index < 0:
                return None
            reads = reads or index > _STATIC_ENTRIES
            if index == 0:
                i = _skip_string(block, i)
            i = _skip_string(block, i)
            if i < 0:
                return None
            if incremental:
                added.append(position)
        position += 1
    return TableUse(reads, tuple(added)) if i == end else None


def _integer(block: bytes, i: int, prefix_bits: int) -> tuple[int, int]:
    """RFC 7541 5.1 at ``block[i]``: (value, next offset), or (-1, -1) when truncated or too long."""
    if i < 0 or i >= len(block):
        return -1, -1
    limit = (1 << prefix_bits) - 1
    value = block[i] & limit
    i += 1
    if value < limit:
        return value, i
    for shift in range(0, 7 * _MAX_INTEGER_BYTES, 7):
        if i >= len(block):
            return -1, -1
        byte = block[i]
        i += 1
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
    return -1, -1


def _skip_string(block: bytes, i: int) -> int:
    """The offset after the string literal at ``block[i]`` (5.2), or -1 when it runs past the block."""
    length, i = _integer(block, i, 7)
    if i < 0 or i + length > len(block):
        return -1
    return i + length
