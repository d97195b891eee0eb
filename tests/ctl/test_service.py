"""The service lab's plan and its policy entry (``meshctl lab up --service --weights``): pod a alone gets the
service, every other pod is an endpoint with its exact identity and weight, and the proxy's own loader accepts
the document."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctl.lab.pod_policy import pod_policy, write_policy
from ctl.lab.service import LabEndpoint, lab_service, parse_weights
from ctl.lab.topology import plan
from policy.index import PolicyIndex
from policy.load import load_policy_file
from policy.model import RetryCondition


def test_weights_are_one_whole_number_per_endpoint_pod() -> None:
    assert parse_weights("1,2, 3") == (1, 2, 3)
    for bad in ("", "1,,2", "0,1", "1.5", "10001", "-1"):
        with pytest.raises(ValueError, match="invalid weights"):
            parse_weights(bad)


def test_the_service_is_every_pod_but_a_with_its_weight() -> None:
    topology = plan("tmsvcu", 4, ipv6=True)
    service = lab_service(topology, [1, 2, 3])
    assert service.endpoints == (
        LabEndpoint(pod="b", address="198.18.7.12", weight=1),
        LabEndpoint(pod="c", address="198.18.7.13", weight=2),
        LabEndpoint(pod="d", address="198.18.7.14", weight=3),
    )
    assert (service.address, service.ipv6_address, service.port, service.target_port) == (
        "198.18.8.10",
        "fd00:7472:696f:8::10",
        80,
        8081,
    )
    assert lab_service(plan("tmsvcu", 3, ipv6=False)).endpoints[1].weight == 1
    assert lab_service(plan("tmsvcu", 3, ipv6=False)).ipv6_address is None
    with pytest.raises(ValueError, match="--weights gives 2 weight"):
        lab_service(topology, [1, 2])


def test_only_the_client_pod_gets_the_service_and_the_proxy_loads_it(tmp_path: Path) -> None:
    topology = plan("tmsvcu", 4, ipv6=True)
    service = lab_service(topology, [1, 2, 3])
    assert "services" not in str(pod_policy(topology, topology.pods[1], mtls=True, service=service))
    path = tmp_path / "policy.yaml"
    write_policy(path, pod_policy(topology, topology.pods[0], mtls=True, service=service))
    loaded = load_policy_file(path)
    plan_ = PolicyIndex(loaded).service("198.18.8.10", 80)
    assert plan_ is not None and PolicyIndex(loaded).service("fd00:7472:696f:8::10", 80) is not None
    assert [(e.ip, e.port, e.identity, e.weight) for e in plan_.endpoints] == [
        ("198.18.7.12", 8081, "spiffe://cluster.local/ns/tmsvcu/sa/b", 1),
        ("198.18.7.13", 8081, "spiffe://cluster.local/ns/tmsvcu/sa/c", 2),
        ("198.18.7.14", 8081, "spiffe://cluster.local/ns/tmsvcu/sa/d", 3),
    ]
    route = plan_.route("GET", "/anything")
    assert route.name == "all"
    (web,) = loaded.outbound.services
    retry = web.routes[0].retry
    assert retry is not None and retry.statuses == (502, 503) and retry.max_attempts == 3
    assert RetryCondition.RESET in retry.conditions


def test_without_mtls_the_endpoints_are_plaintext() -> None:
    topology = plan("tmsvcu", 2, ipv6=False)
    document = pod_policy(topology, topology.pods[0], mtls=False, service=lab_service(topology))
    assert document["outbound"] == {
        "services": [
            {
                "name": "web",
                "addresses": ["198.18.8.10"],
                "ports": [{"port": 80, "name": "http", "target_port": 8081}],
                "endpoints": [{"address": "198.18.7.12", "weight": 1}],
                "routes": [
                    {
                        "name": "all",
                        "retry": {
                            "conditions": ["connect-failure", "refused-stream", "reset"],
                            "statuses": [502, 503],
                            "max_attempts": 3,
                        },
                    }
                ],
            }
        ]
    }
