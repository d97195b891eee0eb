"""The service lab (``meshctl lab up --service``): pod a is the client of a service ``web`` whose endpoints are the
demo apps of every other pod (b, c, d in a 4-pod lab), at a virtual address that exists nowhere on the network.
Pure: the plan and the policy entry, no I/O.

Only pod a's policy gets the service (``outbound.services``); its proxy maps a connection or request to
198.18.8.10:80 (and [fd00:7472:696f:8::10]:80 with IPv6) onto one endpoint, the demo app's HTTP port (8081) in
pod b, c or d, each reached over mesh mTLS with its pod's exact identity. Pod a needs a route for the service
network only so that a connect() leaves the socket layer and meets the outbound REDIRECT rule.

The route ``all`` retries idempotent requests on a reset and on 502 and 503, up to 3 tries: 503 is what an
endpoint's own proxy answers when its app refuses connections (killed), 502 what it answers when the app resets
an exchange, so both mean "this endpoint failed, another may not".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Final

import msgspec

from ctl.lab.topology import HTTP_PORT, Topology, pod_spiffe_id

SERVICE_NAME: Final = "web"
SERVICE_PORT: Final = 80
SERVICE_NET: Final = ipaddress.IPv4Network("198.18.8.0/24")  # next to the pods' 198.18.7.0/24, never routed
SERVICE_NET6: Final = ipaddress.IPv6Network("fd00:7472:696f:8::/64")  # beside the pods' ULA /64
SERVICE_VIP: Final = str(SERVICE_NET[10])
SERVICE_VIP6: Final = str(SERVICE_NET6[0x10])
CLIENT_POD: Final = "a"
ROUTE_NAME: Final = "all"
RETRY_STATUSES: Final = (502, 503)
RETRY_CONDITIONS: Final = ("connect-failure", "refused-stream", "reset")
MAX_ATTEMPTS: Final = 3
SERVICE_PODS: Final = 4  # `lab up --service` without --pods: a client and three endpoints


class LabEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    pod: str
    address: str
    """The pod's IPv4 address; the port is the service's ``target_port``."""
    weight: int


class LabService(msgspec.Struct, frozen=True, kw_only=True):
    """What ``lab up --service`` set up; recorded in the lab's state file."""

    name: str = SERVICE_NAME
    client: str = CLIENT_POD
    address: str = SERVICE_VIP
    ipv6_address: str | None = None
    port: int = SERVICE_PORT
    target_port: int = HTTP_PORT
    endpoints: tuple[LabEndpoint, ...]

    def describe(self) -> str:
        vips = [f"{self.address}:{self.port}"]
        if self.ipv6_address is not None:
            vips.append(f"[{self.ipv6_address}]:{self.port}")
        ends = ", ".join(f"{e.pod} {e.address}:{self.target_port} (weight {e.weight})" for e in self.endpoints)
        return f"service {self.name} for pod {self.client}: {' '.join(vips)} -> {ends}"


def parse_weights(text: str) -> tuple[int, ...]:
    """``--weights 1,2,3``: one whole number 1-10000 per endpoint pod, in pod order."""
    weights = []
    for word in (part.strip() for part in text.split(",")):
        if not word.isdigit() or not 1 <= int(word) <= 10000:
            raise ValueError(f"invalid weights {text!r}: comma-separated whole numbers 1-10000, e.g. 1,2,3")
        weights.append(int(word))
    return tuple(weights)


def lab_service(topology: Topology, weights: Sequence[int] | None = None) -> LabService:
    """The service over every pod but a; ``weights`` (default: all 1) gives one per endpoint pod, in order.

    Error handling: ValueError naming ``--weights`` or ``--pods`` when they do not fit.
    """
    endpoint_pods = [pod for pod in topology.pods if pod.name != CLIENT_POD]
    if not endpoint_pods:
        raise ValueError("a service lab needs at least 2 pods (--pods): a client and an endpoint")
    weights = tuple(weights) if weights is not None else (1,) * len(endpoint_pods)
    if len(weights) != len(endpoint_pods):
        names = ", ".join(pod.name for pod in endpoint_pods)
        raise ValueError(
            f"--weights gives {len(weights)} weight(s) for {len(endpoint_pods)} endpoint pods ({names}): one each"
        )
    ipv6 = topology.pods[0].ipv6 is not None
    return LabService(
        ipv6_address=SERVICE_VIP6 if ipv6 else None,
        endpoints=tuple(
            LabEndpoint(pod=pod.name, address=pod.ipv4, weight=weight)
            for pod, weight in zip(endpoint_pods, weights, strict=True)
        ),
    )


def service_document(prefix: str, service: LabService, *, mtls: bool) -> dict[str, object]:
    """The ``outbound.services[]`` entry for the client pod's policy."""
    endpoints: list[dict[str, object]] = []
    for endpoint in service.endpoints:
        entry: dict[str, object] = {"address": endpoint.address, "weight": endpoint.weight}
        if mtls:
            entry["identity"] = pod_spiffe_id(prefix, endpoint.pod)
        endpoints.append(entry)
    addresses = [service.address] + ([service.ipv6_address] if service.ipv6_address is not None else [])
    retry = {"conditions": list(RETRY_CONDITIONS), "statuses": list(RETRY_STATUSES), "max_attempts": MAX_ATTEMPTS}
    return {
        "name": service.name,
        "addresses": addresses,
        "ports": [{"port": service.port, "name": "http", "target_port": service.target_port}],
        "endpoints": endpoints,
        "routes": [{"name": ROUTE_NAME, "retry": retry}],
    }


def service_routes(service: LabService) -> list[str]:
    """The networks the client pod routes out of eth0 so its connections to the service reach the proxy."""
    routes = [str(SERVICE_NET)]
    if service.ipv6_address is not None:
        routes.append(str(SERVICE_NET6))
    return routes
