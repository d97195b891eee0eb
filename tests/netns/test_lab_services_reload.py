"""200 requests/s from pod a to service web for about 11 s while pod a's policy is rewritten 10 times (weights
changed, a route timeout set and cleared, endpoints removed and added back, retries changed): no request fails,
every rewrite is applied (the proxy's policy generation moves on by one each time), and a removed endpoint gets
no request sent after its removal was applied until it is added back."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import trio

from ctl.lab.lab import Lab
from ctl.lab.pod_policy import PolicyDocument
from ctl.lab.service import SERVICE_PORT, SERVICE_VIP
from ctl.lab.topology import Mode
from tests.netns.labs import lab
from tests.netns.service_load import run_load
from tests.netns.service_policy import apply_policy, generation, service

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("require_netns")]

RATE = 200
START, EVERY = 0.5, 1.0  # the first rewrite 0.5 s into the load, then one a second
APPLY_MARGIN = 0.1  # seconds after the new generation shows before a request must see it


def _endpoints(lab: Lab, weights: dict[str, int]) -> list[dict[str, object]]:
    return [
        {"address": lab.pod(name).address, "identity": lab.pod(name).spiffe_id, "weight": weight}
        for name, weight in weights.items()
    ]


def _variants(lab: Lab) -> list[tuple[str, Callable[[dict[str, object]], None], frozenset[str]]]:
    """(what changes, how, the endpoints removed from then on) in order; the last one restores the original."""

    def weights(**by_pod: int) -> Callable[[dict[str, object]], None]:
        return lambda web: web.update(endpoints=_endpoints(lab, by_pod))

    def route(**fields: object) -> Callable[[dict[str, object]], None]:
        def change(web: dict[str, object]) -> None:
            routes = web["routes"]
            assert isinstance(routes, list)
            routes[0].update(fields)

        return change

    retry = {"conditions": ["connect-failure", "refused-stream", "reset"], "statuses": [502, 503]}
    return [
        ("weights b2 c1 d1", weights(b=2, c=1, d=1), frozenset()),
        ("route timeout 2s", route(timeout="2s"), frozenset()),
        ("d removed", weights(b=2, c=1), frozenset("d")),
        ("weights b1 c3", weights(b=1, c=3), frozenset("d")),
        ("d added back", weights(b=1, c=3, d=1), frozenset()),
        ("route timeout cleared", route(timeout=None), frozenset()),
        ("b removed", weights(c=1, d=1), frozenset("b")),
        ("b added back", weights(b=1, c=1, d=1), frozenset()),
        ("2 attempts", route(retry={**retry, "max_attempts": 2}), frozenset()),
        ("3 attempts", route(retry={**retry, "max_attempts": 3}), frozenset()),
    ]


async def test_ten_policy_reloads_under_load_fail_no_request() -> None:
    async with lab("rl", Mode.REDIRECT, pods=4, prefix="tmsvc", service=True) as the_lab:
        a = the_lab.pod("a")
        variants = _variants(the_lab)
        # (seconds into the load: written, applied; what; the endpoints removed from then on)
        applied: list[tuple[float, float, str, frozenset[str]]] = []
        first = await generation(a)
        policy: PolicyDocument = a.policy()

        async def rewrite_all(started: float) -> None:
            for index, (what, change, removed) in enumerate(variants):
                await trio.sleep_until(started + START + index * EVERY)
                change(service(policy))
                written, at = await apply_policy(a, copy.deepcopy(policy))
                applied.append((written - started, at - started, what, removed))

        with trio.fail_after(60):
            started = trio.current_time()
            duration = START + len(variants) * EVERY + 0.5
            load = await run_load(
                a, SERVICE_VIP, SERVICE_PORT, rate=RATE, duration=duration, actions=[(0, lambda: rewrite_all(started))]
            )
            last = await generation(a)
    timeline = "\n".join(f"  written {written:6.3f}s applied {at:6.3f}s {what}" for written, at, what, _ in applied)
    summary = f"reloads:\n{timeline}\n{load.summary()}"
    print(summary)
    assert not load.failures(), summary
    assert len(applied) == len(variants) and last == first + len(variants), (first, last, summary)
    # A removed endpoint answers nothing sent from just after its removal showed until the next policy was written.
    ends = [written for written, _, _, _ in applied[1:]] + [duration]
    for (_, at, what, removed), end in zip(applied, ends, strict=True):
        answered = load.by_pod(at + APPLY_MARGIN, end)
        assert not removed & set(answered), f"after '{what}' ({at:.3f}s-{end:.3f}s): {dict(answered)}\n{summary}"
