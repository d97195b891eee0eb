"""The reliability.md G2 attacks as raw client bytes (after the preface and SETTINGS), shared by the tests against
H2Connection and through the whole proxy. Each builder uses its own hpack encoder (a fresh connection's table)."""

from __future__ import annotations

import struct

from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
)

from tests.dataplane.http2.pair import request
from tests.dataplane.http2.raw import RawPeer

PING = PingFrame(0, opaque_data=b"12345678").serialize()
SETTINGS = SettingsFrame(0).serialize()


def rapid_reset(pairs: int) -> bytes:
    """``pairs`` HEADERS + RST_STREAM(CANCEL) pairs on streams 1, 3, 5, ... (CVE-2023-44487)."""
    peer = RawPeer()
    return b"".join(
        peer.headers(sid, request()) + RstStreamFrame(sid, error_code=8).serialize() for sid in range(1, 2 * pairs, 2)
    )


def settings_with_entries(count: int) -> bytes:
    """One SETTINGS frame carrying ``count`` entries that each make the peer work: the HPACK table size and the
    initial window (which touches every open stream) flip back and forth, and unknown identifiers."""

    def entry(i: int) -> bytes:
        identifier, value = [(0x1, 4096 * (i % 2)), (0x4, 65535 - i % 2), (0x100 + i, i)][i % 3]
        return struct.pack("!HL", identifier, value)

    payload = b"".join(entry(i) for i in range(count))
    return struct.pack("!L", len(payload))[1:] + b"\x04\x00\x00\x00\x00\x00" + payload


def empty_data(frames: int = 10) -> bytes:
    """A POST's HEADERS then empty DATA frames without END_STREAM (CVE-2019-9518)."""
    peer = RawPeer()
    return peer.headers(1, request(b"/", b"POST"), end_stream=False) + DataFrame(1, b"").serialize() * frames


def continuation_flood(frames: int = 100_000) -> bytes:
    """HEADERS without END_HEADERS followed by endless CONTINUATIONs (CVE-2023-45288)."""
    block = RawPeer().encoder.encode(request())
    return HeadersFrame(1, block).serialize() + ContinuationFrame(1, b"\x82").serialize() * frames


def hpack_bomb() -> bytes:
    """One 4 KB dynamic-table entry referenced 20 times: about 80 KB decoded from 4 KB on the wire."""
    value = b"a" * 4000
    # literal with incremental indexing (new name), then the new entry (index 62) referenced 20 times
    add = b"\x40\x01x" + b"\x7f" + _hpack_int(len(value) - 127) + value
    block = b"\x82\x86\x84\x41\x0cexample.test" + add + b"\xbe" * 20
    return HeadersFrame(1, block, flags=["END_HEADERS", "END_STREAM"]).serialize()


def invalid_requests(count: int) -> bytes:
    """``count`` requests h2 accepts and our validation refuses (a space in ``:path``), CVE-2019-9514."""
    peer = RawPeer()
    return b"".join(peer.headers(sid, request(b"/a b")) for sid in range(1, 2 * count, 2))


def priority_churn(streams: int = 10, frames: int = 100_000) -> bytes:
    """``streams`` requests, then ``frames`` PRIORITY frames spread over them (CVE-2019-9513)."""
    peer = RawPeer()
    opened = b"".join(peer.headers(sid, request()) for sid in range(1, 2 * streams, 2))
    churn = (PriorityFrame(1 + 2 * (i % streams), depends_on=0).serialize() for i in range(frames))
    return opened + b"".join(churn)


def _hpack_int(value: int) -> bytes:
    out = bytearray()
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
