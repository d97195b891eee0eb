"""Hypothesis strategies for valid policies: any value an operator could write that decode_policy accepts."""

from __future__ import annotations

import ipaddress
import math

from hypothesis import strategies as st

from policy.duration import DURATION_PATTERN, Duration
from policy.model import InboundPolicy, OutboundPolicy, Policy, PortPolicy, Protocol, Timeouts

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
