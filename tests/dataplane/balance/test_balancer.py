import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.balance.balancer import Balancer, BalancerSettings, Endpoint

A = ("10.0.0.1", 80)
B = ("10.0.0.2", 80)
C = ("10.0.0.3", 80)


SETTINGS = BalancerSettings(
    default_rtt=0.03, decay=10.0, consecutive_failures=3, base_ejection=1.0, max_ejection=60.0, max_ejected_percent=50
)
EVERY_ONE = SETTINGS._replace(max_ejected_percent=100)  # all may be ejected at once


def balancer(
    endpoints: list[tuple[tuple[str, int], str | None, int]], *, seed: int = 1, settings: BalancerSettings = SETTINGS
) -> Balancer:
    lb = Balancer(settings, rng=random.Random(seed), now=0.0)
    assert lb.update(endpoints, 0.0, settings) == []
    return lb


def eject(lb: Balancer, ep: Endpoint, now: float) -> None:
    for _ in range(3):
        lb.begin(ep)
        lb.end(ep, now, rtt=None, ok=False)
    assert ep.health.ejected(now)


def test_no_endpoint_gives_none() -> None:
    assert balancer([]).pick(0.0) is None


def test_one_endpoint_is_picked_even_when_avoided() -> None:
    lb = balancer([(A, "a", 1)])
    ep = lb.pick(0.0, avoid={A})
    assert ep is not None
    assert ep.address == A
    assert ep.identity == "a"


def test_weights_1_2_3_give_picks_1_2_3_at_equal_cost() -> None:
    lb = balancer([(A, None, 1), (B, None, 2), (C, None, 3)])
    counts = Counter(ep.address for _ in range(30_000) if (ep := lb.pick(0.0)) is not None)
    assert sum(counts.values()) == 30_000
    for address, weight in ((A, 1), (B, 2), (C, 3)):
        assert counts[address] / 30_000 == pytest.approx(weight / 6, abs=0.01)


@pytest.mark.parametrize(
    ("interval", "tolerance"),
    [
        (0.0003, 0.015),  # about 30 requests in flight
        (0.001, 0.015),  # about 10 in flight
        # One at a time, so pending never counts and only the EWMAs decide: the heaviest endpoint has the most
        # samples to set a new peak with, so it looks a little slower and its share comes out a few % low.
        (0.02, 0.07),
    ],
)
def test_equally_fast_endpoints_carry_traffic_by_weight_under_any_load(interval: float, tolerance: float) -> None:
    lb = balancer([(A, None, 1), (B, None, 2), (C, None, 3)])
    noise = random.Random(3)
    in_flight: list[tuple[float, Endpoint]] = []
    counts: Counter[tuple[str, int]] = Counter()
    now = 0.0
    for _ in range(30_000):
        now += interval
        while in_flight and in_flight[0][0] <= now:
            done, finished = in_flight.pop(0)
            lb.end(finished, done, rtt=0.01 * noise.uniform(0.9, 1.1), ok=True)
        ep = lb.pick(now)
        assert ep is not None
        lb.begin(ep)
        counts[ep.address] += 1
        in_flight.append((now + 0.01, ep))
    for address, weight in ((A, 1), (B, 2), (C, 3)):
        assert counts[address] / 30_000 == pytest.approx(weight / 6, abs=tolerance)


def test_a_slow_endpoint_gets_far_fewer_picks() -> None:
    lb = balancer([(A, None, 1), (B, None, 1), (C, None, 1)])
    latency = {A: 0.01, B: 0.01, C: 0.2}
    counts: Counter[tuple[str, int]] = Counter()
    now = 0.0
    for _ in range(10_000):  # 100 requests/s, one at a time, for 100 s
        now += 0.01
        ep = lb.pick(now)
        assert ep is not None
        lb.begin(ep)
        lb.end(ep, now, rtt=latency[ep.address], ok=True)
        counts[ep.address] += 1
    assert counts[C] < 0.05 * 10_000
    assert counts[C] > 0  # probed again as its estimate decays
    assert counts[A] > 0.4 * 10_000
    assert counts[B] > 0.4 * 10_000


def test_pending_requests_spread_the_load() -> None:
    lb = balancer([(A, None, 1), (B, None, 1)])
    first = lb.pick(0.0)
    assert first is not None
    for _ in range(5):
        lb.begin(first)
    picks = [lb.pick(0.0) for _ in range(1000)]
    # Six times the load: the odds are 36 to 1 against the busy one (a soft P2C, see Balancer.pick).
    assert sum(ep is first for ep in picks) < 60


