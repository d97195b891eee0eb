"""reliability.md G5 through the lab's service path: pod a's proxy answers a request to a service whose only
endpoint fails, with retries off (one attempt), on time and with ``x-triomesh-error``:

- the endpoint's port is closed (pod b resets the SYN: iptables REJECT tcp-reset) -> 503 within 100 ms;
- the endpoint is blackholed (pod b drops the SYN: iptables DROP) -> 503 at the connect timeout (500 ms) +-100 ms;
- the endpoint accepts and never answers (pod c's app in fail mode hang) -> 504 at the route timeout (300 ms)
  +-100 ms.
"""

from __future__ import annotations

import pytest
import trio

from ctl.lab.app_control import set_fail
from ctl.lab.lab import Lab, Pod
from ctl.lab.service import SERVICE_NET
from ctl.lab.topology import HTTP_PORT, Mode
from tests.netns.labs import lab, run_in
from tests.netns.service_load import Outcome, request_once
from tests.netns.service_policy import apply_policy, services

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("require_netns")]

CONNECT_TIMEOUT, ROUTE_TIMEOUT, TOLERANCE = 0.5, 0.3, 0.1
REFUSED_PORT, DROPPED_PORT = 8091, 8092
TRIES = 2  # each case twice: the second must not differ (nothing ejected, nothing learned)
PORT = 80


def _vip(index: int) -> str:
    return str(SERVICE_NET[20 + index])


def _single(name: str, index: int, endpoint: Pod, port: int, *, timeout: str | None = None) -> dict[str, object]:
    """A service with one endpoint, no retries and no ejection, so every request meets the endpoint's fault."""
    route: dict[str, object] = {"name": "only", "retry": {"max_attempts": 1}}
    if timeout is not None:
        route["timeout"] = timeout
    return {
        "name": name,
        "addresses": [_vip(index)],
        "ports": [{"port": PORT, "target_port": port}],
        "endpoints": [{"address": endpoint.address, "identity": endpoint.spiffe_id}],
        "routes": [route],
        "outlier_detection": {"consecutive_failures": 1000},
    }


async def _prepare(the_lab: Lab) -> None:
    a, b, c = the_lab.pod("a"), the_lab.pod("b"), the_lab.pod("c")
    reject = ["-p", "tcp", "-m", "conntrack", "--ctorigdstport", str(REFUSED_PORT)]
    await run_in(b, "iptables", "-w", "-I", "INPUT", *reject, "-j", "REJECT", "--reject-with", "tcp-reset")
    await run_in(
        b, "iptables", "-w", "-t", "raw", "-I", "PREROUTING", "-p", "tcp", "--dport", str(DROPPED_PORT), "-j", "DROP"
    )
    await set_fail(c.netns, "hang")
    policy = a.policy()
    policy["timeouts"] = {"connect": f"{CONNECT_TIMEOUT * 1000:g}ms"}
    services(policy).extend(
        [
            _single("refused", 0, b, REFUSED_PORT),
            _single("blackholed", 1, b, DROPPED_PORT),
            _single("silent", 2, c, HTTP_PORT, timeout=f"{ROUTE_TIMEOUT * 1000:g}ms"),
        ]
    )
    await apply_policy(a, policy)


def _show(outcomes: list[Outcome]) -> str:
    return "; ".join(
        f"{o.status} after {o.latency * 1000:.0f} ms ({o.error or 'no x-triomesh-error'})" for o in outcomes
    )


@pytest.mark.parametrize("mode", [Mode.REDIRECT, Mode.TPROXY], ids=lambda mode: mode.value)
async def test_connect_failures_and_timeouts_answer_503_and_504_on_time(mode: Mode) -> None:
    async with lab("fa", mode, pods=3, prefix="tmsvc", service=True) as the_lab:
        a = the_lab.pod("a")
        with trio.fail_after(60):
            await _prepare(the_lab)
            results = {
                case: [await request_once(a, _vip(index), PORT, f"/{case}") for _ in range(TRIES)]
                for index, case in enumerate(("refused", "blackholed", "silent"))
            }
    report = "\n".join(f"  {case}: {_show(outcomes)}" for case, outcomes in results.items())
    print(f"{mode.value}:\n{report}")
    assert all(o.status == 503 and o.error and o.latency < TOLERANCE for o in results["refused"]), report
    assert all(
        o.status == 503 and o.error and abs(o.latency - CONNECT_TIMEOUT) <= TOLERANCE for o in results["blackholed"]
    ), report
    assert all(
        o.status == 504 and o.error and abs(o.latency - ROUTE_TIMEOUT) <= TOLERANCE for o in results["silent"]
    ), report
