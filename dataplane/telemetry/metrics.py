"""Every metric family the proxy exports, on a registry the proxy owns.

TCP families use Linkerd's names and labels (``tcp_open_total``, ``tcp_close_total{errno}``,
``tcp_open_connections``, ``tcp_read_bytes_total``, ``tcp_write_bytes_total``; ``direction``, ``peer``,
``target_addr``, ``target_ip``, ``target_port``, ``tls``) so existing dashboards work. ``peer="src"`` is the
accepted connection, ``peer="dst"`` the one the proxy opened. They are computed at scrape time from the connection
table: the relay only bumps integers. What Linkerd has no family for is ``triomesh_*`` in base units.

Detection uses Linkerd's ``tcp_detect_http`` families (``..._results_total{result}``,
``..._duration_seconds``), with ``direction`` as a label like the tcp_* families instead of Linkerd's
``inbound_``/``outbound_`` name prefix. ``result`` is a closed set; the SNI is never a label.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from dataplane.connections import CloseSide, ConnectionTable, MetricKey, PeerTotals
from dataplane.detect.totals import BUCKETS, DetectTotals
from dataplane.http2.counters import H2Counters
from dataplane.telemetry.http_metrics import H2Collector, HttpCollector
from dataplane.telemetry.http_stats import HttpStats
from policy.store import PolicyStore

_TCP_LABELS = ["direction", "peer", "target_addr", "target_ip", "target_port", "tls", "client_id", "server_id"]
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STARTING: Final = "starting"
"""Why a proxy is not ready before its listeners accept: the only reason the supervisor waits out at start."""


@dataclass
class ProxyState:
    """Process-wide flags the admin endpoint and metrics report."""

    started_at: float
    ready: bool = False
    draining: bool = False
    not_ready_reason: str = STARTING
    identity_problem: Callable[[], str | None] | None = None
    """With --identity: why there is no identity valid now, or None (``IdentityStore.problem``)."""

    def readiness(self) -> tuple[bool, str]:
        """(ready, why not): what /ready, /status and ``triomesh_ready`` report."""
        if self.draining:
            return False, "draining"
        if not self.ready:
            return False, self.not_ready_reason
        problem = self.identity_problem() if self.identity_problem is not None else None
        if problem is not None:
            return False, f"no valid identity ({problem})"
        return True, ""


class ProxyMetrics:
    def __init__(
        self,
        table: ConnectionTable,
        store: PolicyStore,
        state: ProxyState,
        version: str,
        *,
        http: HttpStats | None = None,
        h2: tuple[H2Counters, H2Counters] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.registry.register(TcpCollector(table))
        self.registry.register(DetectCollector(table.detections))
        self.registry.register(PolicyCollector(store))
        self.registry.register(StateCollector(state, version))
        if http is not None:
            self.registry.register(HttpCollector(http))
        if h2 is not None:
            self.registry.register(H2Collector(*h2))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class TcpCollector(Collector):
    def __init__(self, table: ConnectionTable) -> None:
        self._table = table

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        opened, closed, open_now, read, written, reasons = families
        totals: dict[tuple[MetricKey, CloseSide], PeerTotals] = {}
        for closed_key, tot in self._table.closed_totals.items():
            copy = totals[closed_key] = PeerTotals()
            copy.opened, copy.read, copy.written, copy.closed = (
                tot.opened,
                tot.read,
                tot.written,
                dict(tot.closed),
            )
        live_count: dict[tuple[MetricKey, CloseSide], int] = {}
        for rec in self._table.iter_live():
            live_key = rec.metric_key()
            _add_live(totals, live_count, (live_key, "src"), rec.up.received, rec.down.sent)
            if rec.dst_opened:
                _add_live(totals, live_count, (live_key, "dst"), rec.down.received, rec.up.sent)
        for (key, peer), tot in sorted(totals.items(), key=_sort_key):
            labels = _labels(key, peer)
            opened.add_metric(labels, tot.opened)
            read.add_metric(labels, tot.read)
            written.add_metric(labels, tot.written)
            open_now.add_metric(labels, live_count.get((key, peer), 0))
            for errno_name, count in sorted(tot.closed.items()):
                closed.add_metric([*labels, errno_name], count)
        for (direction, reason), count in sorted(self._table.close_reasons.items()):
            reasons.add_metric([direction, reason], count)
        return families

    @staticmethod
    def _families() -> tuple[
        CounterMetricFamily,
        CounterMetricFamily,
        GaugeMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
    ]:
        return (
            CounterMetricFamily("tcp_open", "TCP connections opened.", labels=_TCP_LABELS),
            CounterMetricFamily("tcp_close", "TCP connections closed.", labels=[*_TCP_LABELS, "errno"]),
            GaugeMetricFamily("tcp_open_connections", "TCP connections currently open.", labels=_TCP_LABELS),
            CounterMetricFamily("tcp_read_bytes", "Bytes read from the peer.", labels=_TCP_LABELS),
            CounterMetricFamily("tcp_write_bytes", "Bytes written to the peer.", labels=_TCP_LABELS),
            CounterMetricFamily(
                "triomesh_connections_closed",
                "Proxied connections closed, by close reason (completed, idle_timeout, connect_refused, ...).",
                labels=["direction", "reason"],
            ),
        )


def _add_live(
    totals: dict[tuple[MetricKey, CloseSide], PeerTotals],
    live_count: dict[tuple[MetricKey, CloseSide], int],
    key: tuple[MetricKey, CloseSide],
    read: int,
    written: int,
) -> None:
    tot = totals.get(key)
    if tot is None:
        tot = totals[key] = PeerTotals()
    tot.opened += 1
    tot.read += read
    tot.written += written
    live_count[key] = live_count.get(key, 0) + 1


def _sort_key(item: tuple[tuple[MetricKey, CloseSide], PeerTotals]) -> tuple[str, str, str, str, str]:
    (direction, target, tls, peer_id), peer = item[0]
    return (direction, str(target), tls, peer_id, peer)


def _labels(key: MetricKey, peer: CloseSide) -> list[str]:
    direction, target, tls, peer_id = key
    # Linkerd's names: the verified client identity inbound, the server's outbound ("" when not mesh mTLS).
    client_id, server_id = (peer_id, "") if direction == "inbound" else ("", peer_id)
    return [direction, peer, str(target), target.ip, str(target.port), tls, client_id, server_id]


class DetectCollector(Collector):
    def __init__(self, totals: DetectTotals) -> None:
        self._totals = totals

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        results, duration = families = self._families()
        for (direction, result), count in sorted(self._totals.results.items()):
            results.add_metric([direction, result], count)
        for direction, histogram in sorted(self._totals.seconds.items()):
            cumulative, buckets = 0, []
            for bound, count in zip([*map(str, BUCKETS), "+Inf"], histogram.counts, strict=True):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            duration.add_metric([direction], buckets, histogram.total)
        return families

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, HistogramMetricFamily]:
        return (
            CounterMetricFamily(
                "tcp_detect_http_results",
                "Protocol detections, by result (http/1, http/2, tls, not_http, server_first, read_timeout, ...).",
                labels=["direction", "result"],
            ),
            HistogramMetricFamily(
                "tcp_detect_http_duration_seconds",
                "Time from the start of protocol detection to its decision.",
                labels=["direction"],
            ),
        )


class PolicyCollector(Collector):
    def __init__(self, store: PolicyStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        store = self._store
        reloads = CounterMetricFamily(
            "triomesh_policy_reloads", "Policy reload attempts, by result.", labels=["result"]
        )
        reloads.add_metric(["success"], store.reloads_succeeded)
        reloads.add_metric(["failure"], store.reloads_failed)
        yield reloads
        snap = store.current
        yield GaugeMetricFamily(
            "triomesh_policy_generation",
            "Generation of the active policy (1 at start, +1 per reload).",
            value=snap.generation,
        )
        yield GaugeMetricFamily(
            "triomesh_policy_file_present",
            "1 when the watched policy file exists.",
            value=int(store.file_present),
        )
        yield GaugeMetricFamily(
            "triomesh_policy_last_reload_success_timestamp_seconds",
            "Unix time the active policy was loaded.",
            value=store.last_success_at,
        )
        info = GaugeMetricFamily("triomesh_policy_info", "The active policy.", labels=["name", "version", "source"])
        info.add_metric([snap.policy.name, snap.version, snap.source], 1)
        yield info


class StateCollector(Collector):
    def __init__(self, state: ProxyState, version: str) -> None:
        self._state = state
        self._version = version

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("triomesh_build_info", "The running build.", labels=["version", "python"])
        info.add_metric([self._version, platform.python_version()], 1)
        yield info
        yield GaugeMetricFamily("triomesh_ready", "1 when /ready answers 200.", value=int(self._state.readiness()[0]))
        yield GaugeMetricFamily(
            "triomesh_draining", "1 while the proxy drains after SIGTERM.", value=int(self._state.draining)
        )
