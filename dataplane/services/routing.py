"""Which service a client connection's requests go to, looked up per request: a reload applies to the next
request of a connection already open (its requests in flight keep the plan they started with)."""

from __future__ import annotations

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
        return ServiceCall(self.services.state(plan), plan.route(method, target))
