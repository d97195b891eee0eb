"""The service scenarios' proxies: one proxy in front of a service of three endpoints, configured alike for
triomesh and Envoy. Pure: text and JSON out.

wrk -> proxy -> one of three nginx endpoints, chosen per request. triomesh's forward listener leads to the
service's virtual address (``VIP``, which exists nowhere and is never connected to) and its policy maps that
address to the endpoints (``outbound.services``); Envoy's listener routes to a cluster of the same endpoints.
Both balance by power of two choices (triomesh: weighted P2C over peak-EWMA; Envoy: ``LEAST_REQUEST``, whose
default ``choice_count`` is 2), retry connect failures twice (3 tries in all) and eject an endpoint after 7
consecutive failures (5xx or connect failures) for 1 s, doubled up to 60 s, at most half of the endpoints.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

from dataplane.net.addr import SockAddr
from perf.peers import CONNECT_TIMEOUT, EnvoyJson, Layer, envoy_config, envoy_text

VIP: Final = SockAddr("10.255.0.1", 80)
"""The service's virtual address, where triomesh's forward listener leads."""
ENDPOINTS: Final = 3
SERVICE_NAME: Final = "bench"
RETRIES: Final = 2  # after the first try: Envoy's num_retries; triomesh's max_attempts counts the first try too
CONSECUTIVE_FAILURES: Final = 7  # Linkerd's and triomesh's default; Envoy's consecutive_5xx default is 5
BASE_EJECTION: Final = "1s"
MAX_EJECTION: Final = "60s"
MAX_EJECTED_PERCENT: Final = 50


def triomesh_policy(endpoints: Sequence[SockAddr]) -> str:
    """A bundle with one service at ``VIP`` whose endpoints are ``endpoints`` (weight 1 each)."""
    service = {
        "name": SERVICE_NAME,
        "addresses": [VIP.ip],
        "ports": [{"port": VIP.port, "name": "http"}],
        "endpoints": [{"address": str(endpoint)} for endpoint in endpoints],
        "retry": {"conditions": ["connect-failure"], "max_attempts": RETRIES + 1},
        "outlier_detection": {
            "consecutive_failures": CONSECUTIVE_FAILURES,
            "base_ejection": BASE_EJECTION,
            "max_ejection": MAX_EJECTION,
            "max_ejected_percent": MAX_EJECTED_PERCENT,
        },
    }
    # Envoy's cluster connect_timeout (5 s) for the endpoints too; triomesh's default is 1 s.
    policy = {"name": "bench-service", "timeouts": {"connect": CONNECT_TIMEOUT}, "outbound": {"services": [service]}}
    return json.dumps(policy, indent=2) + "\n"


def envoy(listen: SockAddr, endpoints: Sequence[SockAddr], admin: SockAddr) -> str:
    """Envoy's HTTP connection manager routing to one cluster of ``endpoints``: P2C least request, connect
    failures retried twice, outlier detection as triomesh's."""
    route: EnvoyJson = {"retry_policy": {"retry_on": "connect-failure", "num_retries": RETRIES}}
    cluster: EnvoyJson = {
        "lb_policy": "LEAST_REQUEST",
        "outlier_detection": {
            "consecutive_5xx": CONSECUTIVE_FAILURES,
            "base_ejection_time": BASE_EJECTION,
            "max_ejection_time": MAX_EJECTION,
            "max_ejection_percent": MAX_EJECTED_PERCENT,
        },
    }
    return envoy_text(envoy_config(listen, endpoints, admin, Layer.L7, route_options=route, cluster_options=cluster))
