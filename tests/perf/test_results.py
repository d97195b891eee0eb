"""Medians over rounds, the ratio to Envoy, and what the markdown report says about them."""

from __future__ import annotations

from perf.report import render_markdown
from perf.results import Machine, RunResult, RunSettings, Sample, cells, ratio

MACHINE = Machine(
    name="test-2c",
    cpu="Test CPU",
    cores=2,
    memory_gib=24.0,
    kernel="6.1",
    os="Debian",
    python="3.11",
    versions={"envoy": "envoy 1.40.0", "triomesh": "commit abc"},
)


def _result(samples: list[Sample], scenarios: list[str], proxies: list[str]) -> RunResult:
    return RunResult(
        machine=MACHINE,
        settings=RunSettings(
            mode="loopback",
            smoke=False,
            rounds=3,
            duration_s=5,
            scenarios=scenarios,
            proxies=proxies,
            idle_connections=9_900,
            fixed_rate=1_000,
        ),
        started_at="2026-11-26T01:00:00+00:00",
        finished_at="2026-11-26T01:20:00+00:00",
        samples=samples,
    )


def _rps(proxy: str, layer: str, *values: float, scenario: str = "http1") -> list[Sample]:
    return [
        Sample(round=i + 1, scenario=scenario, proxy=proxy, layer=layer, figures={"rps": v})
        for i, v in enumerate(values)
    ]


def test_median_per_figure_over_good_rounds_only() -> None:
    samples = [
        *_rps("envoy", "L7", 100.0, 300.0, 200.0),
        Sample(round=1, scenario="http1", proxy="nginx", layer="L7", figures={"rps": 10.0, "p99_ms": 2.0}),
        Sample(round=2, scenario="http1", proxy="nginx", layer="L7", error="nginx exited with 1"),
        Sample(round=3, scenario="http1", proxy="nginx", layer="L7", figures={"rps": 30.0, "p99_ms": 4.0}),
    ]
    table = cells(samples)
    assert table["http1", "envoy"].medians == {"rps": 200.0}
    nginx = table["http1", "nginx"]
    assert nginx.medians == {"rps": 20.0, "p99_ms": 3.0}
    assert nginx.rounds == 2
    assert nginx.errors == ["nginx exited with 1"]


def test_skipped_cell_keeps_its_reason() -> None:
    samples = [Sample(round=r, scenario="idle", proxy="none", layer="L4", skipped="no proxy process") for r in (1, 2)]
    cell = cells(samples)["idle", "none"]
    assert (cell.skipped, cell.rounds, cell.medians) == ("no proxy process", 0, {})


def test_ratio() -> None:
    assert ratio(50.0, 200.0) == 0.25
    assert ratio(None, 200.0) is None
    assert ratio(50.0, None) is None
    assert ratio(50.0, 0.0) is None


def test_report_gives_every_figure_its_ratio_to_envoy() -> None:
    samples = [
        *_rps("envoy", "L7", 20_000.0, 24_000.0, 22_000.0),
        *_rps("nginx", "L7", 66_000.0, 66_000.0, 66_000.0),
        *_rps("triomesh", "L4", 11_000.0, 11_000.0, 11_000.0),
        *_rps("envoy", "L4", 80_000.0, 80_000.0, 80_000.0, scenario="tcp_rr"),
        *_rps("triomesh", "L4", 20_000.0, 20_000.0, 20_000.0, scenario="tcp_rr"),
    ]
    text = render_markdown(_result(samples, ["http1", "tcp_rr"], ["envoy", "nginx", "triomesh"]), "chart.png")
    assert "| Envoy HTTP | 22,000 (\u00d71.00) |" in text
    assert "| nginx proxy_pass | 66,000 (\u00d73.00) |" in text
    # triomesh's HTTP figure is marked as carried over its L4 relay, and compared like for like at L4.
    assert "| triomesh (L4 relay) \u2020 | 11,000 (\u00d70.50) |" in text
    assert "| triomesh | 20,000 (\u00d70.25) |" in text
    assert "| Envoy tcp_proxy | 80,000 (\u00d71.00) |" in text
    assert "![headline figures](chart.png)" in text
    assert "Test CPU, 2 cores" in text


def test_report_without_envoy_has_no_ratios_and_lists_failures() -> None:
    samples = [
        *_rps("nginx", "L7", 1.0),
        Sample(round=1, scenario="http1", proxy="haproxy", layer="L7", error="haproxy exited with 1: bad config"),
    ]
    text = render_markdown(_result(samples, ["http1"], ["nginx", "haproxy"]))
    assert "| nginx proxy_pass | 1 | —" in text
    assert "| HAProxy mode http | failed |" in text
    assert "- HAProxy mode http: failed: haproxy exited with 1: bad config" in text


def test_the_method_states_the_load_the_measurements_started_at() -> None:
    loaded = [
        Sample(round=1, scenario="http1", proxy=p, layer="L7", figures={"rps": 1.0}, load_1m=load)
        for p, load in (("envoy", 0.4), ("triomesh", 1.9), ("nginx", 0.8))
    ]
    text = render_markdown(_result(loaded, ["http1"], ["envoy", "triomesh", "nginx"]))
    assert "1-minute load average as each measurement started: 0.40 to 1.90 (median 0.80; 2 cores)." in text
    assert "load average" not in render_markdown(_result(_rps("envoy", "L7", 1.0), ["http1"], ["envoy"]))


def test_service_report_shows_the_split_without_ratios() -> None:
    split = {"endpoint1_pct": 33.0, "endpoint2_pct": 34.0, "endpoint3_pct": 33.0}
    samples = [
        Sample(round=1, scenario="service_http1", proxy="envoy", layer="L7", figures={"rps": 200.0} | split),
        Sample(round=1, scenario="service_http1", proxy="triomesh", layer="L7", figures={"rps": 100.0} | split),
        Sample(round=1, scenario="service_http1", proxy="nginx", layer="L7", skipped="no service configuration"),
    ]
    text = render_markdown(_result(samples, ["service_http1"], ["envoy", "triomesh", "nginx"]))
    assert "## Summary, a service of three endpoints" in text
    assert "three such nginx upstreams" in text
    # A share of the load is not better or worse than Envoy's: no ratio after it.
    assert "| triomesh HTTP | 100 (\u00d70.50) | — | — | — | 33.0 | 34.0 | 33.0 | 1 |" in text
    summary = text.split("## Summary, a service of three endpoints", 1)[1].split("##", 1)[0]
    assert "| nginx |" not in summary and "| triomesh |" in summary  # only proxies with a service configuration
