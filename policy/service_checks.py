"""Cross-field checks of ``outbound.services``: addresses, ports, endpoints, routes, retries and the durations of
the balancer, outlier detection, queue and retry budget.

Pure: no I/O. Runs on the checked document like ``policy.semantics`` (which calls it), skipping values that
failed their type check. Each problem names the field and says why the value cannot work and what to write
instead; what ``ServiceTable`` would otherwise resolve silently (the first service or endpoint wins) is refused.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterator
from typing import Final, TypeVar

from policy import checked
from policy.duration import Duration
from policy.model import GrpcStatus, OutlierDetection, RetryCondition
from policy.problems import Problem, field_path, item_path, show
from policy.services import DEFAULT_ROUTE, format_address, parse_endpoint, parse_ip

_SERVICES: Final = "outbound.services"
_OUTLIER_DEFAULTS: Final = OutlierDetection()
_NO_EJECTION: Final = "eject a failing endpoint for no time at all (to never eject, set max_ejected_percent: 0)"
# What a zero duration would do, by (field of the service, field), said so the operator sees why it is refused.
_ZERO_EFFECT: Final = {
    ("retry_budget", "ttl"): "count no request towards the ratio, so only min_per_second retries would be left "
    "(to allow only those, set ratio: 0)",
    ("balancer", "default_rtt"): "make every endpoint that has not answered yet look infinitely fast, so it "
    "would draw every request",
    ("balancer", "decay"): "forget every latency at once, so slow endpoints could not be told from fast ones",
    ("outlier_detection", "base_ejection"): _NO_EJECTION,
    ("outlier_detection", "max_ejection"): _NO_EJECTION,
    ("queue", "failfast"): "answer 503 the moment no endpoint is ready, even during a brief ejection or a reload",
}
_TIMEOUT_EFFECT: Final = "answer every request 504 at once (use null to wait without limit)"
# Retried only on a later try: listed with max_attempts 1, they could never retry.
_NEEDS_A_SECOND_TRY: Final = (RetryCondition.RESET, RetryCondition.PER_TRY_TIMEOUT)

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = tuple[str, int]
_T = TypeVar("_T", int, RetryCondition, GrpcStatus)


class _Bundle:
    """What the checks of earlier services leave for later ones, and the outbound exclusions."""

    def __init__(self, outbound: dict[str, object]) -> None:
        self.names: dict[str, str] = {}
        """Service name -> the path of the service that has it."""
        self.owners: dict[_Address, tuple[str, str]] = {}
        """Virtual address:port -> (its service's name, the path of the address)."""
        self.identities: dict[_Address, tuple[str, str]] = {}
        """Endpoint address:port -> (the identity it must prove, the path of that identity)."""
        self.excluded_ports: dict[int, str] = {}
        for index, item in enumerate(checked.items(outbound.get("exclude_ports"))):
            port = checked.port(item)
            if port is not None:
                self.excluded_ports.setdefault(port, item_path("outbound.exclude_ports", index))
        self.excluded_networks: list[tuple[_Network, str]] = []
        for index, item in enumerate(checked.items(outbound.get("exclude_cidrs"))):
            if isinstance(item, str):
                try:
                    network = ipaddress.ip_network(item, strict=True)
                except ValueError:
                    continue  # reported by the exclude_cidrs check
                self.excluded_networks.append((network, item_path("outbound.exclude_cidrs", index)))


def check_services(outbound: dict[str, object]) -> Iterator[Problem]:
    """Every problem of ``outbound.services`` (the checked ``outbound`` mapping), service by service."""
    bundle = _Bundle(outbound)
    for path, service in checked.entries(outbound.get("services"), _SERVICES):
        yield from _ServiceCheck(service, path, bundle).run()


class _ServiceCheck:
    """The checks of one service, in the order of its fields."""

    def __init__(self, service: dict[str, object], path: str, bundle: _Bundle) -> None:
        self.service = service
        self.path = path
        self.bundle = bundle
        self.problems: list[Problem] = []
        name = service.get("name")
        self.name = name if isinstance(name, str) else path
        self.ports: dict[int, int | None] = {}
        """Service port -> the endpoints' port (its target_port), None if that failed its type check."""
        self.port_count = len(checked.items(service.get("ports")))
        self.addresses: dict[str, str] = {}
        """Canonical virtual IP -> its path."""

    def field(self, name: str) -> str:
        return field_path(self.path, name)

    def refuse(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def run(self) -> list[Problem]:
        self.check_name()
        # The addresses come first in the document, but their checks need the ports.
        port_problems = self.read_ports()
        self.check_addresses()
        self.problems += port_problems
        self.check_endpoints()
        self.check_routes()
        self.check_durations()
        return self.problems

    def check_name(self) -> None:
        name = self.service.get("name")
        if not isinstance(name, str):
            return
        other = self.bundle.names.setdefault(name, self.path)
        if other != self.path:
            self.refuse(
                self.field("name"),
                f"service {name!r} is already defined by {other}; a name is one service's only (metrics and "
                "meshctl name services by it): rename one, or merge the two",
            )

    def read_ports(self) -> list[Problem]:
        problems: list[Problem] = []
        listed: dict[int, str] = {}
        named: dict[str, str] = {}
        for path, fields in checked.entries(self.service.get("ports"), self.field("ports")):
            name = fields.get("name")
            if isinstance(name, str) and name:
                other = named.setdefault(name, path)
                if other != path:
                    problems.append(
                        Problem(
                            field_path(path, "name"),
                            f"port name {name!r} is already used by {other}; name each port of a service "
                            "differently (meshctl and metrics show it)",
                        )
                    )
            port = checked.port(fields.get("port"))
            if port is None:
                continue
            if port in listed:
                problems.append(
                    Problem(field_path(path, "port"), f"port {port} is already listed by {listed[port]}; list it once")
                )
                continue
            listed[port] = path
            target = fields.get("target_port")
            self.ports[port] = port if target is None else checked.port(target)
            excluded = self.bundle.excluded_ports.get(port)
            if excluded is not None:
                problems.append(
                    Problem(
                        field_path(path, "port"),
                        f"port {port} is also in {excluded}, so mesh-init leaves connections to it unintercepted "
                        "and this service port would never be used: remove it from one of the two",
                    )
                )
        return problems

    def check_addresses(self) -> None:
        addresses_path = self.field("addresses")
        for index, text in enumerate(checked.items(self.service.get("addresses"))):
            if not isinstance(text, str):
                continue
            path = item_path(addresses_path, index)
            why, ip = _why_not_a_service_address(text)
            if why is not None:
                self.refuse(path, why)
                continue
            other = self.addresses.setdefault(ip, path)
            if other != path:
                self.refuse(path, f"{ip} is listed twice (also {other}); list it once")
                continue
            self.check_exclusion(ip, path)
            self.claim(ip, path)

    def check_exclusion(self, ip: str, path: str) -> None:
        address = ipaddress.ip_address(ip)
        for network, excluded in self.bundle.excluded_networks:
            if address.version == network.version and address in network:
                self.refuse(
                    path,
                    f"{ip} lies in {excluded} ({network}), so mesh-init leaves connections to it unintercepted "
                    "and the service would never be used: pick an address outside it, or narrow the exclusion",
                )
                return

    def claim(self, ip: str, path: str) -> None:
        """Make ``ip`` on each of the service's ports this service's, refusing those another service has."""
        taken: dict[tuple[str, str], list[int]] = {}
        for port in self.ports:
            owner = self.bundle.owners.setdefault((ip, port), (self.name, path))
            if owner[1] != path:
                taken.setdefault(owner, []).append(port)
        for (other_name, other_path), ports in taken.items():
            listed = ", ".join(str(port) for port in ports)
            self.refuse(
                path,
                f"{ip} on port{'s' if len(ports) > 1 else ''} {listed} already belongs to service "
                f"{other_name!r} ({other_path}); an address:port belongs to one service only, else which "
                "service a connection meant would be a guess: give one of them another address or port",
            )

    def check_endpoints(self) -> None:
        seen: dict[_Address, str] = {}
        for path, fields in checked.entries(self.service.get("endpoints"), self.field("endpoints")):
            identity = fields.get("identity")
            checked_identity = list(checked.check_pattern(identity, field_path(path, "identity")))
            resolved = self.resolve_endpoint(fields.get("address"), field_path(path, "address"), seen, path)
            self.problems += checked_identity
            if isinstance(identity, str) and not checked_identity:
                self.check_identity(resolved, identity, field_path(path, "identity"))

    def resolve_endpoint(self, text: object, path: str, seen: dict[_Address, str], endpoint: str) -> list[_Address]:
        """The address:ports an endpoint stands for (one per service port), refusing the ones it cannot."""
        if not isinstance(text, str):
            return []
        try:
            ip, port = parse_endpoint(text)
        except ValueError as exc:
            self.refuse(
                path,
                f"{show(text)} is not an endpoint address (IP, IPv4:PORT or [IPv6]:PORT; host names are not "
                f"resolved): {exc}",
            )
            return []
        if port is not None and self.port_count != 1:
            self.refuse(
                path,
                f"{show(text)} names a port, but this service has {self.port_count} ports, which the endpoint "
                f"would serve alike: write the IP alone ({ip}) and give each service port its target_port",
            )
            return []
        targets = [port] if port is not None else self.ports.values()
        resolved = sorted({(ip, target) for target in targets if target is not None})
        for address in resolved:
            other = seen.setdefault(address, endpoint)
            if other != endpoint:
                self.refuse(
                    path,
                    f"{ip if len(resolved) > 1 else format_address(*address)} is already the endpoint {other}; "
                    "list it once (with the sum of "
                    "the two weights, to keep its share)",
                )
                return []
        for ip_port in resolved:
            if ip_port[0] in self.addresses and ip_port[1] in self.ports:
                self.refuse(
                    path,
                    f"{format_address(*ip_port)} is this service's own address "
                    f"({self.addresses[ip_port[0]]}) and port: its traffic would be sent back to the service, a "
                    "loop; list the address of a pod that serves it",
                )
                return []
        return resolved

    def check_identity(self, resolved: list[_Address], identity: str, path: str) -> None:
        for address in resolved:
            other, other_path = self.bundle.identities.setdefault(address, (identity, path))
            if other != identity:
                self.refuse(
                    path,
                    f"{format_address(*address)} is also an endpoint that must prove {other!r} ({other_path}); "
                    "an address has one identity: give both entries the same",
                )
                return

    def check_routes(self) -> None:
        """Route names, timeouts and retries; the service's own timeout and retry (used by the requests no
        route, or no route's own setting, covers) last, as in the document."""
        timeout = _Timeout.of(self.service, self.field("timeout"), "the service's timeout")
        retry = checked.fields(self.service.get("retry"))
        names: dict[str, str] = {}
        for path, route in checked.entries(self.service.get("routes"), self.field("routes")):
            self.check_route_name(route.get("name"), field_path(path, "name"), names, path)
            own = _Timeout.of(route, field_path(path, "timeout"), "the route's timeout")
            self.check_timeout(own)
            own_retry = route.get("retry")
            if own_retry is None:
                if own is not None:
                    # The route keeps the service's retry but gets a timeout of its own.
                    self.check_per_try(retry, self.field("retry"), own, inherited=True)
                continue
            self.check_retry(checked.fields(own_retry), field_path(path, "retry"), own or timeout)
        self.check_timeout(timeout)
        self.check_retry(retry, self.field("retry"), timeout)

    def check_timeout(self, timeout: _Timeout | None) -> None:
        if timeout is not None and timeout.value.seconds == 0:
            self.refuse(timeout.path, _zero(timeout.value, "timeout", _TIMEOUT_EFFECT))

    def check_route_name(self, name: object, path: str, names: dict[str, str], route: str) -> None:
        if not isinstance(name, str):
            return
        if name == DEFAULT_ROUTE:
            self.refuse(
                path,
                f"{DEFAULT_ROUTE!r} is the route_name of the requests no route matches; name this route "
                "differently so the two are told apart in metrics",
            )
            return
        other = names.setdefault(name, route)
        if other != route:
            self.refuse(
                path,
                f"route name {name!r} is already used by {other}; name each route of a service differently "
                "(metrics label requests by it)",
            )

    def check_retry(self, retry: dict[str, object], path: str, timeout: _Timeout | None) -> None:
        self.check_per_try(retry, path, timeout, inherited=False)
        conditions = self.unique(retry.get("conditions"), field_path(path, "conditions"), RetryCondition)
        statuses = self.unique(retry.get("statuses"), field_path(path, "statuses"), int)
        grpc = self.unique(retry.get("grpc_statuses"), field_path(path, "grpc_statuses"), GrpcStatus)
        for index, condition in enumerate(conditions):
            if condition is RetryCondition.PER_TRY_TIMEOUT and retry.get("per_try_timeout") is None:
                self.refuse(
                    item_path(field_path(path, "conditions"), index),
                    "per-try-timeout retries a try that waited per_try_timeout for its response, but no "
                    "per_try_timeout is set: set one (shorter than the route's timeout), or remove the condition",
                )
        if retry.get("max_attempts") == 1:
            listed = [condition.value for condition in conditions if condition in _NEEDS_A_SECOND_TRY]
            listed += [str(status) for status in statuses]
            listed += [status.value for status in grpc]
            if listed:
                self.refuse(
                    field_path(path, "max_attempts"),
                    f"max_attempts 1 never retries, so {', '.join(listed)} could never be retried: raise "
                    "max_attempts, or remove them",
                )

    def check_per_try(self, retry: dict[str, object], path: str, timeout: _Timeout | None, *, inherited: bool) -> None:
        per_try = checked.duration(retry.get("per_try_timeout"))
        if per_try is None:
            return
        per_try_path = field_path(path, "per_try_timeout")
        if per_try.seconds == 0:
            if not inherited:
                self.refuse(per_try_path, _zero(per_try, "per_try_timeout", "time out every try at once"))
            return
        if timeout is None or timeout.value.seconds == 0 or per_try.seconds < timeout.value.seconds:
            return
        if inherited:
            self.refuse(
                timeout.path,
                f"{timeout.value} is not longer than the per-try timeout of the service's retry, which this route "
                f"uses ({per_try} at {per_try_path}): no try could time out before the request does; give the "
                "route a retry of its own with a shorter per_try_timeout",
            )
        else:
            self.refuse(
                per_try_path,
                f"{per_try} is not shorter than {timeout.what} ({timeout.value} at {timeout.path}): no try could "
                "time out before the whole request does; make it shorter, or remove it",
            )

    def unique(self, values: object, path: str, kind: type[_T]) -> list[_T]:
        """The listed values that passed their type check, refusing repeats."""
        seen: dict[_T, str] = {}
        for index, value in enumerate(checked.items(values)):
            if not isinstance(value, kind):
                continue
            at = item_path(path, index)
            other = seen.setdefault(value, at)
            if other != at:
                self.refuse(at, f"{_spelled(value)} is already listed by {other}; list it once")
        return list(seen)

    def check_durations(self) -> None:
        """Zero where zero is meaningless, and ejections whose first is longer than the longest."""
        for (parent, name), effect in _ZERO_EFFECT.items():
            value = checked.duration(checked.fields(self.service.get(parent)).get(name))
            if value is not None and value.seconds == 0:
                self.refuse(field_path(self.field(parent), name), _zero(value, name, effect))
        outlier = checked.fields(self.service.get("outlier_detection"))
        base = checked.duration(outlier.get("base_ejection", _OUTLIER_DEFAULTS.base_ejection))
        longest = checked.duration(outlier.get("max_ejection", _OUTLIER_DEFAULTS.max_ejection))
        if base is None or longest is None or base.seconds <= longest.seconds:
            return
        at = "base_ejection" if "base_ejection" in outlier else "max_ejection"
        self.refuse(
            field_path(self.field("outlier_detection"), at),
            f"base_ejection {base} is longer than max_ejection {longest}, the longest an ejection may last: "
            "make base_ejection at most max_ejection",
        )


class _Timeout:
    """A request timeout that applies to a route, where it is set, and what to call it in a message."""

    __slots__ = ("path", "value", "what")

    def __init__(self, value: Duration, path: str, what: str) -> None:
        self.value = value
        self.path = path
        self.what = what

    @classmethod
    def of(cls, fields: dict[str, object], path: str, what: str) -> _Timeout | None:
        value = checked.duration(fields.get("timeout"))
        return cls(value, path, what) if value is not None else None


def _spelled(value: int | enum.Enum) -> str:
    """A listed value as the operator wrote it."""
    return str(value.value) if isinstance(value, enum.Enum) else str(value)


def _zero(value: Duration, kind: str, effect: str) -> str:
    return f"must be longer than zero, got {value}: a zero {kind} would {effect}"


def _why_not_a_service_address(text: str) -> tuple[str | None, str]:
    """(why ``text`` cannot be a service address or None, its canonical IP)."""
    if "/" in text:
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            pass
        else:
            if network.num_addresses == 1:
                return (
                    f"{show(text)} is a network of one address: write the address alone, {network.network_address}",
                    "",
                )
            return (
                f"{show(text)} is a network, but a service address is one virtual IP: list each address the "
                "service answers on",
                "",
            )
    try:
        ip = parse_ip(text)
    except ValueError as exc:
        return f"{show(text)} is not an IP address: {exc}", ""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return (
                f"{show(text)} is an IPv4-mapped IPv6 address: connections to it are IPv4 connections to "
                f"{address.ipv4_mapped}, so write {address.ipv4_mapped}",
                "",
            )
        if address.scope_id is not None:
            return (
                f"{show(text)} has a zone (%{address.scope_id}), which a connection's destination never "
                f"carries, so it would never match: write {ip.partition('%')[0]}",
                "",
            )
    return None, ip
