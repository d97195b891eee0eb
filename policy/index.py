"""The per-connection lookup the proxy does on every accept: port (and destination IP) to settings.

Pure: no I/O. Everything is resolved when a policy is applied, so a lookup is one dict probe for the port
plus, outbound, one set probe per distinct CIDR prefix length; no policy parsing on the hot path.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

import msgspec

from policy.authz import ALLOW_ALL, Authorization, IdentityMatcher
from policy.duration import Duration
from policy.model import (
    DEFAULT_STREAM_IDLE_TIMEOUT,
    InboundPolicy,
    MeshedDestination,
    MtlsMode,
    OutboundPolicy,
    Policy,
    PortPolicy,
    Protocol,
    Timeouts,
)
from policy.services import ServicePlan, ServiceTable

_IPV4_BITS: Final = 32
_IPV6_BITS: Final = 128


class PortSettings(msgspec.Struct, frozen=True):
    """What the proxy does with one connection."""

    protocol: Protocol
    connect_timeout: float
    """Seconds to wait for the upstream TCP handshake."""
    idle_timeout: float
    """Seconds without bytes in either direction before the connection is closed."""
    detect_timeout: float
    """Seconds to wait for the client's first bytes on a ``detect`` port before relaying it as opaque."""
    excluded: bool
    """The destination is in ``exclude_ports``/``exclude_cidrs``: relay it untouched."""
    response_timeout: float | None = None
    """HTTP: seconds from a request's end to its response head before answering 504; None waits."""
    stream_idle_timeout: float = DEFAULT_STREAM_IDLE_TIMEOUT.seconds
    """HTTP/2: seconds a stream may move no bytes before it is reset."""
    mtls: MtlsMode = MtlsMode.PERMISSIVE
    """Inbound: whether plaintext clients are accepted besides mesh mTLS ones."""
    authorization: Authorization = ALLOW_ALL
    """Inbound: who may connect (and, for HTTP, send which requests)."""


class MeshedTarget(msgspec.Struct, frozen=True):
    """An outbound destination reached over mesh mTLS."""

    expected: IdentityMatcher
    """The server identity its proxy must prove."""
    http1_over_h2: bool = False
    """HTTP/1.1 requests go as streams of a shared HTTP/2 connection (``MeshedDestination.http1_over_h2``)."""


class PolicyIndex:
    """Lookups for one policy generation. Immutable; built once per applied policy."""

    __slots__ = (
        "_endpoint_targets",
        "_excluded_networks",
        "_inbound",
        "_meshed",
        "_outbound",
        "requires_identity",
        "services",
    )

    def __init__(self, policy: Policy) -> None:
        self._inbound = _PortTable(policy.inbound, policy.timeouts)
        self._outbound = _PortTable(policy.outbound, policy.timeouts)
        self._excluded_networks = _NetworkSet(policy.outbound.exclude_cidrs)
        self._meshed = _MeshedTable(policy.outbound.meshed)
        self.services = ServiceTable(policy.outbound.services)
        """Virtual addresses and their endpoints (``outbound.services``)."""
        self._endpoint_targets = {
            address: MeshedTarget(expected=IdentityMatcher(identity))
            for address, identity in self.services.endpoint_identities.items()
        }
        self.requires_identity = (
            bool(policy.outbound.meshed) or bool(self._endpoint_targets) or _any_strict(policy.inbound)
        )
        """The proxy cannot do what this policy says without an identity (strict ports, meshed destinations)."""

    def inbound(self, port: int) -> PortSettings:
        """Settings for a connection arriving for the pod's ``port``."""
        return self._inbound.lookup(port, excluded_destination=False)

    def outbound(self, ip: str, port: int) -> PortSettings:
        """Settings for a connection the pod opens to ``ip`` (IPv4 or IPv6 text) and ``port``.

        Raises ValueError if ``ip`` is not an IP address.
        """
        return self._outbound.lookup(port, excluded_destination=self._excluded_networks.contains(ip))

    def meshed(self, ip: str, port: int) -> MeshedTarget | None:
        """How to reach ``ip``:``port`` over mesh mTLS, or None when it is not meshed: a service endpoint with an
        identity first, then ``outbound.meshed``."""
        if self._endpoint_targets:
            found = self._endpoint_targets.get((ip, port))
            if found is None and ip.startswith("::ffff:"):
                # A dual-stack socket's view of an IPv4 endpoint, as ServiceTable.lookup and _MeshedTable take it.
                found = self._endpoint_targets.get((ip[len("::ffff:") :], port))
            if found is not None:
                return found
        return self._meshed.lookup(ip, port)

    def endpoint_settings(self, ip: str, port: int) -> PortSettings | None:
        """A service endpoint's connection settings: those of the service port it serves (its connect timeout,
        not its own port's), or None when ``ip``:``port`` is no endpoint."""
        service_port = self.services.endpoint_ports.get((ip, port))
        if service_port is None:
            return None
        return self._outbound.lookup(service_port, excluded_destination=False)

    def service(self, ip: str, port: int) -> ServicePlan | None:
        """The service port whose virtual address is ``ip``:``port``, or None: the destination passes through."""
        return self.services.lookup(ip, port)


