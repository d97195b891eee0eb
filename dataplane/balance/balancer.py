"""Endpoint choice for one service port: power of two choices over peak-EWMA cost, honouring weights.

Two distinct endpoints are drawn, each included with probability proportional to its weight (pair.py); two
whose costs are within ``NOISE_RATIO`` split evenly, otherwise the cheaper wins by odds of the square of the cost
ratio. The cost is the EWMA (plus ``default_rtt``) times (1 + pending / weight). Weight enters the cost
only through the pending requests: dividing the whole cost by the weight (Linkerd-style ``cost / weight``)
would make the heavier of two equally fast idle endpoints win every time, so a lightly loaded service would
send its lightest endpoint nothing instead of its share. Equally good endpoints go either way with equal chance,
which with the weighted inclusion gives them traffic exactly in proportion to their weights.

Endpoint objects are the live state (latency, health, pending requests) and survive policy reloads for every
address that stays; :meth:`Balancer.update` hands back the removed ones so their connections can drain.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from typing import NamedTuple

from dataplane.balance.ewma import PeakEwma
from dataplane.balance.outlier import Health, max_ejected
from dataplane.balance.pair import draw_pair

Address = tuple[str, int]

NOISE_RATIO = 2.0
"""Two endpoints whose costs are within this factor are taken as equally good (see ``Balancer.pick``); with the
``default_rtt`` (30 ms) added to every latency, spikes of tens of milliseconds on a fast endpoint stay inside it."""


class Endpoint:
    """Live state of one endpoint, kept across policy generations while it stays."""

    __slots__ = ("address", "ewma", "failures", "health", "identity", "pending", "requests", "weight")

    def __init__(self, address: Address, identity: str | None, weight: int, ewma: PeakEwma, health: Health) -> None:
        self.address = address
        self.identity = identity
        self.weight = weight
        self.ewma = ewma
        self.health = health
        self.pending = 0
        self.requests = 0
        """Requests (or connections) sent to it in total."""
        self.failures = 0
        """Of those, how many failed in total."""

    def __repr__(self) -> str:
        return f"Endpoint({self.address!r}, identity={self.identity!r}, weight={self.weight}, pending={self.pending})"


def _load(ep: Endpoint, now: float, mean_weight: float, floor: float) -> float:
    """The latency a new request can expect: the EWMA scaled by the requests already waiting per unit of weight
    (an endpoint of weight 3 with 3 pending is as busy as one of weight 1 with 1), so that equally fast
    endpoints carry requests in proportion to their weights under any load."""
    # The EWMA decays towards zero while an endpoint gets no requests (so a slow one is tried again). A light
    # endpoint naturally waits longer between requests: counted in full, that idle time would make it look a
    # little cheaper than a heavy one, and win every close comparison. Scaled by weight, equally fast endpoints
    # age alike.
    # ``floor`` (the service's default_rtt) is the latency resolution: differences well below it (1 ms against
    # 3 ms on a fast network) count for little, one far above it (200 ms against 2 ms) for nearly everything.
    latency = ep.ewma.estimate(now, idle_scale=ep.weight / mean_weight) + floor
    return latency * (1.0 + ep.pending / ep.weight)


class BalancerSettings(NamedTuple):
    """A service port's balancer, health and ejection settings (``policy.model.Balancer``/``OutlierDetection``)."""

    default_rtt: float
    decay: float
    consecutive_failures: int
    base_ejection: float
    max_ejection: float
    max_ejected_percent: int


