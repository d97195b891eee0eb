"""Every endpoint of service web answers 503 for 30 s while pod a sends 100 requests/s: the route would retry each
request twice (503 is retried, 3 attempts), but the service's retry budget (Linkerd's default: 20% of requests
plus 10 retries/s) bounds the retries: the retries it refuses are counted as overflow, those past max_attempts as
limit_exceeded, and no retry counts as a success (every final answer is a 503)."""

from __future__ import annotations

import pytest
import trio

from ctl.lab.app_control import set_fail
from ctl.lab.service import SERVICE_NAME, SERVICE_PORT, SERVICE_VIP
from ctl.lab.topology import Mode
from tests.netns.labs import lab
from tests.netns.service_load import run_load, service_total

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("require_netns")]

RATE, DURATION = 100, 30.0
RATIO, MIN_PER_SECOND, TTL = 0.2, 10, 10.0  # RetryBudget defaults (policy/model.py)
RETRIES = "outbound_http_route_retry_requests_total"
LIMITED = "outbound_http_route_retry_limit_exceeded_total"
SUCCESSES = "outbound_http_route_retry_successes_total"
OVERFLOW = "outbound_http_route_retry_overflow_total"


async def test_a_total_outage_is_retried_only_within_the_budget() -> None:
    async with lab("bu", Mode.REDIRECT, pods=4, prefix="tmsvc", service=True) as the_lab:
        a = the_lab.pod("a")
        with trio.fail_after(DURATION + 30):
            for name in ("b", "c", "d"):
                await set_fail(the_lab.pod(name).netns, "503")
            counted = {
                name: await service_total(a, name, SERVICE_NAME) for name in (RETRIES, LIMITED, SUCCESSES, OVERFLOW)
            }
            load = await run_load(a, SERVICE_VIP, SERVICE_PORT, rate=RATE, duration=DURATION)
            delta = {name: await service_total(a, name, SERVICE_NAME) - counted[name] for name in counted}
    requests = len(load.outcomes)
    # The budget: 20% of the requests, 10 retries for each second, and a reserve of one ttl's minimum (a budget
    # may start full); without it every request would be retried twice.
    allowed = RATIO * requests + MIN_PER_SECOND * DURATION + MIN_PER_SECOND * TTL
    report = (
        f"{requests} requests in {DURATION:g}s, retries {delta[RETRIES]:g} (allowed {allowed:g}, unbounded"
        f" {2 * requests}), limit_exceeded {delta[LIMITED]:g}, overflow {delta[OVERFLOW]:g}, successes"
        f" {delta[SUCCESSES]:g}\n{load.summary()}"
    )
    print(report)
    assert requests == RATE * DURATION, report
    assert {outcome.status for outcome in load.outcomes} == {503}, report
    assert 0 < delta[RETRIES] <= allowed, report
    assert delta[LIMITED] > 0, report
    assert delta[OVERFLOW] > 0, report  # the budget, not max_attempts alone, is what held the retries back
    assert delta[SUCCESSES] == 0, report
