"""Walks the frame headers of the inbound byte stream before h2 parses it. Pure.

Two jobs h2 cannot do for us (reliability.md A7):
- the frame-level flood detectors (empty frames, CONTINUATION, PRIORITY, PING/SETTINGS counts) run on 9-byte
  headers, so an attacking chunk is refused before h2 spends CPU on it;
- GOAWAY frames are cut out of the stream and reported here: h2 4.4.1 moves its whole connection to CLOSED on a
  received GOAWAY and then refuses every later frame, which would kill the streams the GOAWAY lets finish.

Per chunk the common case (whole frames, no GOAWAY) returns the input object itself: no copy.
"""

from __future__ import annotations

from typing import Final

import msgspec

from dataplane.http2.flood import Continuation, EmptyFrames, FloodKind, FloodLimits, PriorityBudget

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEADER: Final = 9

DATA: Final = 0x0
HEADERS: Final = 0x1
PRIORITY: Final = 0x2
RST_STREAM: Final = 0x3
SETTINGS: Final = 0x4
PUSH_PROMISE: Final = 0x5
PING: Final = 0x6
GOAWAY: Final = 0x7
CONTINUATION: Final = 0x9

END_STREAM: Final = 0x1
ACK: Final = 0x1
END_HEADERS: Final = 0x4
PADDED: Final = 0x8


class GoAway(msgspec.Struct, frozen=True, kw_only=True):
    last_stream_id: int
    error_code: int


def encode_goaway(last_stream_id: int, error_code: int) -> bytes:
    """A GOAWAY frame, written by us instead of h2 for the graceful case (h2 would refuse every later frame)."""
    return b"\x00\x00\x08\x07\x00\x00\x00\x00\x00" + last_stream_id.to_bytes(4, "big") + error_code.to_bytes(4, "big")


class FrameScanner:
    """Feed every received chunk through ``feed``; hand what it returns to h2.

    After each ``feed``: ``tripped`` is the flood kind (stop; do not hand the bytes to h2), ``control_frames`` the
    number of PING/SETTINGS frames that h2 will ACK, and ``goaways`` the GOAWAY frames cut out (the caller clears
    it).
    """

    __slots__ = (
        "_continuation",
        "_cutting",
        "_empty",
        "_goaway_payload",
        "_held",
        "_in_block",
        "_pad_check",
        "_preface_left",
        "_priority",
        "_remaining",
        "control_frames",
        "goaways",
        "tripped",
    )

    def __init__(self, limits: FloodLimits, *, expect_preface: bool) -> None:
        self._preface_left = len(PREFACE) if expect_preface else 0
        self._empty = EmptyFrames(limits)
        self._continuation = Continuation(limits)
        self._priority = PriorityBudget(limits)
        self._held = b""  # a frame header split across chunks: held back until whole (it may be a GOAWAY)
        self._remaining = 0  # payload bytes of the current frame still to come
        self._cutting = False  # the current frame is a GOAWAY being cut out
        self._goaway_payload = bytearray()
        self._pad_check = False  # a PADDED DATA frame whose pad-length byte has not arrived yet
        self._in_block = False  # inside a header block (after HEADERS without END_HEADERS)
        self.control_frames = 0
        self.goaways: list[GoAway] = []
        self.tripped: FloodKind | None = None

    def feed(self, data: bytes | bytearray) -> bytes | bytearray:
        self.control_frames = 0
        if self._held:
            data = self._held + data
            self._held = b""
        n = len(data)
        pos = 0
        if self._preface_left:
            pos = min(self._preface_left, n)
            self._preface_left -= pos
        cuts: list[tuple[int, int]] = []  # GOAWAY byte ranges that h2 must not see
        while pos < n:
            if self._remaining:
                pos = self._payload(data, pos, n, cuts)
                if self.tripped is not None:
                    return data
                continue
            if n - pos < _HEADER:
                self._held = bytes(data[pos:])
                n = pos
                break
            length = int.from_bytes(data[pos : pos + 3], "big")
            start = pos
            pos += _HEADER
            self._remaining = length
            if self._header(data, pos, data[start + 3], data[start + 4], length):
                return data
            if self._cutting:
                cuts.append((start, pos))
                if not length:
                    self._finish_goaway()
        if not cuts and n == len(data):
            return data
        out = bytearray()
        prev = 0
        for a, b in cuts:
            out += data[prev:a]
            prev = b
        out += data[prev:n]
        return out

    def _payload(self, data: bytes | bytearray, pos: int, n: int, cuts: list[tuple[int, int]]) -> int:
        """Skip (or cut) the current frame's payload bytes in this chunk; returns the new position."""
        take = min(self._remaining, n - pos)
        if self._cutting:
            need = 8 - len(self._goaway_payload)
            if need > 0:
                self._goaway_payload += data[pos : pos + min(need, take)]
            cuts.append((pos, pos + take))
        elif self._pad_check:
            self._pad_check = False
            self._frame_empty(empty=self._remaining == data[pos] + 1, end_stream=False)
        self._remaining -= take
        if not self._remaining and self._cutting:
            self._finish_goaway()
        return pos + take

    def _header(self, data: bytes | bytearray, pos: int, kind: int, flags: int, length: int) -> bool:
        """Account one frame header (its payload starts at ``pos``); True when a flood tripped."""
        if self._in_block:
            return self._in_header_block(kind, flags, length)
        if kind == DATA:
            if flags & PADDED and length:
                if pos < len(data):
                    return self._frame_empty(empty=length == data[pos] + 1, end_stream=bool(flags & END_STREAM))
                self._pad_check = not flags & END_STREAM
                return False
            return self._frame_empty(empty=not length, end_stream=bool(flags & END_STREAM))
        if kind == HEADERS:
            self._priority.headers()
            if not flags & END_HEADERS:
                self._in_block = True
                self.tripped = self._continuation.started(length)
                if self.tripped is not None:
                    return True
            return self._frame_empty(empty=not length, end_stream=bool(flags & END_STREAM))
        if kind in (PING, SETTINGS):
            if not flags & ACK:
                self.control_frames += 1
        elif kind == GOAWAY:
            self._cutting = True
            self._goaway_payload.clear()
        elif kind == CONTINUATION:
            return self._frame_empty(empty=not length, end_stream=False)
        elif kind == PRIORITY:
            self.tripped = self._priority.frame()
            return self.tripped is not None
        return False

    def _in_header_block(self, kind: int, flags: int, length: int) -> bool:
        if kind != CONTINUATION:
            self._in_block = False  # h2 raises the protocol error itself
            return False
        if flags & END_HEADERS:
            self._in_block = False
        self.tripped = self._continuation.more(length) or self._empty.frame(empty=not length)
        return self.tripped is not None

    def _frame_empty(self, *, empty: bool, end_stream: bool) -> bool:
        self.tripped = self._empty.frame(empty=empty and not end_stream)
        return self.tripped is not None

    def _finish_goaway(self) -> None:
        self._cutting = False
        payload = self._goaway_payload
        if len(payload) < 8:
            # a short GOAWAY is a FRAME_SIZE_ERROR; report it as a protocol error without a last id
            self.goaways.append(GoAway(last_stream_id=-1, error_code=0x6))
            return
        last = int.from_bytes(payload[0:4], "big") & 0x7FFFFFFF
        self.goaways.append(GoAway(last_stream_id=last, error_code=int.from_bytes(payload[4:8], "big")))
