"""Forgetting idle metric series: the pure rule, the HTTP counts and the TCP totals, and the scrape after it."""

from __future__ import annotations

import trio
import trio.testing

from dataplane.connections import ConnectionTable
from dataplane.net.addr import SockAddr
from dataplane.telemetry.http_stats import MAX_AUTHORITIES, HttpStats
from dataplane.telemetry.retention import Retention
from dataplane.telemetry.sweep import forget_idle_series
from tests.dataplane.test_http_stats import exposition

WEB = SockAddr("10.0.0.7", 8080)
GONE = SockAddr("10.0.0.9", 8080)
CLIENT = SockAddr("10.0.0.1", 40000)


def test_a_key_goes_after_two_periods_without_a_change_of_its_count() -> None:
    retention: Retention[str] = Retention()
    assert retention.stale({"a": 1, "b": 1}) == []  # counted in this period
    assert retention.stale({"a": 2, "b": 1}) == []  # b moved in the previous one
    assert retention.stale({"a": 2, "b": 1}) == ["b"]  # a moved in the previous one, b in neither
    assert retention.stale({"a": 2}) == ["a"]
    assert retention.stale({"a": 3}) == []  # moving again keeps it


def test_idle_request_keys_are_forgotten_with_their_responses_latencies_and_authorities() -> None:
    stats = HttpStats()
    for authority in [f"host-{i}" for i in range(MAX_AUTHORITIES)]:
        stats.response(stats.request("outbound", authority, GONE, "no_identity"), status=200, latency_ms=3)
    assert stats.authority("one-too-many") == "other"
    assert stats.forget_idle() == 0  # this period
    assert stats.forget_idle() == 0  # the previous period
    busy = stats.request("outbound", "web", WEB, "no_identity")  # "web" is over the limit: "other"
    stats.response(busy, status=200, latency_ms=1)
    assert stats.forget_idle() == MAX_AUTHORITIES  # neither this period nor the previous one
    assert set(stats.requests) == {busy}
    assert {key.request for key in stats.responses} == {busy}
    assert {key for key, _ in stats.latency} == {busy}
    text = exposition(stats)
    assert "host-0" not in text and 'target_addr="10.0.0.7:8080"' in text
    assert stats.authority("web") == "web"  # the places of the forgotten authorities are free again


def _closed(table: ConnectionTable, target: SockAddr) -> None:
    rec = table.open("outbound", CLIENT, target)
    rec.original_dst = rec.upstream = target
    rec.dst_opened = True
    table.close(rec)


async def test_tcp_totals_of_a_target_with_nothing_open_are_forgotten() -> None:
    table = ConnectionTable()
    _closed(table, GONE)
    _closed(table, WEB)
    long_lived = table.open("outbound", CLIENT, WEB)
    long_lived.original_dst = long_lived.upstream = WEB
    assert table.forget_idle_series() == 0
    assert table.forget_idle_series() == 0
    assert table.forget_idle_series() == 1  # GONE; WEB still has a connection open
    assert {key[0][1] for key in table.closed_totals} == {WEB}
    table.close(long_lived)
    assert [table.forget_idle_series() for _ in range(3)] == [0, 0, 1]
    assert table.closed_totals == {}


async def test_the_sweeper_runs_every_half_retain_period(autojump_clock: trio.testing.MockClock) -> None:
    table, stats = ConnectionTable(), HttpStats()
    _closed(table, GONE)
    stats.request("outbound", "gone", GONE, "no_identity")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(forget_idle_series, table, stats, 600.0)
        await trio.sleep(899)
        assert table.closed_totals and stats.requests  # touched in the first sweep's period, kept by the second
        await trio.sleep(2)  # the third, at 1.5 retain periods
        assert not table.closed_totals and not stats.requests
        nursery.cancel_scope.cancel()
