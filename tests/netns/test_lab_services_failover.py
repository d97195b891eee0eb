"""Service web over pods b, c, d (equal weights) under steady load from pod a, while one endpoint goes bad:

- its app is killed (SIGKILL, mid-load): no GET fails at the client (the route retries resets, 502 and 503 on
  another endpoint), the balancer ejects it (``outbound_http_balancer_endpoints{endpoint_state="ejected"}``), and
  the traffic goes to the other two;
- its app answers 200 ms late: the peak-EWMA balancer moves traffic away, measured per second.
"""

from __future__ import annotations

from functools import partial

import pytest
import trio

from ctl.lab.app_control import set_delay
from ctl.lab.lab import Pod
from ctl.lab.service import SERVICE_NAME, SERVICE_PORT, SERVICE_VIP
from ctl.lab.topology import Mode
from tests.netns.labs import lab
from tests.netns.service_load import run_load, service_total

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("require_netns")]

BALANCER = "outbound_http_balancer_endpoints"


async def _watch_ejected(a: Pod, seen: list[float]) -> None:
    """Samples the client proxy's ejected-endpoint gauge for the service every 100 ms until cancelled."""
    while True:
        seen.append(await service_total(a, BALANCER, SERVICE_NAME, endpoint_state="ejected"))
        await trio.sleep(0.1)


async def test_a_killed_endpoint_costs_no_request_and_is_ejected() -> None:
    rate, duration, kill_at = 100, 8.0, 2.0
    async with lab("ki", Mode.REDIRECT, pods=4, prefix="tmsvc", service=True) as the_lab:
        a = the_lab.pod("a")
        ejected: list[float] = []
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_watch_ejected, a, ejected)
                kill = partial(the_lab.kill_app, "c")
                load = await run_load(
                    a, SERVICE_VIP, SERVICE_PORT, rate=rate, duration=duration, actions=[(kill_at, kill)]
                )
                nursery.cancel_scope.cancel()
            ready = await service_total(a, BALANCER, SERVICE_NAME, endpoint_state="ready")
    summary = f"{load.summary()}\nejected gauge samples (every 100 ms): {ejected}; ready at the end: {ready}"
    print(summary)
    assert not load.failures(), f"GETs failed while endpoint c was killed:\n{summary}"
    before, after = load.shares(0, kill_at), load.shares(kill_at + 0.5)
    assert before.get("c", 0) >= 0.2, f"c had too little traffic before it was killed: {before}\n{summary}"
    assert after.get("c", 0) == 0 and min(after.get("b", 0), after.get("d", 0)) >= 0.3, (
        f"after the kill: {after}\n{summary}"
    )
    assert max(ejected, default=0) >= 1, f"endpoint c was never shown ejected\n{summary}"


async def test_a_slowed_endpoint_loses_its_share_within_two_seconds() -> None:
    rate, duration, slow_at, settle = 60, 12.0, 3.0, 2.0
    async with lab("sl", Mode.REDIRECT, pods=4, prefix="tmsvc", service=True) as the_lab:
        a, c = the_lab.pod("a"), the_lab.pod("c")
        slow = partial(set_delay, c.netns, 200)
        with trio.fail_after(60):
            load = await run_load(a, SERVICE_VIP, SERVICE_PORT, rate=rate, duration=duration, actions=[(slow_at, slow)])
    before, after = load.shares(0, slow_at), load.shares(slow_at + settle)
    summary = f"shares before c's 200 ms delay {before}, from {settle:g}s after it {after}\n{load.summary()}"
    print(summary)
    assert not load.failures(), summary
    assert before.get("c", 0) >= 0.2, summary
    # Its weight share is 1/3; a balancer that sees 200 ms against a few ms sends it a small fraction of that.
    assert after.get("c", 0) <= 0.1, summary