def keeps_inbound(settings: PortSettings, *, mesh_tls: bool, peer_id: str | None, per_request: bool) -> bool:
    """Whether an open inbound connection may go on under ``settings`` (a new policy's): what a reload revokes by
    (dataplane/revoke.py) and ``meshctl policy diff`` previews. An excluded port keeps everything; a strict one no
    plaintext client; a connection authorized per request (HTTP) stays while some rule admits its client at all,
    an opaque one while a rule allows it."""
    if settings.excluded:
        return True
    if settings.mtls is MtlsMode.STRICT and not mesh_tls:
        return False
    if per_request:
        return settings.authorization.admits(peer_id)
    return settings.authorization.allows_tcp(peer_id)


def _any_strict(inbound: InboundPolicy) -> bool:
    return inbound.mtls is MtlsMode.STRICT or any(entry.mtls is MtlsMode.STRICT for entry in inbound.ports)


class _MeshedTable:
    """``outbound.meshed`` in order; lookups remembered per (ip, port) up to a bound."""

    __slots__ = ("_cache", "_entries")

    _CACHE_LIMIT = 4096

    def __init__(self, entries: Iterable[MeshedDestination]) -> None:
        self._entries = tuple(
            (
                ipaddress.ip_network(entry.cidr, strict=False),
                frozenset(entry.ports),
                MeshedTarget(expected=IdentityMatcher(entry.identity), http1_over_h2=entry.http1_over_h2),
            )
            for entry in entries
        )
        self._cache: dict[tuple[str, int], MeshedTarget | None] = {}

    def lookup(self, ip: str, port: int) -> MeshedTarget | None:
        if not self._entries:
            return None
        key = (ip, port)
        try:
            return self._cache[key]
        except KeyError:
            pass
        address = ipaddress.ip_address(ip)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        found = next(
            (
                target
                for network, ports, target in self._entries
                if address.version == network.version and address in network and (not ports or port in ports)
            ),
            None,
        )
        if len(self._cache) >= self._CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = found
        return found


