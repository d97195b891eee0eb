"""Linkerd's HTTP families: counts, classification, latency buckets, bounded authority, worker merge."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dataplane.net.addr import SockAddr
from dataplane.telemetry.aggregate import merge_expositions
from dataplane.telemetry.http_metrics import HttpCollector
from dataplane.telemetry.http_stats import MAX_AUTHORITIES, HttpStats, classify

WEB = SockAddr("10.0.0.7", 8080)


def exposition(stats: HttpStats) -> str:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(HttpCollector(stats))
    return generate_latest(registry).decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_classification_follows_linkerd() -> None:
    assert classify(200, None, "") == "success"
    assert classify(404, None, "") == "success"
    assert classify(503, None, "") == "failure"
    assert classify(None, None, "connect_refused") == "failure"
    assert classify(200, 0, "") == "success"
    assert classify(200, 14, "") == "failure"  # gRPC UNAVAILABLE in a 200


def test_requests_responses_and_latency_are_exposed_with_linkerd_names_and_labels() -> None:
    stats = HttpStats()
    key = stats.request("outbound", "web.shop:8080", WEB, "no_identity")
    stats.response(key, status=200, latency_ms=4.2)
    key = stats.request("outbound", "web.shop:8080", WEB, "no_identity")
    stats.response(key, status=200, latency_ms=5)
    key = stats.request("outbound", "web.shop:8080", WEB, "no_identity")
    assert stats.response(key, status=None, latency_ms=1000, error="connect_timeout") == "failure"
    got = samples(exposition(stats))
    unsorted = (
        ("authority", "web.shop:8080"), ("direction", "outbound"), ("target_addr", "10.0.0.7:8080"),
        ("target_ip", "10.0.0.7"), ("target_port", "8080"), ("tls", "no_identity"),
        ("client_id", ""), ("server_id", ""),
    )  # fmt: skip
    base = tuple(sorted(unsorted))
    assert got[("request_total", base)] == 3
    # Empty values (no gRPC status, no error) are absent labels to Prometheus.
    ok = tuple(
        sorted((*base, ("status_code", "200"), ("classification", "success"), ("grpc_status", ""), ("error", "")))
    )
    assert got[("response_total", ok)] == 2
    failed = tuple(
        sorted(
            (
                *base,
                ("status_code", ""),
                ("classification", "failure"),
                ("grpc_status", ""),
                ("error", "connect_timeout"),
            )
        )
    )
    assert got[("response_total", failed)] == 1
    bucket = tuple(sorted((*base, ("status_code", "200"), ("le", "5"))))  # Linkerd prints whole-number bounds
    assert got[("response_latency_ms_bucket", bucket)] == 2  # 4.2 and 5 (bounds are inclusive)
    below = tuple(sorted((*base, ("status_code", "200"), ("le", "4"))))
    assert got[("response_latency_ms_bucket", below)] == 0
    status = tuple(sorted((*base, ("status_code", "200"))))
    assert got[("response_latency_ms_count", status)] == 2
    assert got[("response_latency_ms_sum", status)] == 9.2
    assert got[("response_latency_ms_bucket", tuple(sorted((*base, ("status_code", ""), ("le", "+Inf")))))] == 1


def test_authority_values_are_bounded() -> None:
    stats = HttpStats()
    for i in range(MAX_AUTHORITIES + 20):
        stats.request("inbound", f"host-{i}", WEB, "no_identity")
    authorities = {key.authority for key in stats.requests}
    assert len(authorities) == MAX_AUTHORITIES + 1 and "other" in authorities
    assert stats.request("inbound", "host-0", WEB, "no_identity").authority == "host-0"  # known ones keep theirs


def test_workers_histograms_and_counters_add_up() -> None:
    one, two = HttpStats(), HttpStats()
    for stats, latency in ((one, 3.0), (two, 30.0)):
        key = stats.request("inbound", "api", WEB, "no_identity")
        stats.response(key, status=200, latency_ms=latency)
    merged = samples(merge_expositions([exposition(one), exposition(two)]).decode())
    unsorted = (
        ("authority", "api"), ("direction", "inbound"), ("target_addr", "10.0.0.7:8080"),
        ("target_ip", "10.0.0.7"), ("target_port", "8080"), ("tls", "no_identity"),
        ("client_id", ""), ("server_id", ""),
    )  # fmt: skip
    base = tuple(sorted(unsorted))
    assert merged[("request_total", base)] == 2

    def le(bound: str) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((*base, ("status_code", "200"), ("le", bound))))

    assert merged[("response_latency_ms_bucket", le("3"))] == 1
    assert merged[("response_latency_ms_bucket", le("30"))] == 2
    assert merged[("response_latency_ms_bucket", le("+Inf"))] == 2
