"""FirewallConfig validation, flag-value parsers, the backend pick and the capability check (all pure)."""

from __future__ import annotations

import pytest

from iptables.backend import Backend, Census, pick_backend, take_census
from iptables.config import (
    ConfigError,
    FirewallConfig,
    PortRange,
    merge_port_ranges,
    parse_cidrs,
    parse_ports,
)
from iptables.privilege import effective_capabilities, missing_capabilities


def test_defaults() -> None:
    config = FirewallConfig()
    assert (config.proxy_uid, config.proxy_mark, config.tproxy_mark, config.tproxy_table) == (
        1337,
        0x539,
        0x53A,
        133,
    )
    assert (config.outbound_port, config.inbound_port) == (15001, 15006)
    assert config.exclude_inbound_ports == (PortRange(first=15000, last=15000),)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"outbound_port": 0}, "outbound_port"),
        ({"inbound_port": 70000}, "inbound_port"),
        ({"proxy_mark": 0}, "proxy_mark"),
        ({"tproxy_mark": 0x1_0000_0000}, "tproxy_mark"),
        ({"tproxy_mark": 0x539}, "tproxy_mark"),
        ({"tproxy_table": 254}, "tproxy_table"),
        ({"proxy_uid": -1}, "proxy_uid"),
        ({"inbound_port": 15001}, "inbound_port"),
        ({"exclude_outbound_cidrs": ("10.0.0.1/8",)}, "exclude_outbound_cidrs"),
    ],
)
def test_invalid_config_names_the_field(fields: dict[str, int | tuple[str, ...]], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        FirewallConfig(**fields)  # type: ignore[arg-type]  # the parametrized values are of the right types
    assert caught.value.field == field


def test_equal_marks_error_explains_why() -> None:
    with pytest.raises(ConfigError, match="routed back"):
        FirewallConfig(proxy_mark=7, tproxy_mark=7)


def test_parse_ports() -> None:
    assert parse_ports("") == ()
    assert parse_ports(" 22, 8000-8100 ") == (PortRange(first=22, last=22), PortRange(first=8000, last=8100))
    for bad in ("0", "70000", "abc", "10-5", "1,,2", "1-", "-1"):
        with pytest.raises(ValueError):  # each message is checked through the CLI tests
            parse_ports(bad)


def test_backwards_port_range_is_rejected_on_construction() -> None:
    with pytest.raises(ConfigError, match="backwards"):
        PortRange(first=10, last=5)


def test_parse_cidrs_canonicalizes() -> None:
    assert parse_cidrs("10.0.0.0/8, 192.168.1.7 ,fd00:0::/8") == ("10.0.0.0/8", "192.168.1.7/32", "fd00::/8")
    for bad in ("10.0.0.1/8", "10.0.0.0/33", "nonsense", "fd00::/129"):
        with pytest.raises(ValueError, match="not a valid CIDR"):
            parse_cidrs(bad)


def test_merge_port_ranges() -> None:
    merged = merge_port_ranges(parse_ports("90,80-85,86,100,99"))
    assert [r.render() for r in merged] == ["80:86", "90", "99:100"]


@pytest.mark.parametrize(
    ("censuses", "picked"),
    [
        ({Backend.NFT: Census(rules=0, triomesh=False)}, Backend.NFT),
        ({Backend.LEGACY: Census(rules=0, triomesh=False)}, Backend.LEGACY),
        (
            {Backend.NFT: Census(rules=0, triomesh=False), Backend.LEGACY: Census(rules=0, triomesh=False)},
            Backend.NFT,
        ),
        (
            {Backend.NFT: Census(rules=3, triomesh=False), Backend.LEGACY: Census(rules=4, triomesh=False)},
            Backend.LEGACY,
        ),
        (
            {Backend.NFT: Census(rules=50, triomesh=False), Backend.LEGACY: Census(rules=1, triomesh=True)},
            Backend.LEGACY,
        ),
        (
            {Backend.NFT: Census(rules=5, triomesh=True), Backend.LEGACY: Census(rules=9, triomesh=True)},
            Backend.LEGACY,
        ),
        (
            {Backend.NFT: Census(rules=9, triomesh=False), Backend.LEGACY: Census(rules=9, triomesh=False)},
            Backend.NFT,
        ),
    ],
)
def test_pick_backend(censuses: dict[Backend, Census], picked: Backend) -> None:
    assert pick_backend(censuses) is picked


def test_take_census() -> None:
    foreign = "*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -j RETURN\nCOMMIT\n"
    assert take_census([foreign, foreign]) == Census(rules=2, triomesh=False)
    assert take_census([foreign + ":TRIOMESH_OUTPUT - [0:0]\n"]).triomesh
    assert take_census(['-A OUTPUT -m comment --comment "triomesh/x" -j RETURN']) == Census(rules=1, triomesh=True)


def test_capabilities() -> None:
    assert effective_capabilities("Name:\tx\nCapEff:\t000001ffffffffff\n") == 0x1FFFFFFFFFF
    assert missing_capabilities(0x1FFFFFFFFFF) == []
    assert missing_capabilities(0) == ["CAP_NET_ADMIN", "CAP_NET_RAW"]
    assert missing_capabilities(1 << 12) == ["CAP_NET_RAW"]
