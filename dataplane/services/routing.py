"""Which service a client connection's requests go to, looked up per request: a reload applies to the next
request of a connection already open (its requests in flight keep the plan they started with)."""

from __future__ import annotations

import trio

from dataplane.net.addr import SockAddr
from dataplane.services.call import ServiceCall
from dataplane.services.state import Services
from policy.store import PolicyStore


class ServiceRouting:
    """The requests of one client connection whose original destination is a service address."""

    __slots__ = ("dst", "services", "store")

    def __init__(self, services: Services, store: PolicyStore, dst: SockAddr) -> None:
        self.services = services
        self.store = store
        self.dst = dst

    def call(self, method: str, target: str) -> ServiceCall | None:
        """A call for one request (QueueFullError when shed); None when a reload made ``dst`` no service: the
        request then goes to ``dst`` itself, as for any destination."""
        plan = self.store.current.index.service(self.dst.ip, self.dst.port)
        if plan is None:
            return None
        return ServiceCall(self.services.state(plan), plan.route(method, target), method)

    def call_now(self, method: str, target: str) -> tuple[ServiceCall, SockAddr] | None:
        """A call and its first endpoint for the HTTP/1.1 engine, which does not wait for an endpoint; None when
        this request needs ``serve_http1``: no longer a service, a full queue (503) or no endpoint available now
        (waiting for one, fail-fast)."""
        plan = self.store.current.index.service(self.dst.ip, self.dst.port)
        if plan is None:
            return None
        route = plan.route(method, target)
        state = self.services.state(plan)
        if state.in_flight >= plan.queue.capacity:
            return None
        now = trio.current_time()
        endpoint = state.balancer.pick(now)
        if endpoint is None:
            return None
        call = ServiceCall(state, route, method, now)
        return call, call.begin_on(endpoint)
