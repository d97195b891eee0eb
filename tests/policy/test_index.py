"""PolicyIndex: the per-connection lookup, for defaults, per-port overrides, excluded ports and CIDRs."""

from __future__ import annotations

import ipaddress

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy.duration import Duration
from policy.index import PolicyIndex, PortSettings, keeps_inbound
from policy.load import decode_policy
from policy.model import DEFAULT_POLICY, Policy, Protocol
from tests.policy.strategies import policies

POLICY = decode_policy(
    b"""
timeouts: {connect: 2s, idle: 30m}
inbound:
  default_protocol: detect
  ports:
    - {port: 5432, protocol: opaque, idle_timeout: 8h}
    - {port: 9090, connect_timeout: 250ms}
  exclude_ports: [22]
outbound:
  ports:
    - {port: 443, protocol: detect, connect_timeout: 5s}
  exclude_ports: [2379]
  exclude_cidrs: [169.254.169.254/32, 10.96.0.0/12, "fd00:10:96::/112", "2001:db8::/32", 0.0.0.0/32]
""",
    "yaml",
)
INDEX = PolicyIndex(POLICY)

INBOUND_DEFAULT = PortSettings(
    protocol=Protocol.DETECT, connect_timeout=2.0, idle_timeout=1800.0, detect_timeout=10.0, excluded=False
)
OUTBOUND_DEFAULT = PortSettings(
    protocol=Protocol.DETECT, connect_timeout=2.0, idle_timeout=1800.0, detect_timeout=10.0, excluded=False
)
OUTBOUND_443 = PortSettings(
    protocol=Protocol.DETECT, connect_timeout=5.0, idle_timeout=1800.0, detect_timeout=10.0, excluded=False
)


def excluded(settings: PortSettings) -> PortSettings:
    return msgspec.structs.replace(settings, excluded=True)


def test_the_default_policy_detects_except_on_server_speaks_first_ports() -> None:
    index = PolicyIndex(DEFAULT_POLICY)
    detect = PortSettings(
        protocol=Protocol.DETECT, connect_timeout=1.0, idle_timeout=3600.0, detect_timeout=10.0, excluded=False
    )
    assert index.inbound(8080) == detect
    assert index.outbound("10.0.0.1", 443) == detect
    assert index.outbound("::1", 443) == detect
    opaque = msgspec.structs.replace(detect, protocol=Protocol.OPAQUE)
    for port in (25, 587, 3306, 4444, 5432, 6379, 9300, 11211):
        assert index.inbound(port) == opaque
        assert index.outbound("10.0.0.1", port) == opaque
    assert msgspec.structs.replace(DEFAULT_POLICY, name="") == decode_policy(b"version: 1", "yaml")


def test_a_ports_entry_overrides_opaque_ports_only_where_it_sets_a_protocol() -> None:
    index = PolicyIndex(
        decode_policy(
            b"""
timeouts: {detect: 2s}
inbound:
  opaque_ports: [3306, 7000]
  ports:
    - {port: 3306, protocol: detect, detect_timeout: 500ms}
    - {port: 7000, idle_timeout: 1m}
""",
            "yaml",
        )
    )
    assert (index.inbound(3306).protocol, index.inbound(3306).detect_timeout) == (Protocol.DETECT, 0.5)
    assert (index.inbound(7000).protocol, index.inbound(7000).idle_timeout) == (Protocol.OPAQUE, 60.0)
    assert (index.inbound(5432).protocol, index.inbound(5432).detect_timeout) == (Protocol.DETECT, 2.0)


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        (8080, INBOUND_DEFAULT),
        (
            5432,
            PortSettings(
                protocol=Protocol.OPAQUE, connect_timeout=2.0, idle_timeout=28800.0, detect_timeout=10.0, excluded=False
            ),
        ),
        (
            9090,
            PortSettings(
                protocol=Protocol.DETECT, connect_timeout=0.25, idle_timeout=1800.0, detect_timeout=10.0, excluded=False
            ),
        ),
        (22, excluded(INBOUND_DEFAULT)),
    ],
)
def test_inbound_lookup(port: int, expected: PortSettings) -> None:
    assert INDEX.inbound(port) == expected


@pytest.mark.parametrize(
    ("ip", "port", "expected"),
    [
        ("192.168.1.10", 80, OUTBOUND_DEFAULT),
        ("192.168.1.10", 443, OUTBOUND_443),
        ("192.168.1.10", 2379, excluded(OUTBOUND_DEFAULT)),
        # CIDR edges, IPv4
        ("10.96.0.0", 80, excluded(OUTBOUND_DEFAULT)),
        ("10.111.255.255", 80, excluded(OUTBOUND_DEFAULT)),
        ("10.112.0.0", 80, OUTBOUND_DEFAULT),
        ("10.95.255.255", 80, OUTBOUND_DEFAULT),
        ("169.254.169.254", 80, excluded(OUTBOUND_DEFAULT)),
        ("169.254.169.253", 80, OUTBOUND_DEFAULT),
        ("0.0.0.0", 80, excluded(OUTBOUND_DEFAULT)),
        # a per-port setting stays, only marked excluded, when the destination network is excluded
        ("10.100.0.1", 443, excluded(OUTBOUND_443)),
        # IPv6, in any spelling
        ("fd00:10:96::1", 80, excluded(OUTBOUND_DEFAULT)),
        ("FD00:0010:0096:0000:0000:0000:0000:ffff", 80, excluded(OUTBOUND_DEFAULT)),
        ("fd00:10:96::1:0", 80, OUTBOUND_DEFAULT),
        ("2001:db8:ffff::1", 443, excluded(OUTBOUND_443)),
        ("2001:db9::1", 443, OUTBOUND_443),
        ("::1", 80, OUTBOUND_DEFAULT),
        # an IPv4 peer seen on a dual-stack socket
        ("::ffff:10.96.1.1", 80, excluded(OUTBOUND_DEFAULT)),
        ("::ffff:192.168.1.1", 80, OUTBOUND_DEFAULT),
        ("fe80::1%eth0", 80, OUTBOUND_DEFAULT),
    ],
)
def test_outbound_lookup(ip: str, port: int, expected: PortSettings) -> None:
    assert INDEX.outbound(ip, port) == expected


