"""The policy ``lab up`` writes for each pod: strict mTLS in, every other pod's exact identity out, accepted by the
proxy's own loader; read back, changed and written again as an operator would."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctl.lab.command import LabError
from ctl.lab.pod_policy import pod_policy, read_policy, write_policy
from ctl.lab.topology import plan, pod_spiffe_id
from policy.load import load_policy_file
from policy.model import MtlsMode


def test_a_pod_is_strict_inbound_and_meshes_every_other_pod_by_its_exact_identity() -> None:
    topology = plan("tlmpol", 3, ipv6=True)
    policy = pod_policy(topology, topology.pods[1], mtls=True)
    assert policy["inbound"] == {"mtls": "strict"}
    assert policy["outbound"] == {
        "ports": [{"port": 8080, "protocol": "opaque"}],  # the demo app speaks first
        "meshed": [
            {"cidr": "198.18.7.11/32", "identity": "spiffe://cluster.local/ns/tlmpol/sa/a"},
            {"cidr": "fd00:7472:696f::11/128", "identity": "spiffe://cluster.local/ns/tlmpol/sa/a"},
            {"cidr": "198.18.7.13/32", "identity": "spiffe://cluster.local/ns/tlmpol/sa/c"},
            {"cidr": "fd00:7472:696f::13/128", "identity": "spiffe://cluster.local/ns/tlmpol/sa/c"},
        ],
    }


def test_without_ipv6_or_mtls_the_policy_says_less() -> None:
    topology = plan("tlmpol", 2, ipv6=False)
    outbound = pod_policy(topology, topology.pods[0], mtls=True)["outbound"]
    assert isinstance(outbound, dict)
    assert outbound["meshed"] == [{"cidr": "198.18.7.12/32", "identity": pod_spiffe_id("tlmpol", "b")}]
    assert pod_policy(topology, topology.pods[0], mtls=False) == {"version": 1, "name": "lab tlmpol pod a"}


def test_the_written_file_is_what_the_proxy_loads_and_round_trips(tmp_path: Path) -> None:
    topology = plan("tlmpol", 2, ipv6=True)
    path = tmp_path / "policy.yaml"
    write_policy(path, pod_policy(topology, topology.pods[0], mtls=True))
    assert path.stat().st_mode & 0o777 == 0o644  # the proxy runs as UID 1337
    loaded = load_policy_file(path)
    assert loaded.inbound.mtls is MtlsMode.STRICT
    assert [(m.cidr, m.identity) for m in loaded.outbound.meshed] == [
        ("198.18.7.12/32", "spiffe://cluster.local/ns/tlmpol/sa/b"),
        ("fd00:7472:696f::12/128", "spiffe://cluster.local/ns/tlmpol/sa/b"),
    ]
    document = read_policy(path)
    inbound = document["inbound"]
    assert isinstance(inbound, dict)
    inbound["authorization"] = [{"identities": [pod_spiffe_id("tlmpol", "b")]}]
    write_policy(path, document)
    rules = load_policy_file(path).inbound.authorization
    assert rules is not None and [rule.identities for rule in rules] == [("spiffe://cluster.local/ns/tlmpol/sa/b",)]


def test_an_invalid_change_is_refused_naming_the_field_and_the_file_stays(tmp_path: Path) -> None:
    topology = plan("tlmpol", 2, ipv6=False)
    path = tmp_path / "policy.yaml"
    write_policy(path, pod_policy(topology, topology.pods[0], mtls=True))
    before = path.read_bytes()
    with pytest.raises(LabError, match=r"inbound\.mtls"):
        write_policy(path, {"version": 1, "inbound": {"mtls": "sometimes"}})
    assert path.read_bytes() == before
    with pytest.raises(LabError, match="cannot read the policy"):
        read_policy(tmp_path / "missing.yaml")