class _PortTable:
    """One direction's settings: a dict by port with a precomputed default and excluded variant of each."""

    __slots__ = ("_by_port", "_default")

    def __init__(self, direction: InboundPolicy | OutboundPolicy, timeouts: Timeouts) -> None:
        default = PortSettings(
            protocol=direction.default_protocol,
            connect_timeout=timeouts.connect.seconds,
            idle_timeout=timeouts.idle.seconds,
            detect_timeout=timeouts.detect.seconds,
            response_timeout=timeouts.response.seconds if timeouts.response is not None else None,
            stream_idle_timeout=timeouts.stream_idle.seconds,
            excluded=False,
        )
        if isinstance(direction, InboundPolicy):
            default = msgspec.structs.replace(
                default, mtls=direction.mtls, authorization=Authorization(direction.authorization)
            )
        self._default = (default, msgspec.structs.replace(default, excluded=True))
        self._by_port: dict[int, tuple[PortSettings, PortSettings]] = {}
        opaque = msgspec.structs.replace(default, protocol=Protocol.OPAQUE)
        for port in direction.opaque_ports:
            self._by_port[port] = (opaque, msgspec.structs.replace(opaque, excluded=True))
        for entry in direction.ports:
            # An entry that names no protocol keeps the one opaque_ports gave its port.
            base = self._by_port.get(entry.port, self._default)[0]
            settings = _port_settings(entry, msgspec.structs.replace(default, protocol=base.protocol))
            self._by_port[entry.port] = (settings, msgspec.structs.replace(settings, excluded=True))
        for port in direction.exclude_ports:
            excluded = self._by_port.get(port, self._default)[1]
            self._by_port[port] = (excluded, excluded)

    def lookup(self, port: int, *, excluded_destination: bool) -> PortSettings:
        normal, excluded = self._by_port.get(port, self._default)
        return excluded if excluded_destination else normal


def _port_settings(entry: PortPolicy, default: PortSettings) -> PortSettings:
    return PortSettings(
        protocol=entry.protocol if entry.protocol is not None else default.protocol,
        connect_timeout=_seconds(entry.connect_timeout, default.connect_timeout),
        idle_timeout=_seconds(entry.idle_timeout, default.idle_timeout),
        detect_timeout=_seconds(entry.detect_timeout, default.detect_timeout),
        response_timeout=(
            entry.response_timeout.seconds if entry.response_timeout is not None else default.response_timeout
        ),
        stream_idle_timeout=default.stream_idle_timeout,
        excluded=False,
        mtls=entry.mtls if entry.mtls is not None else default.mtls,
        authorization=Authorization(entry.authorization) if entry.authorization is not None else default.authorization,
    )


def _seconds(override: Duration | None, default: float) -> float:
    return override.seconds if override is not None else default


class _NetworkSet:
    """Membership in a set of CIDR blocks.

    For each prefix length in use, the set holds the blocks' network numbers shifted right by the host bits;
    an address is inside iff its own shifted number is in the set for some length. That is O(distinct
    prefix lengths), at most 33 for IPv4 and 129 for IPv6, however many blocks the policy lists.
    """

    __slots__ = ("_v4", "_v6")

    def __init__(self, cidrs: Iterable[str]) -> None:
        v4: dict[int, set[int]] = {}
        v6: dict[int, set[int]] = {}
        for cidr in cidrs:
            # strict=False only because the bundle was already checked with strict=True in policy.load.
            net = ipaddress.ip_network(cidr, strict=False)
            table, bits = (v4, _IPV4_BITS) if net.version == 4 else (v6, _IPV6_BITS)
            shift = bits - net.prefixlen
            table.setdefault(shift, set()).add(int(net.network_address) >> shift)
        self._v4 = tuple((shift, frozenset(nets)) for shift, nets in sorted(v4.items()))
        self._v6 = tuple((shift, frozenset(nets)) for shift, nets in sorted(v6.items()))

    def contains(self, ip: str) -> bool:
        if not self._v4 and not self._v6:
            return False
        address = ipaddress.ip_address(ip)
        if isinstance(address, ipaddress.IPv6Address):
            mapped = address.ipv4_mapped
            # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d: match them against IPv4 blocks too.
            if mapped is not None and _member(int(mapped), self._v4):
                return True
            return _member(int(address), self._v6)
        return _member(int(address), self._v4)


def _member(number: int, table: tuple[tuple[int, frozenset[int]], ...]) -> bool:
    return any((number >> shift) in nets for shift, nets in table)