def test_outbound_refuses_text_that_is_not_an_address() -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        INDEX.outbound("not-an-ip", 80)


def test_a_slash_zero_excludes_every_address_of_its_family() -> None:
    index = PolicyIndex(decode_policy(b'outbound: {exclude_cidrs: ["::/0"]}', "yaml"))
    assert index.outbound("2001:db8::1", 80).excluded
    assert not index.outbound("192.0.2.1", 80).excluded


@given(policies(), st.integers(1, 65535), st.ip_addresses())
def test_lookups_agree_with_the_policy_they_index(policy: Policy, port: int, ip: object) -> None:
    index = PolicyIndex(policy)
    address = ipaddress.ip_address(str(ip))
    in_cidr = any(address in ipaddress.ip_network(cidr) for cidr in policy.outbound.exclude_cidrs)
    for direction, settings in (
        (policy.inbound, index.inbound(port)),
        (policy.outbound, index.outbound(str(ip), port)),
    ):
        entry = next((entry for entry in direction.ports if entry.port == port), None)
        fallback = Protocol.OPAQUE if port in direction.opaque_ports else direction.default_protocol
        assert settings.protocol == (entry.protocol if entry is not None and entry.protocol is not None else fallback)
        connect = entry.connect_timeout if entry is not None and entry.connect_timeout else policy.timeouts.connect
        idle = entry.idle_timeout if entry is not None and entry.idle_timeout else policy.timeouts.idle
        detect = entry.detect_timeout if entry is not None and entry.detect_timeout else policy.timeouts.detect
        assert (settings.connect_timeout, settings.idle_timeout, settings.detect_timeout) == (
            connect.seconds,
            idle.seconds,
            detect.seconds,
        )
        network_excluded = in_cidr and direction is policy.outbound
        assert settings.excluded == (port in direction.exclude_ports or network_excluded)


def test_the_index_reads_durations_in_seconds() -> None:
    index = PolicyIndex(decode_policy(b"timeouts: {connect: 1500ms, idle: 2h}", "yaml"))
    assert index.inbound(1).connect_timeout == Duration.parse("1.5s").seconds == 1.5
    assert index.inbound(1).idle_timeout == 7200.0


def test_response_timeouts_default_to_waiting_and_a_port_overrides_the_bundle() -> None:
    assert PolicyIndex(DEFAULT_POLICY).outbound("10.0.0.1", 80).response_timeout is None
    policy = decode_policy(
        b"timeouts: {response: 15s, stream_idle: 1m}\noutbound: {ports: [{port: 80, response_timeout: 250ms}]}", "yaml"
    )
    index = PolicyIndex(policy)
    assert index.outbound("10.0.0.1", 80).response_timeout == 0.25
    assert index.outbound("10.0.0.1", 81).response_timeout == 15.0
    assert index.inbound(80).response_timeout == 15.0
    assert index.outbound("10.0.0.1", 80).stream_idle_timeout == 60.0


def test_keeps_inbound_is_the_revocation_rule() -> None:
    policy = decode_policy(
        b"inbound:\n  mtls: strict\n  authorization: [{identities: ['spiffe://td/ns/a/*'], paths: ['/api/*']}]\n"
        b"  ports: [{port: 9, mtls: permissive, authorization: [{unauthenticated: true}]}]\n  exclude_ports: [22]\n",
        "yaml",
    )
    index = PolicyIndex(policy)
    strict, open_port, excluded = index.inbound(80), index.inbound(9), index.inbound(22)
    a, b = "spiffe://td/ns/a/sa/x", "spiffe://td/ns/b/sa/y"
    assert keeps_inbound(strict, mesh_tls=True, peer_id=a, per_request=True)  # admitted, for some paths
    assert not keeps_inbound(strict, mesh_tls=True, peer_id=a, per_request=False)  # no rule allows opaque
    assert not keeps_inbound(strict, mesh_tls=True, peer_id=b, per_request=True)
    assert not keeps_inbound(strict, mesh_tls=False, peer_id=None, per_request=True)  # plaintext on strict
    assert keeps_inbound(open_port, mesh_tls=False, peer_id=None, per_request=False)
    assert keeps_inbound(excluded, mesh_tls=False, peer_id=None, per_request=False)