def test_ejected_and_avoided_endpoints_are_not_picked() -> None:
    lb = balancer([(A, None, 1), (B, None, 1), (C, None, 1)])
    a = lb.endpoints[0]
    eject(lb, a, 0.0)
    assert lb.ready(0.0) == 2
    assert lb.ejected(0.0) == 1
    picks = {ep.address for _ in range(200) if (ep := lb.pick(0.5, avoid={B})) is not None}
    assert picks == {C}
    # Every candidate avoided: fall back to the avoided ones that are not ejected.
    picks = {ep.address for _ in range(200) if (ep := lb.pick(0.5, avoid={B, C})) is not None}
    assert picks == {B, C}
    assert lb.next_return(0.5) == 1.0
    assert lb.pick(1.0, avoid={B, C}) is a
    assert lb.next_return(1.0) is None


def test_max_ejected_percent_keeps_endpoints_in() -> None:
    lb = balancer([(A, None, 1), (B, None, 1), (C, None, 1)])
    a, b, c = lb.endpoints
    eject(lb, a, 0.0)
    for _ in range(10):  # 50% of 3: one at a time
        lb.begin(b)
        assert not lb.end(b, 0.0, rtt=None, ok=False)
    assert lb.ejected(0.0) == 1
    assert b.failures == 10
    assert b.requests == 10
    assert b.pending == 0
    # Once the first is back, the next failure of the other one ejects it.
    lb.begin(b)
    assert lb.end(b, 1.0, rtt=None, ok=False)
    assert lb.ejected(1.0) == 1
    assert c.health.ejections == 0


def test_all_ejected_gives_none() -> None:
    lb = balancer([(A, None, 1), (B, None, 1)], settings=EVERY_ONE)
    for ep in lb.endpoints:
        eject(lb, ep, 0.0)
    assert lb.pick(0.0) is None
    assert lb.ready(0.0) == 0
    assert lb.next_return(0.0) == 1.0


def test_update_keeps_the_state_of_endpoints_that_stay() -> None:
    lb = balancer([(A, None, 1), (B, None, 1)])
    a, b = lb.endpoints
    lb.begin(a)
    lb.end(a, 1.0, rtt=0.5, ok=True)
    lb.begin(b)
    removed = lb.update([(A, "spiffe://a", 4), (C, None, 1)], 2.0, SETTINGS)
    assert removed == [b]
    assert lb.endpoints[0] is a
    assert (a.identity, a.weight, a.requests) == ("spiffe://a", 4, 1)
    assert a.ewma.estimate(1.0) == 0.5
    assert [ep.address for ep in lb.endpoints] == [A, C]
    # The removed endpoint drains: its request ends without touching the live set.
    assert not lb.end(b, 3.0, rtt=None, ok=False)
    assert b.pending == 0
    assert {ep.address for _ in range(50) if (ep := lb.pick(3.0)) is not None} <= {A, C}


def test_update_rejects_bad_lists_and_leaves_the_balancer_alone() -> None:
    lb = balancer([(A, None, 1)])
    with pytest.raises(ValueError, match=r"10\.0\.0\.2:80 is listed twice"):
        lb.update([(B, None, 1), (B, None, 1)], 0.0, SETTINGS)
    with pytest.raises(ValueError, match="weight"):
        lb.update([(B, None, 0)], 0.0, SETTINGS)
    with pytest.raises(ValueError, match="max_ejected_percent"):
        too_many = SETTINGS._replace(max_ejected_percent=101)
        lb.update([(B, None, 1)], 0.0, too_many)
    assert [ep.address for ep in lb.endpoints] == [A]


endpoint_lists = st.lists(
    st.tuples(st.integers(1, 20), st.integers(1, 5), st.booleans(), st.integers(0, 3)), min_size=1, max_size=8
)


@given(endpoint_lists, st.sets(st.integers(1, 20)), st.integers(0, 2**32))
def test_p2c_never_picks_an_ejected_or_avoided_endpoint_when_another_is_available(
    spec: list[tuple[int, int, bool, int]], avoid_hosts: set[int], seed: int
) -> None:
    unique = {host: (weight, eject_it, pending) for host, weight, eject_it, pending in spec}
    lb = balancer([((f"10.0.0.{h}", 80), None, w) for h, (w, _, _) in unique.items()], seed=seed, settings=EVERY_ONE)
    for ep, (_, eject_it, pending) in zip(lb.endpoints, unique.values(), strict=True):
        if eject_it:
            eject(lb, ep, 0.0)
        ep.pending = pending
    avoid = {(f"10.0.0.{h}", 80) for h in avoid_hosts}
    ready = [ep for ep in lb.endpoints if not ep.health.ejected(0.0)]
    preferred = [ep for ep in ready if ep.address not in avoid]
    for _ in range(20):
        picked = lb.pick(0.0, avoid=avoid)
        if not ready:
            assert picked is None
            continue
        assert picked is not None
        assert picked in (preferred or ready)
