"""Hypothesis strategies for valid policies: any value an operator could write that decode_policy accepts."""

from __future__ import annotations

import ipaddress
import math

from hypothesis import strategies as st

from policy.duration import DURATION_PATTERN, Duration
from policy.model import (
    Balancer,
    Endpoint,
    GrpcStatus,
    InboundPolicy,
    OutboundPolicy,
    OutlierDetection,
    Policy,
    PortPolicy,
    Protocol,
    RequestQueue,
    Retry,
    RetryBudget,
    RetryCondition,
    Route,
    Service,
    ServicePort,
    Timeouts,
)

ports = st.integers(min_value=1, max_value=65535)
protocols = st.sampled_from(Protocol)
# Durations as operators write them (any number of digits and decimals), then parsed: exercises the canonical
# re-spelling in encode_policy. Zero and overflowing values are refused by decode_policy, so left out.
durations = (
    st.from_regex(DURATION_PATTERN, fullmatch=True)
    .map(Duration.parse)
    .filter(lambda duration: math.isfinite(duration.seconds) and duration.seconds > 0)
)
names = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=253)


@st.composite
def port_lists(draw: st.DrawFn) -> tuple[tuple[PortPolicy, ...], tuple[int, ...]]:
    """A direction's ``ports`` and ``exclude_ports``: each port once, and never in both."""
    configured = draw(st.lists(ports, unique=True, max_size=6))
    excluded = draw(st.lists(ports.filter(lambda port: port not in configured), unique=True, max_size=6))
    entries = tuple(
        PortPolicy(
            port=port,
            protocol=draw(st.none() | protocols),
            connect_timeout=draw(st.none() | durations),
            idle_timeout=draw(st.none() | durations),
            detect_timeout=draw(st.none() | durations),
        )
        for port in configured
    )
    return entries, tuple(excluded)


@st.composite
def networks(draw: st.DrawFn) -> tuple[str, ...]:
    """CIDR blocks without host bits where none lies inside another, in canonical or long IPv6 spelling."""
    kept: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    texts: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            net: ipaddress.IPv4Network | ipaddress.IPv6Network = ipaddress.IPv4Network(
                (draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 32))), strict=False
            )
        else:
            net = ipaddress.IPv6Network((draw(st.integers(0, 2**128 - 1)), draw(st.integers(0, 128))), strict=False)
        if any(net.overlaps(other) for other in kept if other.version == net.version):
            continue
        kept.append(net)
        texts.append(net.exploded if draw(st.booleans()) else str(net))
    return tuple(texts)


# Distinct ports, any of which may also be configured or excluded (opaque_ports is a default list, not a rule).
opaque_ports = st.lists(st.integers(1, 65535), max_size=6, unique=True).map(tuple)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    inbound_ports, inbound_excluded = draw(port_lists())
    outbound_ports, outbound_excluded = draw(port_lists())
    return Policy(
        name=draw(names),
        timeouts=Timeouts(connect=draw(durations), idle=draw(durations), detect=draw(durations)),
        inbound=InboundPolicy(
            default_protocol=draw(protocols),
            opaque_ports=draw(opaque_ports),
            ports=inbound_ports,
            exclude_ports=inbound_excluded,
        ),
        outbound=OutboundPolicy(
            default_protocol=draw(protocols),
            opaque_ports=draw(opaque_ports),
            ports=outbound_ports,
            exclude_ports=outbound_excluded,
            exclude_cidrs=draw(networks()),
        ),
    )


# Services: per-try timeouts are always shorter than request timeouts (under 10 s against at least 10 s), virtual
# addresses and endpoints come from disjoint networks, and an endpoint's identity is a function of its IP, so
# the checks of outbound.services find nothing to refuse.
per_try_timeouts = st.integers(1, 9999).map(lambda millis: Duration.parse(f"{millis}ms"))
request_timeouts = st.integers(10, 86400).map(lambda seconds: Duration.parse(f"{seconds}s"))
service_names = st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?", fullmatch=True)
_SECOND_TRY_CONDITIONS = (RetryCondition.RESET, RetryCondition.PER_TRY_TIMEOUT)


