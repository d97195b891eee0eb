"""Services compiled for the data plane: which virtual address:port is which service port, its endpoints with
their resolved ports, and its routes ready to match a request.

Pure: no I/O. Built once per applied policy (``PolicyIndex``); a lookup is one dict probe, a route match a few
string comparisons. The balancer's live state (latencies, ejections) is not here: it belongs to the proxy and
outlives policy generations, keyed by ``ServicePlan.key``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from typing import Final

from policy.authz import path_matches
from policy.model import (
    Balancer,
    GrpcStatus,
    OutlierDetection,
    RequestQueue,
    Retry,
    RetryBudget,
    RetryCondition,
    Route,
    Service,
    ServicePort,
)

DEFAULT_ROUTE: Final = "default"
"""The ``route_name`` of requests no route of their service matches."""

GRPC_CODES: Final = {
    GrpcStatus.CANCELLED: 1,
    GrpcStatus.DEADLINE_EXCEEDED: 4,
    GrpcStatus.RESOURCE_EXHAUSTED: 8,
    GrpcStatus.INTERNAL: 13,
    GrpcStatus.UNAVAILABLE: 14,
}
"""gRPC's numeric status codes (grpc/doc/statuscodes.md)."""


def parse_ip(text: str) -> str:
    """``text`` as an IP address in its canonical spelling; ValueError says why it is not one."""
    # ip_address() only says "does not appear to be an IPv4 or IPv6 address"; the family's own parser says why.
    family: type[ipaddress.IPv4Address | ipaddress.IPv6Address] = (
        ipaddress.IPv6Address if ":" in text else ipaddress.IPv4Address
    )
    return str(family(text))


def parse_endpoint(text: str) -> tuple[str, int | None]:
    """An endpoint address: ``IP``, ``IPv4:PORT`` or ``[IPv6]:PORT`` -> (canonical IP, port or None).

    Raises ValueError with the reason (a bare IPv6 address with a port must be bracketed to be unambiguous)."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError("expected [IPv6]:PORT")
        return _v6(host), _port(rest[1:])
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return str(ipaddress.IPv4Address(host)), _port(port)
    try:
        return parse_ip(text), None
    except ValueError as exc:
        if ":" not in text:
            raise
        # Many colons and no brackets: perhaps an IPv6 address with a port, which only brackets make unambiguous.
        raise ValueError(f"{exc}; an IPv6 address with a port is written [IPv6]:PORT") from None


def _v6(text: str) -> str:
    return str(ipaddress.IPv6Address(text))


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise ValueError(f"the port must be a number from 1 to 65535, got {text!r}")
    return int(text)


def format_address(ip: str, port: int) -> str:
    """``ip:port``, with IPv6 in brackets."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class EndpointPlan:
    """One endpoint of one service port: where to connect and what it must prove."""

    __slots__ = ("identity", "ip", "port", "weight")

    def __init__(self, ip: str, port: int, identity: str | None, weight: int) -> None:
        self.ip = ip
        self.port = port
        self.identity = identity
        self.weight = weight

    @property
    def address(self) -> tuple[str, int]:
        return (self.ip, self.port)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EndpointPlan) and (other.ip, other.port, other.identity, other.weight) == (
            self.ip,
            self.port,
            self.identity,
            self.weight,
        )

    def __hash__(self) -> int:
        return hash((self.ip, self.port, self.identity, self.weight))

    def __repr__(self) -> str:
        return f"EndpointPlan({format_address(self.ip, self.port)}, identity={self.identity!r}, weight={self.weight})"


class RetryPlan:
    """A route's retry settings, as sets for the per-failure decision."""

    __slots__ = ("conditions", "grpc_codes", "max_attempts", "max_body", "per_try_timeout", "statuses")

    def __init__(self, retry: Retry) -> None:
        self.conditions = frozenset(retry.conditions)
        self.statuses = frozenset(retry.statuses)
        self.grpc_codes = frozenset(GRPC_CODES[status] for status in retry.grpc_statuses)
        self.max_attempts = retry.max_attempts
        self.per_try_timeout = retry.per_try_timeout.seconds if retry.per_try_timeout is not None else None
        self.max_body = retry.max_body

    def on(self, condition: RetryCondition) -> bool:
        return condition in self.conditions


