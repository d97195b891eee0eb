"""The pure flood detectors and the frame scanner that feeds them."""

from __future__ import annotations

from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    SettingsFrame,
)

from dataplane.http2.flood import ControlBudget, FloodKind, FloodLimits, PriorityBudget, RapidReset
from dataplane.http2.frames import PREFACE, FrameScanner, GoAway, encode_goaway

LIMITS = FloodLimits()


def test_rapid_reset_trips_at_200_streams_when_most_were_reset() -> None:
    detector = RapidReset(LIMITS)
    tripped_at = None
    for n in range(1, 1001):
        detector.opened()
        if detector.ended_early() is not None:
            tripped_at = n
            break
    assert tripped_at == 200


def test_rapid_reset_leaves_a_healthy_connection_alone() -> None:
    detector = RapidReset(LIMITS)
    for n in range(100_000):
        detector.opened()
        if n % 3 == 0:  # a third cancelled: browsers navigating away
            assert detector.ended_early() is None


def test_rapid_reset_follows_recent_behaviour() -> None:
    detector = RapidReset(LIMITS)
    for _ in range(100_000):
        detector.opened()
    tripped_at = None
    for n in range(1, 2000):
        detector.opened()
        if detector.ended_early() is not None:
            tripped_at = n
            break
    assert tripped_at is not None and tripped_at < 1000


def test_control_budget_counts_until_flushed() -> None:
    budget = ControlBudget(LIMITS)
    assert budget.queued(1000) is None
    budget.flushed()
    assert budget.queued(1000) is None
    assert budget.queued(1) is FloodKind.OUTBOUND_CONTROL


def test_scanner_passes_whole_frames_through_untouched() -> None:
    scanner = FrameScanner(LIMITS, expect_preface=True)
    data = PREFACE + SettingsFrame(0).serialize() + DataFrame(1, b"x" * 100).serialize()
    assert scanner.feed(data) is data
    assert scanner.tripped is None
    assert scanner.control_frames == 1


def test_scanner_cuts_goaway_out_even_split_byte_by_byte() -> None:
    goaway = GoAwayFrame(0, last_stream_id=7, error_code=0, additional_data=b"bye").serialize()
    assert encode_goaway(7, 0) == GoAwayFrame(0, last_stream_id=7, error_code=0).serialize()
    ping = PingFrame(0, opaque_data=b"12345678").serialize()
    data = ping + goaway + ping
    scanner = FrameScanner(LIMITS, expect_preface=False)
    out = b"".join(bytes(scanner.feed(data[i : i + 1])) for i in range(len(data)))
    assert out == ping + ping
    assert scanner.goaways == [GoAway(last_stream_id=7, error_code=0)]


def test_scanner_counts_consecutive_empty_frames() -> None:
    scanner = FrameScanner(LIMITS, expect_preface=False)
    empty = DataFrame(1, b"").serialize()
    scanner.feed(empty)
    assert scanner.tripped is None
    scanner.feed(DataFrame(1, b"x").serialize() + empty)
    assert scanner.tripped is None
    scanner.feed(empty)
    assert scanner.tripped is FloodKind.EMPTY_FRAMES


def test_padding_only_data_is_empty_and_end_stream_is_not() -> None:
    scanner = FrameScanner(LIMITS, expect_preface=False)
    scanner.feed(DataFrame(1, b"", flags=["END_STREAM"]).serialize() * 5)
    assert scanner.tripped is None
    padded = DataFrame(1, b"", flags=["PADDED"], pad_length=10).serialize()
    scanner.feed(padded[:9])
    scanner.feed(padded[9:] + padded)
    assert scanner.tripped is FloodKind.EMPTY_FRAMES


def test_scanner_caps_continuation_frames() -> None:
    scanner = FrameScanner(LIMITS, expect_preface=False)
    scanner.feed(HeadersFrame(1, b"\x82").serialize())  # no END_HEADERS
    more = ContinuationFrame(1, b"\x82").serialize()
    for _ in range(LIMITS.max_continuation_frames):
        scanner.feed(more)
        assert scanner.tripped is None
    scanner.feed(more)
    assert scanner.tripped is FloodKind.CONTINUATION


def test_scanner_caps_header_block_bytes() -> None:
    scanner = FrameScanner(LIMITS, expect_preface=False)
    scanner.feed(HeadersFrame(1, b"\x82" * 16000).serialize())
    for _ in range(3):
        scanner.feed(ContinuationFrame(1, b"\x82" * 16000).serialize())
        assert scanner.tripped is None
    scanner.feed(ContinuationFrame(1, b"\x82" * 16000).serialize())
    assert scanner.tripped is FloodKind.CONTINUATION


def test_priority_budget_is_100_per_headers_frame_plus_100() -> None:
    budget = PriorityBudget(LIMITS)
    assert all(budget.frame() is None for _ in range(100))
    assert budget.frame() is FloodKind.PRIORITY
    budget = PriorityBudget(LIMITS)
    for _ in range(10):
        budget.headers()
    assert all(budget.frame() is None for _ in range(1100))
    assert budget.frame() is FloodKind.PRIORITY


def test_scanner_caps_priority_frames_per_stream() -> None:
    scanner = FrameScanner(LIMITS, expect_preface=False)
    headers = b"".join(HeadersFrame(sid, b"\x82", flags=["END_HEADERS"]).serialize() for sid in range(1, 21, 2))
    churn = b"".join(
        PriorityFrame(1 + 2 * (i % 10), depends_on=0, stream_weight=i % 256).serialize() for i in range(1100)
    )
    scanner.feed(headers + churn)
    assert scanner.tripped is None  # 10 streams: 100 each, plus 100 before the first
    scanner.feed(PriorityFrame(1, depends_on=3).serialize())
    assert scanner.tripped is FloodKind.PRIORITY
