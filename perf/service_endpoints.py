"""The service scenarios' endpoints: three nginx origins (the upstream of every HTTP scenario, each its own
process with one worker on the load core), and how the proxy split the load among them.

The split is read from each nginx's own request counter (``stub_status``) before and after the load, so it is
measured the same way for every proxy and counts what reached the endpoints, not what a proxy says it sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import trio

from dataplane.net.addr import SockAddr
from perf import parse
from perf.peers import STATUS_PATH
from perf.processes import BenchError, Services, free_port
from perf.proxies import LOOPBACK, start_origin
from perf.scenarios import ENDPOINT_SHARES
from perf.service_peers import ENDPOINTS
from perf.two_hops import admin_get


async def start_endpoints(services: Services, run_dir: Path) -> tuple[SockAddr, ...]:
    """Start the service's endpoints (``endpoint1``, ...), each in a directory of its own under ``run_dir``;
    returns their addresses once all listen."""
    addresses = []
    for number in range(1, ENDPOINTS + 1):
        name = f"endpoint{number}"
        directory = run_dir / name
        await trio.Path(directory).mkdir(parents=True, exist_ok=True)
        address = SockAddr(LOOPBACK, free_port())
        await start_origin(services, directory, name, address)
        addresses.append(address)
    return tuple(addresses)


async def requests_served(endpoints: Sequence[SockAddr]) -> list[int]:
    """Each endpoint's request count so far, this status request included."""
    counts = []
    for endpoint in endpoints:
        try:
            counts.append(parse.parse_stub_status((await admin_get(endpoint, STATUS_PATH)).decode(errors="replace")))
        except parse.ToolOutputError as exc:
            raise BenchError(f"endpoint {endpoint}: {exc}") from None
    return counts


def shares(before: Sequence[int], after: Sequence[int]) -> dict[str, float]:
    """Each endpoint's share (percent) of the requests served between two ``requests_served`` readings (the
    second reading's own status request is not the load's). Pure."""
    served = [later - earlier - 1 for earlier, later in zip(before, after, strict=True)]
    total = sum(served)
    if total <= 0:
        raise BenchError("the service's endpoints served no request")
    return {figure.key: 100.0 * count / total for figure, count in zip(ENDPOINT_SHARES, served, strict=True)}
