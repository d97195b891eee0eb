"""The catalogue: which scenarios exist, what each measures, which figures it reports. Pure data.

HTTP scenarios run the peers as L7 proxies; their ``tcp_`` twins run them as L4 proxies (Envoy ``tcp_proxy``,
nginx ``stream``, HAProxy ``mode tcp``), which is the like-for-like comparison for triomesh's opaque relay.
The ``mtls_`` scenarios run two hops of one proxy with TLS 1.3 mTLS between them (perf/mtls_peers.py), for the
peers that have a mesh mTLS configuration here: triomesh and Envoy. The ``service_`` scenarios run one proxy in
front of a service of three endpoints (perf/service_peers.py), again triomesh and Envoy only.
"""

from __future__ import annotations

import enum
from typing import Final

import msgspec

from perf.peers import Layer


class Tool(enum.Enum):
    WRK = "wrk"
    WRK_FIXED_RATE = "wrk-fixed-rate"
    H2LOAD = "h2load"
    IPERF3 = "iperf3"
    IDLE = "idle"
    REST = "rest"


class Figure(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    label: str
    higher_is_better: bool
    digits: int
    """Decimals shown in the report."""
    needs_process: bool = False
    """Measured on the proxy's process: nothing to report with no proxy."""
    compared: bool = True
    """Shown with its ratio to Envoy's figure; a share of the load is not a better or worse number."""


RPS: Final = Figure(key="rps", label="req/s", higher_is_better=True, digits=0)
P50: Final = Figure(key="p50_ms", label="p50 ms", higher_is_better=False, digits=3)
P99: Final = Figure(key="p99_ms", label="p99 ms", higher_is_better=False, digits=3)
P999: Final = Figure(key="p999_ms", label="p99.9 ms", higher_is_better=False, digits=3)
CPU_PER_REQ: Final = Figure(
    key="cpu_us_per_req", label="CPU µs/req", higher_is_better=False, digits=1, needs_process=True
)
GBYTES: Final = Figure(key="gbytes_per_s", label="GB/s", higher_is_better=True, digits=2)
CPU_PER_GB: Final = Figure(key="cpu_s_per_gb", label="CPU s/GB", higher_is_better=False, digits=2, needs_process=True)
RSS_PER_CONN: Final = Figure(
    key="rss_kib_per_conn", label="RSS KiB/conn", higher_is_better=False, digits=1, needs_process=True
)
PSS_PER_CONN: Final = Figure(
    key="pss_kib_per_conn", label="PSS KiB/conn", higher_is_better=False, digits=1, needs_process=True
)
RSS: Final = Figure(key="rss_mib", label="RSS MiB", higher_is_better=False, digits=1, needs_process=True)
PSS: Final = Figure(key="pss_mib", label="PSS MiB", higher_is_better=False, digits=1, needs_process=True)
# Per hop of the mTLS scenarios: the target (<= 50 KiB per idle mTLS connection) holds for each hop.
RSS_PER_CONN_WORSE_HOP: Final = Figure(
    key="rss_kib_per_conn_worse_hop",
    label="RSS KiB/conn, worse hop",
    higher_is_better=False,
    digits=1,
    needs_process=True,
)
RSS_PER_CONN_HOP1: Final = Figure(
    key="rss_kib_per_conn_hop1", label="hop 1 RSS KiB/conn", higher_is_better=False, digits=1, needs_process=True
)
RSS_PER_CONN_HOP2: Final = Figure(
    key="rss_kib_per_conn_hop2", label="hop 2 RSS KiB/conn", higher_is_better=False, digits=1, needs_process=True
)
PSS_PER_CONN_HOP1: Final = Figure(
    key="pss_kib_per_conn_hop1", label="hop 1 PSS KiB/conn", higher_is_better=False, digits=1, needs_process=True
)
PSS_PER_CONN_HOP2: Final = Figure(
    key="pss_kib_per_conn_hop2", label="hop 2 PSS KiB/conn", higher_is_better=False, digits=1, needs_process=True
)

# The service scenarios' split: each endpoint's share of the requests the endpoints served, in percent.
ENDPOINT_SHARES: Final = tuple(
    Figure(key=f"endpoint{n}_pct", label=f"endpoint {n} %", higher_is_better=False, digits=1, compared=False)
    for n in range(1, 4)
)


class Scenario(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    title: str
    layer: Layer
    """How the peers proxy in this scenario. triomesh is always an L4 relay."""
    tool: Tool
    figures: tuple[Figure, ...]
    h2c: bool = False
    streams: int = 1
    """iperf3 parallel streams."""
    mtls: bool = False
    """Two hops of the proxy with mesh mTLS between them; CPU and memory are summed over both hops."""
    service: bool = False
    """One proxy in front of a service of three endpoints (perf/service_peers.py), balancing per request."""

    @property
    def headline(self) -> Figure:
        return self.figures[0]

    @property
    def needs_process(self) -> bool:
        return all(figure.needs_process for figure in self.figures)


SCENARIOS: Final = (
    Scenario(
        name="http1",
        title="HTTP/1.1 small requests (wrk, 1 thread, 50 connections)",
        layer=Layer.L7,
        tool=Tool.WRK,
        figures=(RPS, P50, P99, CPU_PER_REQ),
    ),
    Scenario(
        name="h2c",
        title="h2c (h2load, 10 connections x 10 streams)",
        layer=Layer.L7,
        tool=Tool.H2LOAD,
        figures=(RPS, CPU_PER_REQ),
        h2c=True,
    ),
    Scenario(
        name="latency",
        title="HTTP/1.1 latency at a fixed 1,000 requests/s (wrk, 8 connections)",
        layer=Layer.L7,
        tool=Tool.WRK_FIXED_RATE,
        figures=(P50, P99, RPS),
    ),
    Scenario(
        name="tcp_rr",
        title="Opaque TCP request/response: small HTTP/1.1 exchanges on 50 persistent connections through L4 proxies",
        layer=Layer.L4,
        tool=Tool.WRK,
        figures=(RPS, P50, P99, CPU_PER_REQ),
    ),
    Scenario(
        name="tcp_h2c",
        title="h2c through L4 proxies (h2load, 10 connections x 10 streams)",
        layer=Layer.L4,
        tool=Tool.H2LOAD,
        figures=(RPS, CPU_PER_REQ),
        h2c=True,
    ),
    Scenario(
        name="tcp_latency",
        title="Latency at a fixed 1,000 requests/s through L4 proxies",
        layer=Layer.L4,
        tool=Tool.WRK_FIXED_RATE,
        figures=(P50, P99, RPS),
    ),
    Scenario(
        name="bulk_1",
        title="Bulk TCP throughput, one stream (iperf3)",
        layer=Layer.L4,
        tool=Tool.IPERF3,
        figures=(GBYTES, CPU_PER_GB),
        streams=1,
    ),
    Scenario(
        name="bulk_8",
        title="Bulk TCP throughput, eight streams (iperf3 -P 8)",
        layer=Layer.L4,
        tool=Tool.IPERF3,
        figures=(GBYTES, CPU_PER_GB),
        streams=8,
    ),
    Scenario(
        name="idle",
        title="Memory per idle proxied connection",
        layer=Layer.L4,
        tool=Tool.IDLE,
        figures=(RSS_PER_CONN, PSS_PER_CONN),
    ),
    Scenario(
        name="rest",
        title="Proxy memory at rest (started, no traffic)",
        layer=Layer.L4,
        tool=Tool.REST,
        figures=(RSS, PSS),
    ),
    Scenario(
        name="mtls_http1",
        title="mTLS two hops, HTTP/1.1 (wrk -> hop 1 -> TLS 1.3 mTLS -> hop 2 -> nginx; wrk -c50)",
        layer=Layer.L7,
        tool=Tool.WRK,
        figures=(RPS, P50, P99, CPU_PER_REQ, RSS),
        mtls=True,
    ),
    Scenario(
        name="mtls_latency",
        title="mTLS two hops, HTTP/1.1 latency at a fixed 1,000 requests/s (wrk, 8 connections)",
        layer=Layer.L7,
        tool=Tool.WRK_FIXED_RATE,
        figures=(P99, P50, RPS),  # p99 first: the target is on it
        mtls=True,
    ),
    Scenario(
        name="mtls_idle",
        title="Memory per idle mTLS connection, per hop (client -> hop 1 -> TLS 1.3 mTLS -> hop 2 -> upstream)",
        layer=Layer.L4,
        tool=Tool.IDLE,
        figures=(RSS_PER_CONN_WORSE_HOP, RSS_PER_CONN_HOP1, RSS_PER_CONN_HOP2, PSS_PER_CONN_HOP1, PSS_PER_CONN_HOP2),
        mtls=True,
    ),
    Scenario(
        name="service_http1",
        title="HTTP/1.1 to a service of three endpoints, balanced per request (wrk, 1 thread, 50 connections)",
        layer=Layer.L7,
        tool=Tool.WRK,
        figures=(RPS, P50, P99, CPU_PER_REQ, *ENDPOINT_SHARES),
        service=True,
    ),
    Scenario(
        name="service_latency",
        title="HTTP/1.1 to a service of three endpoints at a fixed 1,000 requests/s (wrk, 8 connections)",
        layer=Layer.L7,
        tool=Tool.WRK_FIXED_RATE,
        figures=(P99, P50, P999, RPS, *ENDPOINT_SHARES),
        service=True,
    ),
)
BY_NAME: Final = {scenario.name: scenario for scenario in SCENARIOS}


class Peer(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    title: str
    layers: frozenset[Layer]
    """What it can be; an L7 scenario runs an L4-only proxy as L4 and the report says so."""
    is_process: bool = True
    h2_upstream: bool = False
    """As an L7 proxy it speaks HTTP/2 to the upstream too (no translation to HTTP/1.1): give it the h2c upstream."""
    mtls: bool = False
    """Runs the mTLS two-hop scenarios (a mesh mTLS configuration exists for it in perf/mtls_peers.py)."""
    services: bool = False
    """Runs the service scenarios (a configuration with three endpoints exists for it in perf/service_peers.py)."""


PEERS: Final = (
    Peer(name="none", title="no proxy", layers=frozenset({Layer.L7, Layer.L4}), is_process=False),
    # L7 by detection: HTTP/1.1 to HTTP/1.1, h2c to h2c (it does not translate between them).
    Peer(
        name="triomesh",
        title="triomesh",
        layers=frozenset({Layer.L7, Layer.L4}),
        h2_upstream=True,
        mtls=True,
        services=True,
    ),
    Peer(name="envoy", title="Envoy", layers=frozenset({Layer.L7, Layer.L4}), mtls=True, services=True),
    Peer(name="nginx", title="nginx", layers=frozenset({Layer.L7, Layer.L4})),
    Peer(name="haproxy", title="HAProxy", layers=frozenset({Layer.L7, Layer.L4})),
)
PEER_BY_NAME: Final = {peer.name: peer for peer in PEERS}
BASELINE: Final = "envoy"  # every ratio in the report is to Envoy's figure from the same run


def layer_for(peer: Peer, scenario: Scenario) -> Layer:
    """The layer ``peer`` runs at in ``scenario``: the scenario's, unless the peer cannot (then it relays the
    scenario's traffic at L4)."""
    return scenario.layer if scenario.layer in peer.layers else Layer.L4


def skip_reason(peer: Peer, scenario: Scenario) -> str | None:
    """Why ``peer`` cannot take part in ``scenario`` at all, or None."""
    if scenario.mtls and not peer.mtls:
        return "no mTLS two-hop configuration (triomesh and Envoy only)"
    if scenario.service and not peer.services:
        return "no service configuration (triomesh and Envoy only)"
    if not peer.is_process and scenario.needs_process:
        return "no proxy process to measure"
    return None
