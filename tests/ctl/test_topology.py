from __future__ import annotations

import ipaddress

import pytest

from ctl.lab.command import LabError
from ctl.lab.lab import Lab
from ctl.lab.topology import IPV4_NET, IPV6_NET, Mode, lab_namespaces, plan, pod_netns, validate_prefix


def test_plan_names_and_addresses() -> None:
    topology = plan("tmlab", 3, ipv6=True)
    assert topology.hub_netns == "tmlab-hub"
    assert [(p.name, p.netns, p.hub_port) for p in topology.pods] == [
        ("a", "tmlab-a", "veth-a"),
        ("b", "tmlab-b", "veth-b"),
        ("c", "tmlab-c", "veth-c"),
    ]
    assert [p.ipv4 for p in topology.pods] == ["198.18.7.11", "198.18.7.12", "198.18.7.13"]
    assert [p.ipv6 for p in topology.pods] == [
        "fd00:7472:696f::11",
        "fd00:7472:696f::12",
        "fd00:7472:696f::13",
    ]


def test_every_address_is_inside_the_lab_networks_and_unique() -> None:
    topology = plan("tmlab", 26, ipv6=True)
    v4 = [ipaddress.ip_address(p.ipv4) for p in topology.pods]
    v6 = [ipaddress.ip_address(p.ipv6 or "") for p in topology.pods]
    assert all(a in IPV4_NET for a in v4) and len(set(v4)) == 26
    assert all(a in IPV6_NET for a in v6) and len(set(v6)) == 26
    assert all(ipaddress.ip_address(a).is_private for a in (*v4, *v6))


def test_ipv6_off_gives_no_ipv6_addresses() -> None:
    assert [p.ipv6 for p in plan("tmlab", 2, ipv6=False).pods] == [None, None]


@pytest.mark.parametrize("prefix", ["", "a", "Tmlab", "tm-lab", "1lab", "tmlab_x", "abcdefghijklm"])
def test_invalid_prefixes(prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid lab prefix"):
        validate_prefix(prefix)


@pytest.mark.parametrize("pods", [0, 27])
def test_invalid_pod_counts(pods: int) -> None:
    with pytest.raises(ValueError, match="1 to 26 pods"):
        plan("tmlab", pods, ipv6=True)


def test_pod_netns() -> None:
    assert pod_netns("tmlab", "c") == "tmlab-c"
    with pytest.raises(ValueError, match="invalid pod name 'hub'"):
        pod_netns("tmlab", "hub")


def test_lab_namespaces_picks_only_this_labs_names_pods_before_hub() -> None:
    listed = ["tmlab-hub", "tmlab-b", "tmlab-a", "tmlab2-a", "tmla-b", "tmlab-ab", "other", "tmlab-"]
    assert lab_namespaces("tmlab", listed) == ["tmlab-a", "tmlab-b", "tmlab-hub"]


def test_lab_pod_lookup_names_the_known_pods() -> None:
    lab = Lab("tmct1", 2, Mode.TPROXY, ipv6=False)
    assert (lab.pod("b").netns, lab.pod("b").address, lab.pod("b").ipv6) == ("tmct1-b", "198.18.7.12", None)
    with pytest.raises(LabError, match=r"lab tmct1 has no pod 'z' \(pods: a, b\)"):
        lab.pod("z")
