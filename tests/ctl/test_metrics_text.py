from __future__ import annotations

from ctl.metrics_text import excerpt, metric_name

TEXT = """\
# HELP tcp_open_total Connections opened
# TYPE tcp_open_total counter
tcp_open_total{direction="outbound",target_addr="198.18.7.12:8080"} 1
tcp_open_total{direction="inbound",target_addr="127.0.0.1:15000"} 4
tcp_read_bytes_total{direction="outbound",target_addr="198.18.7.12:8080"} 64
tcp_open_connections{direction="outbound",target_addr="198.18.7.12:8080"} 0
process_cpu_seconds_total 1.5
"""


def test_metric_name() -> None:
    assert metric_name('tcp_open_total{a="b"} 1') == "tcp_open_total"
    assert metric_name("process_cpu_seconds_total 1.5") == "process_cpu_seconds_total"


def test_excerpt_picks_families_and_matching_lines() -> None:
    assert excerpt(TEXT, ["tcp_open_total", "tcp_read_bytes_total"], [":8080"]) == [
        'tcp_open_total{direction="outbound",target_addr="198.18.7.12:8080"} 1',
        'tcp_read_bytes_total{direction="outbound",target_addr="198.18.7.12:8080"} 64',
    ]


def test_excerpt_without_a_match_shows_the_whole_families() -> None:
    assert excerpt(TEXT, ["tcp_open_total"], ["no-such-label"]) == [
        'tcp_open_total{direction="outbound",target_addr="198.18.7.12:8080"} 1',
        'tcp_open_total{direction="inbound",target_addr="127.0.0.1:15000"} 4',
    ]
    assert excerpt(TEXT, ["tcp_close_total"]) == []


def test_excerpt_drops_excluded_lines() -> None:
    assert excerpt(TEXT, ["tcp_open_total"], excluding=['"inbound"']) == [
        'tcp_open_total{direction="outbound",target_addr="198.18.7.12:8080"} 1',
    ]
