"""One request (or one connection) to a service: its route, its tries on endpoints, its retries within the
budget, and its place in the request queue.

The proxy loops (HTTP/1.1, HTTP/2, TCP) drive it: ``endpoint()`` before each try, ``tried()`` after it,
``may_retry()`` when it failed, ``finish()`` once. Decisions (which endpoint, whether a failure is retryable,
whether the budget allows it) are the pure cores' (``dataplane.balance``); this object keeps the bookkeeping in
one place so the three loops cannot count differently.
"""

from __future__ import annotations

import math

import trio

from dataplane.balance.balancer import Endpoint
from dataplane.balance.grpc_timeout import format_grpc_timeout, parse_grpc_timeout
from dataplane.balance.retry_rule import Failure, retryable
from dataplane.errors import NoEndpointError
from dataplane.net.addr import SockAddr
from dataplane.services.state import Address, ServiceState
from dataplane.telemetry.services import RouteKey
from policy.services import RoutePlan


class ServiceCall:
    """Created per request (``ServiceState.enter`` already counted it: QueueFullError sheds it)."""

    __slots__ = (
        "_finished",
        "answered",
        "attempts",
        "current",
        "deadline",
        "method",
        "retried",
        "route",
        "route_key",
        "started",
        "state",
        "tried_on",
    )

    def __init__(self, state: ServiceState, route: RoutePlan, method: str, now: float | None = None) -> None:
        state.enter()
        self.state = state
        self.route = route
        self.method = method
        """The request's method (idempotent ones may be retried after a reset, a timeout or a status); "" for an
        opaque connection."""
        self.route_key: RouteKey = (*state.label, route.name)
        self.started = trio.current_time() if now is None else now
        self.deadline = self.started + route.timeout if route.timeout is not None else float("inf")
        """When the whole request (retries included) must have its response head: 504 after it."""
        self.attempts = 0
        self.tried_on: list[Address] = []
        self.current: Endpoint | None = None
        self.retried = False
        self.answered = False
        """The client got the endpoint's response, not a 5xx (nor a proxy error): what ``finish`` is told when
        the loop that ends the request does not pass ``ok`` itself."""
        self._finished = False
        state.budget.deposit(self.started)

    async def endpoint(self) -> SockAddr:
        """The endpoint for the next try (another one than those tried, where there is one); NoEndpointError
        when none is available within the fail-fast timeout or the request's deadline, whichever comes first."""
        if self.deadline == math.inf:
            return self._begin(await self.state.pick(self.tried_on))
        with trio.move_on_at(self.deadline):
            return self._begin(await self.state.pick(self.tried_on))
        why = f"service {self.state.plan} had no endpoint available within the request's deadline"
        raise NoEndpointError(why)

    def endpoint_now(self) -> SockAddr | None:
        """``endpoint()`` without waiting: None when none is available at once (the HTTP/1.1 engine's way)."""
        endpoint = self.state.balancer.pick(trio.current_time(), self.tried_on)
        return self._begin(endpoint) if endpoint is not None else None

    def begin_on(self, endpoint: Endpoint) -> SockAddr:
        """The first try goes to ``endpoint``, picked already (by ``ServiceRouting.call_now``)."""
        return self._begin(endpoint)

    def _begin(self, endpoint: Endpoint) -> SockAddr:
        self.state.balancer.begin(endpoint)
        self.current = endpoint
        self.attempts += 1
        self.tried_on.append(endpoint.address)
        return SockAddr(*endpoint.address)

    def tried(self, *, ok: bool, rtt: float | None = None) -> None:
        """The current try ended: ``ok`` unless it failed in a way that counts against the endpoint's health
        (connect failure, reset, timeout, 5xx); ``rtt`` its latency to the response head, when it had one."""
        endpoint, self.current = self.current, None
        if endpoint is not None:
            self.state.ended(endpoint, rtt=rtt, ok=ok)

    def connected(self, rtt: float) -> None:
        """An opaque connection's try succeeded after ``rtt`` seconds: its latency counts, and the connection
        keeps counting as load on the endpoint until ``finish``."""
        if self.current is not None:
            self.state.connected(self.current, rtt)

    def try_timeout(self) -> float:
        """The deadline of the current try's response head: the per-try timeout, within the route's deadline."""
        per_try = self.route.retry.per_try_timeout
        if per_try is None:
            return self.deadline
        return min(self.deadline, trio.current_time() + per_try)

    def retries_status(self, status: int) -> bool:
        """Whether the route lists this response status (then the head is looked at before it goes on)."""
        return status in self.route.retry.statuses

    def retries_grpc(self, code: int) -> bool:
        """Whether the route lists this gRPC status (of a trailers-only response)."""
        return code in self.route.retry.grpc_codes

    def limit_by_grpc_timeout(self, value: bytes | None) -> None:
        """A gRPC client's deadline (``grpc-timeout``) bounds the request like the route's timeout does."""
        if value is None:
            return
        seconds = parse_grpc_timeout(value)
        if seconds is not None:
            self.deadline = min(self.deadline, self.started + seconds)

    def grpc_timeout(self) -> bytes | None:
        """What is left of the deadline, as the ``grpc-timeout`` sent upstream (None: no deadline)."""
        if self.deadline == math.inf:
            return None
        return format_grpc_timeout(max(self.deadline - trio.current_time(), 0.0))

    def may_retry(self, failure: Failure, *, body_kept: bool, status: int = 0, grpc_status: int = -1) -> bool:
        """Whether the failed try is followed by another: the route retries this failure for this request, an
        attempt is left, the route's deadline has not passed and the budget allows it. Counted in the metrics."""
        plan = self.route.retry
        if not retryable(
            plan, failure, method=self.method, status=status, grpc_status=grpc_status, body_kept=body_kept
        ):
            return False
        counters = self.state.counters
        now = trio.current_time()
        if self.attempts >= plan.max_attempts or now >= self.deadline:
            counters.retry(self.route_key, "limit_exceeded")
            return False
        if not self.state.budget.withdraw(now):
            counters.retry(self.route_key, "overflow")
            return False
        counters.retry(self.route_key, "requests")
        self.retried = True
        return True

    def finish(self, *, ok: bool | None = None) -> None:
        """The request is over (answered, failed or abandoned); ``ok`` (by default ``answered``): the client got the
        endpoint's response and it is not a 5xx (a retried request counts as a retry success only then).
        Idempotent."""
        if self._finished:
            return
        self._finished = True
        if self.current is not None:
            self.tried(ok=True)  # abandoned mid-try (the client left): not the endpoint's failure
        if (self.answered if ok is None else ok) and self.retried:
            self.state.counters.retry(self.route_key, "successes")
        self.state.leave()
