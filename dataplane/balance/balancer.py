"""Endpoint choice for one service port: power of two choices over peak-EWMA cost, honouring weights.

Two distinct endpoints are drawn with probability proportional to their weights and the cheaper one wins
(cost = EWMA latency times the requests pending on it, plus one). Weight is applied once, in the draw: also
dividing the cost by the weight would make the heavier of any equally fast pair win every time, so an idle
or lightly loaded service would send nothing to its lightest endpoint instead of its share. On a tie the first
draw wins, so equally costly endpoints get traffic in proportion to their weights.

Endpoint objects are the live state (latency, health, pending requests) and survive policy reloads for every
address that stays; :meth:`Balancer.update` hands back the removed ones so their connections can drain.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Collection, Sequence

from dataplane.balance.ewma import PeakEwma
from dataplane.balance.outlier import Health, max_ejected

Address = tuple[str, int]


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


class Balancer:
    """The endpoints of one service port and the choice among them."""

    __slots__ = ("_by_address", "_max_ejected_percent", "_rng", "endpoints")

    def __init__(
        self,
        *,
        default_rtt: float,
        decay: float,
        consecutive_failures: int,
        base_ejection: float,
        max_ejection: float,
        max_ejected_percent: int,
        rng: random.Random,
        now: float,
    ) -> None:
        self._rng = rng
        self._by_address: dict[Address, Endpoint] = {}
        self.endpoints: tuple[Endpoint, ...] = ()
        self._max_ejected_percent = max_ejected_percent
        self.update(
            (),
            now,
            default_rtt=default_rtt,
            decay=decay,
            consecutive_failures=consecutive_failures,
            base_ejection=base_ejection,
            max_ejection=max_ejection,
            max_ejected_percent=max_ejected_percent,
        )

    def update(
        self,
        endpoints: Sequence[tuple[Address, str | None, int]],
        now: float,
        *,
        default_rtt: float,
        decay: float,
        consecutive_failures: int,
        base_ejection: float,
        max_ejection: float,
        max_ejected_percent: int,
    ) -> list[Endpoint]:
        """Replaces the endpoint list with ``(address, identity, weight)`` entries. Endpoints that stay keep their
        latency, health and counters (identity, weight and settings are updated); returns the removed ones."""
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
        first, second = self._draw_two(candidates)
        if second.ewma.cost(now, second.pending) < first.ewma.cost(now, first.pending):
            return second
        return first

    def _draw_two(self, candidates: list[Endpoint]) -> tuple[Endpoint, Endpoint]:
        """Two distinct candidates, each draw proportional to weight (the second among the rest)."""
        cumulative = list(itertools.accumulate(ep.weight for ep in candidates))
        total = cumulative[-1]
        i = bisect.bisect_right(cumulative, self._rng.random() * total)
        i = min(i, len(candidates) - 1)
        # Draw the second over the weights with the first left out: map a point in [0, total - w_i) past it.
        w_i = candidates[i].weight
        point = self._rng.random() * (total - w_i)
        start_i = cumulative[i] - w_i
        if point >= start_i:
            point += w_i
        j = min(bisect.bisect_right(cumulative, point), len(candidates) - 1)
        if j == i:  # only through float rounding at a boundary
            j = (i + 1) % len(candidates)
        return candidates[i], candidates[j]

    def begin(self, ep: Endpoint) -> None:
        """A request (or connection) is sent to ``ep``."""
        ep.pending += 1
        ep.requests += 1

    def end(self, ep: Endpoint, now: float, *, rtt: float | None, ok: bool) -> bool:
        """The request sent to ``ep`` ended; ``rtt`` (when known) feeds the latency estimate, also for failures (a
        slow failure is slow). Returns True when this failure ejected the endpoint."""
        ep.pending = max(0, ep.pending - 1)
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