@st.composite
def retries(draw: st.DrawFn) -> Retry:
    conditions = tuple(draw(st.lists(st.sampled_from(RetryCondition), unique=True)))
    statuses = tuple(draw(st.lists(st.integers(500, 599), unique=True, max_size=4)))
    grpc_statuses = tuple(draw(st.lists(st.sampled_from(GrpcStatus), unique=True)))
    per_try = draw(st.none() | per_try_timeouts)
    if per_try is None and RetryCondition.PER_TRY_TIMEOUT in conditions:
        per_try = draw(per_try_timeouts)
    retried_later = statuses or grpc_statuses or any(c in _SECOND_TRY_CONDITIONS for c in conditions)
    return Retry(
        conditions=conditions,
        statuses=statuses,
        grpc_statuses=grpc_statuses,
        max_attempts=draw(st.integers(2 if retried_later else 1, 10)),
        per_try_timeout=per_try,
        max_body=draw(st.integers(0, 16 * 1024 * 1024)),
    )


@st.composite
def routes(draw: st.DrawFn) -> tuple[Route, ...]:
    names = draw(st.lists(st.sampled_from(["api", "admin", "grpc.cart", "writes", "r_0"]), unique=True))
    return tuple(
        Route(
            name=name,
            paths=tuple(draw(st.lists(st.sampled_from(["/", "/api/*", "/healthz", "/shop.Cart/*"]), max_size=3))),
            methods=tuple(draw(st.lists(st.sampled_from(["GET", "PUT", "POST"]), unique=True))),
            timeout=draw(st.none() | request_timeouts),
            retry=draw(st.none() | retries()),
        )
        for name in names
    )


def _endpoint_identity(ip: int) -> str | None:
    return None if ip % 3 == 0 else f"spiffe://td/ns/shop/sa/e{ip % 5}"


@st.composite
def services(draw: st.DrawFn, number: int, name: str) -> Service:
    """Service ``number`` of a bundle: its virtual IPs are in 10.96.NUMBER.0/24 and fd00:96:NUMBER::/64."""
    v4 = draw(st.lists(st.integers(1, 254), unique=True, min_size=1, max_size=3))  # a service needs an address
    v6 = draw(st.lists(st.integers(1, 2**16 - 1), unique=True, max_size=2))
    addresses = [f"10.96.{number}.{host}" for host in v4] + [
        str(ipaddress.IPv6Address(f"fd00:96:{number}::{host:x}")) for host in v6
    ]
    port_numbers = draw(st.lists(ports, unique=True, min_size=1, max_size=4))
    service_ports = tuple(
        ServicePort(port=port, name=draw(st.sampled_from(["", f"p{at}"])), target_port=draw(st.none() | ports))
        for at, port in enumerate(port_numbers)
    )
    endpoints = []
    for host in draw(st.lists(st.integers(1, 2**16 - 1), unique=True, max_size=5)):
        ip = f"10.1.{host >> 8}.{host & 0xFF}" if host % 2 else f"fd00:1::{host:x}"
        address = ip
        if len(service_ports) == 1 and draw(st.booleans()):
            address = f"{ip}:{draw(ports)}" if ":" not in ip else f"[{ip}]:{draw(ports)}"
        endpoints.append(
            Endpoint(address=address, identity=_endpoint_identity(host), weight=draw(st.integers(1, 10000)))
        )
    ejections = sorted(draw(st.lists(durations, min_size=2, max_size=2)), key=lambda duration: duration.seconds)
    return Service(
        name=name,
        addresses=tuple(draw(st.permutations(addresses))),
        ports=service_ports,
        endpoints=tuple(endpoints),
        routes=draw(routes()),
        timeout=draw(st.none() | request_timeouts),
        retry=draw(retries()),
        retry_budget=RetryBudget(ratio=draw(st.floats(0, 10)), ttl=draw(durations)),
        balancer=Balancer(default_rtt=draw(durations), decay=draw(durations)),
        outlier_detection=OutlierDetection(base_ejection=ejections[0], max_ejection=ejections[1]),
        queue=RequestQueue(failfast=draw(durations)),
    )


@st.composite
def service_policies(draw: st.DrawFn) -> Policy:
    """A bundle whose outbound.services are valid: names unique, each service's addresses its own."""
    names = draw(st.lists(service_names, unique=True, min_size=1, max_size=4))
    return Policy(
        outbound=OutboundPolicy(services=tuple(draw(services(number, name)) for number, name in enumerate(names)))
    )
