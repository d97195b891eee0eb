"""Service web in the lab (``meshctl lab up --service --weights 1,2,3``): 600 requests from pod a to the virtual
address are spread over the endpoints b, c, d by weight, measured by the pod named in each answer; the IPv6 virtual
address reaches the same endpoints."""

from __future__ import annotations

import pytest
import trio

from ctl.lab.service import SERVICE_PORT, SERVICE_VIP, SERVICE_VIP6
from ctl.lab.topology import Mode
from dataplane.admin.schema import ConnectionsReport
from tests.netns.labs import connections, lab
from tests.netns.service_load import run_load

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("require_netns")]

WEIGHTS = {"b": 1, "c": 2, "d": 3}
REQUESTS = 600
RATE = 100  # requests/s: 6 s of load
TOLERANCE = 0.07  # absolute share; one standard deviation of a 600-request sample is at most 0.02


@pytest.mark.parametrize("mode", [Mode.REDIRECT, Mode.TPROXY], ids=lambda mode: mode.value)
async def test_requests_to_the_virtual_address_are_spread_by_weight(mode: Mode) -> None:
    async with lab("sp", mode, pods=4, prefix="tmsvc", service=True, weights=list(WEIGHTS.values())) as the_lab:
        a = the_lab.pod("a")
        with trio.fail_after(60):
            load = await run_load(a, SERVICE_VIP, SERVICE_PORT, rate=RATE, duration=REQUESTS / RATE, connections=8)
            v6 = await run_load(a, SERVICE_VIP6, SERVICE_PORT, rate=20, duration=1.0, connections=2)
    print(f"{mode.value}: {load.summary()}\nIPv6: {v6.summary()}")
    assert not load.failures(), load.summary()
    assert len(load.outcomes) == REQUESTS, load.summary()
    shares = load.shares()
    expected = {pod: weight / sum(WEIGHTS.values()) for pod, weight in WEIGHTS.items()}
    report = ", ".join(f"{pod} {shares.get(pod, 0):.3f} (want {expected[pod]:.3f})" for pod in WEIGHTS)
    assert all(abs(shares.get(pod, 0) - expected[pod]) <= TOLERANCE for pod in WEIGHTS), (
        f"shares by weight 1:2:3 off by more than {TOLERANCE}: {report}\n{load.summary()}"
    )
    assert not v6.failures() and set(v6.by_pod()) <= set(WEIGHTS), v6.summary()


async def test_connections_name_the_service_and_the_endpoint_reached_over_mtls() -> None:
    async with lab("cn", Mode.REDIRECT, pods=4, prefix="tmsvc", service=True) as the_lab:
        a = the_lab.pod("a")
        endpoints = {the_lab.pod(name).address: the_lab.pod(name) for name in ("b", "c", "d")}
        with trio.fail_after(30):
            load = await run_load(a, SERVICE_VIP, SERVICE_PORT, rate=20, duration=1.0, connections=20)
            report = await connections(a)
            inbound = {pod.name: await connections(pod) for pod in endpoints.values()}
    assert not load.failures(), load.summary()
    rows = [row for row in [*report.open, *report.recent] if row.original_dst == f"{SERVICE_VIP}:{SERVICE_PORT}"]
    shown = [(row.service, row.upstream, row.tls, row.server_id) for row in rows]
    print(f"pod a's rows for the service (service, upstream, tls, server_id): {shown}")
    assert rows and all(row.service == f"web:{SERVICE_PORT}" for row in rows), shown
    # The other end: every endpoint pod a used served the service's requests over mTLS with pod a's identity.
    used = {row.upstream for row in rows}
    peers = {name: _inbound_peers(pod_report) for name, pod_report in inbound.items()}
    assert all(peers[endpoints[u.rpartition(":")[0]].name] == {a.spiffe_id} for u in used if u), (used, peers)
    for row in rows:
        assert row.upstream is not None, shown
        pod = endpoints[row.upstream.rpartition(":")[0]]
        assert (row.tls, row.server_id) == ("true", pod.spiffe_id), f"{row.upstream} is pod {pod.name}: {shown}"


def _inbound_peers(report: ConnectionsReport) -> set[str | None]:
    return {row.client_id for row in [*report.open, *report.recent] if row.direction == "inbound"}
