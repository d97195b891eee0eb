"""Linkerd's HTTP families from ``HttpStats``: ``request_total``, ``response_total``, ``response_latency_ms``.

Labels follow the Linkerd proxy: ``direction``, ``authority``, ``target_addr``, ``target_ip``, ``target_port``,
``tls``; responses add ``status_code``, ``classification`` (success|failure), ``grpc_status`` and ``error``
(empty values are absent labels to Prometheus); the latency histogram adds ``status_code`` and uses Linkerd's
millisecond buckets.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from dataplane.http2.counters import H2Counters
from dataplane.telemetry.http_stats import LATENCY_BUCKETS_MS, HttpStats, RequestKey

_REQUEST_LABELS = [
    "direction",
    "authority",
    "target_addr",
    "target_ip",
    "target_port",
    "tls",
    "client_id",
    "server_id",
]
_BOUNDS = [*(str(b) for b in LATENCY_BUCKETS_MS), "+Inf"]


class HttpCollector(Collector):
    def __init__(self, stats: HttpStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        requests = CounterMetricFamily("request", "HTTP requests forwarded.", labels=_REQUEST_LABELS)
        for key, count in sorted(stats.requests.items(), key=lambda item: _order(item[0])):
            requests.add_metric(_labels(key), count)
        yield requests
        responses = CounterMetricFamily(
            "response",
            "HTTP responses (or errors instead of one), by status and classification.",
            labels=[*_REQUEST_LABELS, "status_code", "classification", "grpc_status", "error"],
        )
        for rkey, count in sorted(stats.responses.items(), key=lambda item: (_order(item[0].request), item[0][1:])):
            responses.add_metric(
                [*_labels(rkey.request), rkey.status_code, rkey.classification, rkey.grpc_status, rkey.error], count
            )
        yield responses
        latency = HistogramMetricFamily(
            "response_latency_ms",
            "Time from a request to its response head, in milliseconds.",
            labels=[*_REQUEST_LABELS, "status_code"],
        )
        for (key, status), histogram in sorted(
            stats.latency.items(), key=lambda item: (_order(item[0][0]), item[0][1])
        ):
            latency.add_metric(
                [*_labels(key), status],
                list(zip(_BOUNDS, (float(n) for n in histogram.cumulative()), strict=True)),
                histogram.sum,
            )
        yield latency


def _labels(key: RequestKey) -> list[str]:
    client_id, server_id = (key.peer_id, "") if key.direction == "inbound" else ("", key.peer_id)
    target = key.target
    return [key.direction, key.authority, str(target), target.ip, str(target.port), key.tls, client_id, server_id]


def _order(key: RequestKey) -> tuple[str, str, str, str, str]:
    return (key.direction, key.authority, str(key.target), key.tls, key.peer_id)


class H2Collector(Collector):
    """HTTP/2 connection health: streams, requests refused by validation, flood defences, protocol errors."""

    def __init__(self, clients: H2Counters, upstreams: H2Counters) -> None:
        self._sides = (("client", clients), ("upstream", upstreams))

    def collect(self) -> Iterator[Metric]:
        streams = CounterMetricFamily("triomesh_h2_streams", "HTTP/2 streams, by connection side.", labels=["side"])
        errors = CounterMetricFamily(
            "triomesh_h2_protocol_errors",
            "HTTP/2 connections closed because the peer broke the protocol.",
            labels=["side"],
        )
        rejected = CounterMetricFamily(
            "triomesh_h2_rejected",
            "HTTP/2 requests or responses refused by validation (RST_STREAM), by reason.",
            labels=["side", "reason"],
        )
        floods = CounterMetricFamily(
            "triomesh_h2_flood_closed",
            "HTTP/2 connections closed by a flood defence (GOAWAY), by kind.",
            labels=["side", "kind"],
        )
        for side, counters in self._sides:
            streams.add_metric([side], counters.streams)
            errors.add_metric([side], counters.protocol_errors)
            for reason, count in sorted(counters.rejected.items()):
                rejected.add_metric([side, reason], count)
            for kind, count in sorted(counters.flood_closed.items()):
                floods.add_metric([side, kind], count)
        yield from (streams, errors, rejected, floods)