class Balancer:
    """The endpoints of one service port and the choice among them."""

    __slots__ = ("_by_address", "_floor", "_max_ejected_percent", "_mean_weight", "_rng", "endpoints")

    def __init__(self, settings: BalancerSettings, *, rng: random.Random, now: float) -> None:
        self._rng = rng
        self._by_address: dict[Address, Endpoint] = {}
        self.endpoints: tuple[Endpoint, ...] = ()
        self._max_ejected_percent = settings.max_ejected_percent
        self._mean_weight = 1.0
        self.update((), now, settings)

    def update(
        self, endpoints: Sequence[tuple[Address, str | None, int]], now: float, settings: BalancerSettings
    ) -> list[Endpoint]:
        """Replaces the endpoint list with ``(address, identity, weight)`` entries. Endpoints that stay keep their
        latency, health and counters (identity, weight and settings are updated); returns the removed ones."""
        default_rtt, decay, max_ejected_percent = settings.default_rtt, settings.decay, settings.max_ejected_percent
        consecutive_failures = settings.consecutive_failures
        base_ejection, max_ejection = settings.base_ejection, settings.max_ejection
        if not 0 <= max_ejected_percent <= 100:
            raise ValueError(f"max_ejected_percent must be within 0..100, not {max_ejected_percent}")
        # Validate everything before changing anything: a bad list leaves the balancer as it was.
        PeakEwma(default_rtt, decay, now)
        Health(consecutive_failures, base_ejection, max_ejection)
        seen: set[Address] = set()
        for address, _identity, weight in endpoints:
            if address in seen:
                raise ValueError(f"endpoint {address[0]}:{address[1]} is listed twice")
            if weight < 1:
                raise ValueError(f"endpoint {address[0]}:{address[1]}: weight must be >= 1, not {weight}")
            seen.add(address)
        self._max_ejected_percent = max_ejected_percent
        self._floor = default_rtt
        kept: dict[Address, Endpoint] = {}
        for address, identity, weight in endpoints:
            ep = self._by_address.get(address)
            if ep is None:
                ep = Endpoint(
                    address,
                    identity,
                    weight,
                    PeakEwma(default_rtt, decay, now),
                    Health(consecutive_failures, base_ejection, max_ejection),
                )
            else:
                ep.identity = identity
                ep.weight = weight
                ep.ewma.decay = decay
                ep.health.consecutive_failures = consecutive_failures
                ep.health.base_ejection = base_ejection
                ep.health.max_ejection = max_ejection
            kept[address] = ep
        removed = [ep for address, ep in self._by_address.items() if address not in kept]
        self._by_address = kept
        self.endpoints = tuple(kept.values())
        self._mean_weight = sum(ep.weight for ep in self.endpoints) / len(self.endpoints) if self.endpoints else 1.0
        return removed

    def pick(self, now: float, avoid: Collection[Address] = ()) -> Endpoint | None:
        """Weighted P2C among the endpoints that are not ejected and not in ``avoid`` (when every candidate is
        avoided, among the avoided ones that are not ejected); None when every endpoint is ejected or there are
        none."""
        ready = [ep for ep in self.endpoints if not ep.health.ejected(now)]
        candidates = [ep for ep in ready if ep.address not in avoid] if avoid else ready
        if not candidates:
            candidates = ready
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        i, j = draw_pair([ep.weight for ep in candidates], self._rng)
        first, second = candidates[i], candidates[j]
        if first.ewma.observed != second.ewma.observed:
            # One has never answered: its default_rtt is a guess, not a measurement. Compare by load alone (a
            # new endpoint is tried soon, but not flooded while its first answers are on the way).
            first_load, second_load = 1.0 + first.pending / first.weight, 1.0 + second.pending / second.weight
        else:
            first_load = _load(first, now, self._mean_weight, self._floor)
            second_load = _load(second, now, self._mean_weight, self._floor)
        # Within NOISE_RATIO of each other the two are equally good (a coin flip, which with the weighted pair draw
        # gives each endpoint exactly its weight's share); beyond it the cheaper wins by odds of the squared cost
        # ratio (3x: 90%, 6x: 97%), so a slow or busy endpoint loses nearly every pair but is still tried now and
        # then. Without the band, peak-EWMA noise biases against the heaviest endpoint: it takes the most
        # samples, so it meets the most latency spikes, and each spike's peak stays for seconds.
        low, high = min(first_load, second_load), max(first_load, second_load)
        if high <= low * NOISE_RATIO:
            return first if self._rng.random() < 0.5 else second
        first_odds, second_odds = second_load * second_load, first_load * first_load
        return first if self._rng.random() * (first_odds + second_odds) < first_odds else second

    def begin(self, ep: Endpoint) -> None:
        """A request (or connection) is sent to ``ep``."""
        ep.pending += 1
        ep.requests += 1

    def end(self, ep: Endpoint, now: float, *, rtt: float | None, ok: bool) -> bool:
        """The request sent to ``ep`` ended; ``rtt`` (when known) feeds the latency estimate, also for failures (a
        slow failure is slow). Returns True when this failure ejected the endpoint."""
        ep.pending = max(0, ep.pending - 1)
        return self.observe(ep, now, rtt=rtt, ok=ok)

    def observe(self, ep: Endpoint, now: float, *, rtt: float | None, ok: bool) -> bool:
        """An outcome of ``ep`` without ending what it carries (an opaque connection just made stays open and keeps
        counting as load): the latency and the health, as ``end`` takes them."""
        if rtt is not None:
            ep.ewma.observe(rtt, now)
        if ok:
            ep.health.success()
            return False
        ep.failures += 1
        may_eject = self.ejected(now) + 1 <= max_ejected(len(self.endpoints), self._max_ejected_percent)
        # An endpoint removed by a reload drains: it is not ours to count against the bound, and ejecting it
        # changes nothing (it gets no new traffic anyway).
        if self._by_address.get(ep.address) is not ep:
            return False
        return ep.health.failure(now, may_eject)

    def ready(self, now: float) -> int:
        return sum(1 for ep in self.endpoints if not ep.health.ejected(now))

    def ejected(self, now: float) -> int:
        return sum(1 for ep in self.endpoints if ep.health.ejected(now))

    def next_return(self, now: float) -> float | None:
        """The earliest time an ejected endpoint comes back (for requests waiting for one), None if none is out."""
        returns = [
            ep.health.ejected_until
            for ep in self.endpoints
            if ep.health.ejected_until is not None and ep.health.ejected_until > now
        ]
        return min(returns, default=None)
