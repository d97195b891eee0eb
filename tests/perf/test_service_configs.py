"""The service scenarios' configurations: Envoy's accepted by ``envoy --mode validate``, triomesh's policy read by
the policy loader into the service plan the proxy uses, both with the same three endpoints, balancer, retries
and outlier detection; and the endpoints' own request counts, read from real nginx processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from dataplane.net.addr import SockAddr
from perf import service_peers
from perf.processes import BenchError, Services
from perf.service_endpoints import requests_served, shares, start_endpoints
from perf.service_peers import VIP
from policy.index import PolicyIndex
from policy.load import decode_policy
from policy.model import RetryCondition
from tests.perf.conftest import envoy_validates, need

LISTEN = SockAddr("127.0.0.1", 28031)
ADMIN = SockAddr("127.0.0.1", 28032)
ENDPOINTS = (SockAddr("127.0.0.1", 28033), SockAddr("127.0.0.1", 28034), SockAddr("127.0.0.1", 28035))


def test_envoy_balances_over_the_three_endpoints(tmp_path: Path) -> None:
    text = service_peers.envoy(LISTEN, ENDPOINTS, ADMIN)
    config = json.loads(text)
    (cluster,) = config["static_resources"]["clusters"]
    assert cluster["lb_policy"] == "LEAST_REQUEST"  # P2C: choice_count defaults to 2
    (locality,) = cluster["load_assignment"]["endpoints"]
    addresses = [e["endpoint"]["address"]["socket_address"] for e in locality["lb_endpoints"]]
    assert [(a["address"], a["port_value"]) for a in addresses] == [(e.ip, e.port) for e in ENDPOINTS]
    assert cluster["outlier_detection"]["consecutive_5xx"] == 7
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    (route,) = manager["route_config"]["virtual_hosts"][0]["routes"]
    assert route["route"] == {
        "cluster": "upstream",
        "retry_policy": {"retry_on": "connect-failure", "num_retries": 2},
    }
    envoy_validates(tmp_path / "envoy.yaml", text)


def test_triomesh_policy_maps_the_virtual_address_to_the_endpoints() -> None:
    policy = decode_policy(service_peers.triomesh_policy(ENDPOINTS).encode(), "json", source="service-policy.json")
    plan = PolicyIndex(policy).service(VIP.ip, VIP.port)
    assert plan is not None
    assert [(e.address, e.weight, e.identity) for e in plan.endpoints] == [((e.ip, e.port), 1, None) for e in ENDPOINTS]
    retry = plan.default_route.retry
    assert (retry.conditions, retry.max_attempts) == (
        frozenset({RetryCondition.CONNECT_FAILURE}),
        3,
    )  # Envoy: num_retries 2
    assert plan.outlier.consecutive_failures == 7
    assert (plan.outlier.base_ejection.seconds, plan.outlier.max_ejection.seconds) == (1.0, 60.0)
    assert plan.outlier.max_ejected_percent == 50
    assert policy.timeouts.connect.seconds == 5.0  # Envoy's cluster connect_timeout


def test_shares_of_the_requests_served() -> None:
    # Each reading's own status request is subtracted: 10, 20 and 70 requests of the load.
    assert shares([5, 1, 1], [16, 22, 72]) == {"endpoint1_pct": 10.0, "endpoint2_pct": 20.0, "endpoint3_pct": 70.0}
    with pytest.raises(BenchError, match="no request"):
        shares([3, 3, 3], [4, 4, 4])


async def _get(addr: SockAddr) -> None:
    stream = await trio.open_tcp_stream(addr.ip, addr.port)
    async with stream:
        await stream.send_all(f"GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := await stream.receive_some():
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ")


async def test_endpoints_count_what_reached_each_of_them(tmp_path: Path) -> None:
    need("nginx")
    need("taskset")
    async with Services(tmp_path) as services:
        endpoints = await start_endpoints(services, tmp_path)
        assert len(endpoints) == service_peers.ENDPOINTS == 3
        before = await requests_served(endpoints)
        for endpoint, count in zip(endpoints, (1, 2, 5), strict=True):
            for _ in range(count):
                await _get(endpoint)
        assert shares(before, await requests_served(endpoints)) == {
            "endpoint1_pct": 12.5,
            "endpoint2_pct": 25.0,
            "endpoint3_pct": 62.5,
        }
