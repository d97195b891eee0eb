"""HTTP/2 flood detectors with reliability.md G2's thresholds. Pure: counts in, a ``FloodKind`` out when tripped.

h2 answers every PING and SETTINGS by itself and has no outbound cap, parses whatever HEADERS+RST_STREAM pairs it is
fed, and only caps CONTINUATION at 64 frames (A7). These detectors are what keeps one attacking connection's CPU
and memory bounded; conn.py closes the connection with GOAWAY when one returns a kind.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec


class FloodKind(StrEnum):
    RAPID_RESET = "rapid_reset"
    OUTBOUND_CONTROL = "outbound_control"
    EMPTY_FRAMES = "empty_frames"
    CONTINUATION = "continuation"
    HPACK_BOMB = "hpack_bomb"
    PRIORITY = "priority"


class FloodLimits(msgspec.Struct, frozen=True, kw_only=True):
    rapid_reset_min_streams: int = 200
    """Judge the reset ratio only once this many streams were opened (CVE-2023-44487; Envoy uses 200 too)."""
    rapid_reset_window: int = 1000
    """Halve both counts at this many streams, so the ratio follows recent behaviour and trips before 1000."""
    premature_lifetime: float = 1.0
    """A stream the client resets within this many seconds counts as premature even after a response."""
    max_pending_control: int = 1000
    """Outbound control frames (PING/SETTINGS ACKs, our RST_STREAMs) not yet written (Envoy's default)."""
    max_consecutive_empty: int = 1
    """Empty DATA/HEADERS/CONTINUATION frames without END_STREAM in a row (Envoy's default, CVE-2019-9518)."""
    max_continuation_frames: int = 32
    """CONTINUATION frames in one header block; below h2's own 64 so the kind is ours to report."""
    max_header_block_bytes: int = 65536
    """Encoded bytes of one header block (HEADERS + CONTINUATIONs); the decoded limit is h2's 64 KiB."""
    max_priority_per_stream: int = 100
    """PRIORITY frames per HEADERS frame received, plus as many before the first (Envoy's 100, CVE-2019-9513)."""


class RapidReset:
    """Trips when more than half of at least ``rapid_reset_min_streams`` streams ended prematurely."""

    __slots__ = ("_limits", "_premature", "_streams")

    def __init__(self, limits: FloodLimits) -> None:
        self._limits = limits
        self._streams = 0
        self._premature = 0

    def opened(self) -> None:
        self._streams += 1
        if self._streams >= self._limits.rapid_reset_window:
            self._streams //= 2
            self._premature //= 2

    def ended_early(self) -> FloodKind | None:
        """A stream ended before its response was sent (client reset, or we refused it as invalid)."""
        self._premature += 1
        if self._streams >= self._limits.rapid_reset_min_streams and self._premature * 2 > self._streams:
            return FloodKind.RAPID_RESET
        return None


class ControlBudget:
    """Outbound control frames queued since the writer last drained everything (CVE-2019-9512/9514/9515)."""

    __slots__ = ("_max", "pending")

    def __init__(self, limits: FloodLimits) -> None:
        self._max = limits.max_pending_control
        self.pending = 0

    def queued(self, count: int) -> FloodKind | None:
        self.pending += count
        return FloodKind.OUTBOUND_CONTROL if self.pending > self._max else None

    def flushed(self) -> None:
        self.pending = 0


class EmptyFrames:
    """Consecutive DATA/HEADERS/CONTINUATION frames with nothing in them and no END_STREAM (CVE-2019-9518)."""

    __slots__ = ("_max", "_run")

    def __init__(self, limits: FloodLimits) -> None:
        self._max = limits.max_consecutive_empty
        self._run = 0

    def frame(self, *, empty: bool) -> FloodKind | None:
        if not empty:
            self._run = 0
            return None
        self._run += 1
        return FloodKind.EMPTY_FRAMES if self._run > self._max else None


class PriorityBudget:
    """PRIORITY frames against the HEADERS frames that opened streams (CVE-2019-9513 resource loop).

    h2 keeps no priority tree, so a PRIORITY frame only costs its parse; a connection may still send
    ``max_priority_per_stream`` of them for every HEADERS frame and as many before its first (browsers announce a
    few idle-stream priorities up front), and trips beyond that."""

    __slots__ = ("_allowed", "_frames", "_per_stream")

    def __init__(self, limits: FloodLimits) -> None:
        self._per_stream = limits.max_priority_per_stream
        self._allowed = self._per_stream
        self._frames = 0

    def headers(self) -> None:
        self._allowed += self._per_stream

    def frame(self) -> FloodKind | None:
        self._frames += 1
        return FloodKind.PRIORITY if self._frames > self._allowed else None


class Continuation:
    """Frames and encoded bytes of the header block being received (CVE-2023-45288 CONTINUATION flood)."""

    __slots__ = ("_bytes", "_frames", "_max_bytes", "_max_frames")

    def __init__(self, limits: FloodLimits) -> None:
        self._max_frames = limits.max_continuation_frames
        self._max_bytes = limits.max_header_block_bytes
        self._frames = 0
        self._bytes = 0

    def started(self, length: int) -> FloodKind | None:
        self._frames = 0
        self._bytes = length
        return FloodKind.CONTINUATION if length > self._max_bytes else None

    def more(self, length: int) -> FloodKind | None:
        self._frames += 1
        self._bytes += length
        if self._frames > self._max_frames or self._bytes > self._max_bytes:
            return FloodKind.CONTINUATION
        return None
