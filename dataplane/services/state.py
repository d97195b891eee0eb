"""The live state of every service port: its balancer, retry budget and request queue.

State is keyed by ``ServicePlan.key`` (service name and port) and outlives policy generations: a reload hands
each state the new plan (``Services.state`` notices a plan it has not seen), endpoints that stay keep their
latency estimate and health, removed ones get no new traffic and ``on_removed`` closes their idle pooled
connections (busy ones finish what they carry: they drain, they are not cut).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Iterator, Sequence

import trio

from dataplane.balance.balancer import Balancer, BalancerSettings, Endpoint
from dataplane.balance.budget import RetryBudget
from dataplane.errors import NoEndpointError, QueueFullError
from dataplane.services.departures import Departures
from dataplane.telemetry.services import BalancerRow, ServiceCounters
from policy.services import ServicePlan, format_address

Address = tuple[str, int]


class ServiceState:
    """One service port."""

    def __init__(self, plan: ServicePlan, rng: random.Random, counters: ServiceCounters) -> None:
        now = trio.current_time()
        self.plan = plan
        self.counters = counters
        self.label = (plan.name, str(plan.port))
        settings = _balancer_settings(plan)
        self.balancer = Balancer(settings, rng=rng, now=now)
        self.balancer.update(_endpoint_list(plan), now, settings)
        self.budget = _budget(plan)
        self.in_flight = 0
        self.no_endpoint_since: float | None = None
        self.changed = trio.Event()

    def apply(self, plan: ServicePlan) -> list[Endpoint]:
        """A new generation's plan: endpoints updated (state kept for those that stay); the removed ones."""
        old, self.plan = self.plan, plan
        removed = self.balancer.update(_endpoint_list(plan), trio.current_time(), _balancer_settings(plan))
        if plan.budget != old.budget:
            self.budget = _budget(plan)
        self.changed.set()  # requests waiting for an endpoint look again
        self.changed = trio.Event()
        return removed

    def enter(self) -> None:
        """One more request (or connection attempt) in flight; QueueFullError past the queue's capacity."""
        if self.in_flight >= self.plan.queue.capacity:
            self.counters.shed_one(*self.label, "queue_full")
            raise QueueFullError(
                f"service {self.plan} has {self.in_flight} requests in flight, its queue's capacity: shed"
            )
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1

    async def pick(self, avoid: Sequence[Address]) -> Endpoint:
        """An endpoint to send to, avoiding ``avoid`` where another is available. With none available (none
        listed, or all ejected) waits up to the queue's fail-fast timeout for one, then NoEndpointError; while the
        service has had none for that long, fails at once (Linkerd's fail-fast)."""
        failfast = self.plan.queue.failfast.seconds
        while True:
            now = trio.current_time()
            endpoint = self.balancer.pick(now, avoid)
            if endpoint is not None:
                self.no_endpoint_since = None
                return endpoint
            if self.no_endpoint_since is None:
                self.no_endpoint_since = now
            give_up = self.no_endpoint_since + failfast
            if now >= give_up:
                self.counters.shed_one(*self.label, "no_endpoints")
                listed = len(self.plan.endpoints)
                why = "lists no endpoints" if listed == 0 else f"has all {listed} endpoints ejected"
                raise NoEndpointError(f"service {self.plan} {why}")
            wake = self.balancer.next_return(now)
            with trio.move_on_at(give_up if wake is None else min(wake, give_up)):
                await self.changed.wait()

    def row(self) -> BalancerRow:
        now = trio.current_time()
        return BalancerRow(
            parent_name=self.plan.name,
            parent_port=str(self.plan.port),
            ready=self.balancer.ready(now),
            ejected=self.balancer.ejected(now),
            queue_length=self.in_flight,
        )

    def connected(self, endpoint: Endpoint, rtt: float) -> None:
        self.balancer.observe(endpoint, trio.current_time(), rtt=rtt, ok=True)

    def ended(self, endpoint: Endpoint, *, rtt: float | None, ok: bool) -> None:
        """A request (or connection) to ``endpoint`` ended; counts an ejection it caused."""
        if self.balancer.end(endpoint, trio.current_time(), rtt=rtt, ok=ok):
            self.counters.ejected(*self.label, format_address(*endpoint.address))


class Services:
    """Every service port's state, created on first use."""

    def __init__(
        self,
        counters: ServiceCounters | None = None,
        *,
        on_removed: Callable[[list[Address]], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.counters = counters if counters is not None else ServiceCounters()
        self.departures = Departures()
        """Clients that leave while a service response is awaited (its ``run`` task belongs to the proxy)."""
        self._states: dict[tuple[str, int], ServiceState] = {}
        self._on_removed = on_removed
        self._rng = rng if rng is not None else random.Random()

    def state(self, plan: ServicePlan) -> ServiceState:
        """The state of ``plan``'s service port, brought up to ``plan`` (one identity test when it already is)."""
        state = self._states.get(plan.key)
        if state is None:
            state = self._states[plan.key] = ServiceState(plan, self._rng, self.counters)
        elif state.plan is not plan:
            removed = state.apply(plan)
            if removed and self._on_removed is not None:
                self._on_removed([endpoint.address for endpoint in removed])
        return state

    def get(self, name: str, port: int) -> ServiceState | None:
        """The state of a service port that has carried traffic (None before its first request)."""
        return self._states.get((name, port))

    def rows(self, current: Collection[tuple[str, int]] | None = None) -> Iterator[BalancerRow]:
        """Every service port's balancer at scrape time. With ``current`` (the keys the live policy has), the
        state of a service port a reload removed is forgotten once nothing of it is in flight."""
        if current is not None:
            for key in [key for key, state in self._states.items() if key not in current and not state.in_flight]:
                del self._states[key]
        for state in self._states.values():
            yield state.row()


def _endpoint_list(plan: ServicePlan) -> list[tuple[Address, str | None, int]]:
    return [(endpoint.address, endpoint.identity, endpoint.weight) for endpoint in plan.endpoints]


def _balancer_settings(plan: ServicePlan) -> BalancerSettings:
    outlier = plan.outlier
    return BalancerSettings(
        default_rtt=plan.balancer.default_rtt.seconds,
        decay=plan.balancer.decay.seconds,
        consecutive_failures=outlier.consecutive_failures,
        base_ejection=outlier.base_ejection.seconds,
        max_ejection=outlier.max_ejection.seconds,
        max_ejected_percent=outlier.max_ejected_percent,
    )


def _budget(plan: ServicePlan) -> RetryBudget:
    budget = plan.budget
    return RetryBudget(budget.ratio, budget.min_per_second, budget.ttl.seconds)