class RoutePlan:
    """One route (or a service's default route) compiled."""

    __slots__ = ("methods", "name", "paths", "retry", "timeout")

    def __init__(
        self, name: str, paths: Iterable[str], methods: Iterable[str], timeout: float | None, retry: RetryPlan
    ):
        self.name = name
        self.paths = tuple(paths)
        self.methods = frozenset(methods)
        self.timeout = timeout
        self.retry = retry

    def matches(self, method: str, path: str) -> bool:
        if self.methods and method not in self.methods:
            return False
        return not self.paths or any(path_matches(pattern, path) for pattern in self.paths)


class ServicePlan:
    """One port of one service, for one policy generation."""

    __slots__ = (
        "balancer",
        "budget",
        "default_route",
        "endpoints",
        "name",
        "outlier",
        "port",
        "port_name",
        "queue",
        "routes",
    )

    def __init__(self, service: Service, port: ServicePort) -> None:
        self.name = service.name
        self.port = port.port
        self.port_name = port.name
        target = port.target_port if port.target_port is not None else port.port
        self.endpoints = tuple(_endpoints(service, target))
        default_retry = RetryPlan(service.retry)
        default_timeout = service.timeout.seconds if service.timeout is not None else None
        self.routes = tuple(_route(route, default_timeout, default_retry) for route in service.routes)
        self.default_route = RoutePlan(DEFAULT_ROUTE, (), (), default_timeout, default_retry)
        self.budget: RetryBudget = service.retry_budget
        self.balancer: Balancer = service.balancer
        self.outlier: OutlierDetection = service.outlier_detection
        self.queue: RequestQueue = service.queue

    @property
    def key(self) -> tuple[str, int]:
        """What identifies this service port across policy generations (the balancer's state is kept under it)."""
        return (self.name, self.port)

    def route(self, method: str, target: str) -> RoutePlan:
        """The route of a request: the first that matches its method and path (the query ignored), else the
        default route."""
        if self.routes:
            path = target.partition("?")[0]
            for route in self.routes:
                if route.matches(method, path):
                    return route
        return self.default_route

    def __str__(self) -> str:
        """``name:port``, as /connections, meshctl and the proxy's messages name a service port."""
        return f"{self.name}:{self.port}"

    def __repr__(self) -> str:
        return f"ServicePlan({self}, {len(self.endpoints)} endpoints)"


def _endpoints(service: Service, target_port: int) -> Iterator[EndpointPlan]:
    for endpoint in service.endpoints:
        ip, port = parse_endpoint(endpoint.address)
        yield EndpointPlan(ip, port if port is not None else target_port, endpoint.identity, endpoint.weight)


def _route(route: Route, default_timeout: float | None, default_retry: RetryPlan) -> RoutePlan:
    timeout = route.timeout.seconds if route.timeout is not None else default_timeout
    retry = RetryPlan(route.retry) if route.retry is not None else default_retry
    return RoutePlan(route.name, route.paths, route.methods, timeout, retry)


class ServiceTable:
    """Every service port by (virtual IP, port), and the identity each endpoint must prove by (IP, port)."""

    __slots__ = ("_by_address", "endpoint_identities", "endpoint_ports", "plans")

    def __init__(self, services: Iterable[Service]) -> None:
        self._by_address: dict[tuple[str, int], ServicePlan] = {}
        self.plans: tuple[ServicePlan, ...] = ()
        self.endpoint_identities: dict[tuple[str, int], str] = {}
        self.endpoint_ports: dict[tuple[str, int], int] = {}
        """Each endpoint's service port: its connections get that port's settings (connect timeout, ...)."""
        plans = []
        for service in services:
            for port in service.ports:
                plan = ServicePlan(service, port)
                plans.append(plan)
                for address in service.addresses:
                    # The first service wins; the semantic checks refuse a bundle that lists an address twice.
                    self._by_address.setdefault((parse_ip(address), port.port), plan)
                for endpoint in plan.endpoints:
                    self.endpoint_ports.setdefault(endpoint.address, plan.port)
                    if endpoint.identity is not None:
                        self.endpoint_identities.setdefault(endpoint.address, endpoint.identity)
        self.plans = tuple(plans)

    def lookup(self, ip: str, port: int) -> ServicePlan | None:
        """The service port at ``ip``:``port`` (IPv4-mapped IPv6 spellings included), or None."""
        if not self._by_address:
            return None
        found = self._by_address.get((ip, port))
        if found is None and ip.startswith("::ffff:"):
            found = self._by_address.get((ip[len("::ffff:") :], port))
        return found
