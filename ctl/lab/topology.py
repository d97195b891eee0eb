"""The lab's address and naming plan: which namespaces, links and addresses a lab of N pods uses. Pure.

Every name carries the lab prefix so labs with different prefixes coexist and ``lab down`` can find what a
crashed ``lab up`` left behind. Addresses come from benchmark (198.18.0.0/15) and ULA space and exist only
inside the lab's own namespaces, which is why labs with different prefixes can reuse them.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import string
from collections.abc import Iterable
from typing import Final

import msgspec

DEFAULT_PREFIX: Final = "tmlab"
# Lower-case letters and digits only: no "-", so "<prefix>-<pod>" can never match another lab's names.
_PREFIX_RE: Final = re.compile(r"^[a-z][a-z0-9]{1,11}$")
POD_NAMES: Final = string.ascii_lowercase  # pods are a, b, c, ...: short, and they sort in creation order
MAX_PODS: Final = len(POD_NAMES)
HUB: Final = "hub"
BRIDGE: Final = "br0"  # lives in the hub namespace, so the host's namespace is never touched
POD_IFACE: Final = "eth0"
IPV4_NET: Final = ipaddress.IPv4Network("198.18.7.0/24")  # RFC 2544 benchmark space: never routed
IPV6_NET: Final = ipaddress.IPv6Network("fd00:7472:696f::/64")  # ULA; 7472:696f is "trio" in ASCII
_HOST_OFFSET: Final = 10  # pod a is .11 / ::11, so the last digit matches the pod's position
APP_PORT: Final = 8080
HTTP_PORT: Final = 8081  # the demo app's HTTP/1.1 port
TRUST_DOMAIN: Final = "cluster.local"  # meshctl ca's default, Istio's and Linkerd's


class Mode(enum.Enum):
    """How inbound connections reach the proxy (mesh-init --mode, mesh-proxy --inbound-mode)."""

    REDIRECT = "redirect"
    TPROXY = "tproxy"


class PodPlan(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    netns: str
    hub_port: str
    """The veth end inside the hub namespace, enslaved to the bridge."""
    ipv4: str
    ipv6: str | None


class Topology(msgspec.Struct, frozen=True, kw_only=True):
    prefix: str
    hub_netns: str
    pods: tuple[PodPlan, ...]


def validate_prefix(prefix: str) -> str:
    if not _PREFIX_RE.match(prefix):
        raise ValueError(f"invalid lab prefix {prefix!r}: 2-12 lower-case letters and digits, starting with a letter")
    return prefix


def pod_netns(prefix: str, pod: str) -> str:
    validate_prefix(prefix)
    if len(pod) != 1 or pod not in POD_NAMES:
        raise ValueError(f"invalid pod name {pod!r}: lab pods are named a, b, c, ...")
    return f"{prefix}-{pod}"


def plan(prefix: str, pods: int, *, ipv6: bool) -> Topology:
    validate_prefix(prefix)
    if not 1 <= pods <= MAX_PODS:
        raise ValueError(f"invalid pod count {pods}: a lab has 1 to {MAX_PODS} pods")
    return Topology(
        prefix=prefix,
        hub_netns=f"{prefix}-{HUB}",
        pods=tuple(_pod(prefix, index, ipv6=ipv6) for index in range(pods)),
    )


def _pod(prefix: str, index: int, *, ipv6: bool) -> PodPlan:
    name = POD_NAMES[index]
    host = _HOST_OFFSET + index + 1
    return PodPlan(
        name=name,
        netns=f"{prefix}-{name}",
        hub_port=f"veth-{name}",
        ipv4=str(IPV4_NET[host]),
        ipv6=str(IPV6_NET[int(str(host), 16)]) if ipv6 else None,
    )


def pod_spiffe_id(prefix: str, pod: str) -> str:
    """Pod ``pod`` of lab ``prefix`` is service account ``pod`` in (Kubernetes) namespace ``prefix``."""
    return f"spiffe://{TRUST_DOMAIN}/ns/{prefix}/sa/{pod}"


def lab_namespaces(prefix: str, existing: Iterable[str]) -> list[str]:
    """Those of ``existing`` (``ip netns list`` names) that a lab with this prefix creates: pods, then hub."""
    validate_prefix(prefix)
    pattern = re.compile(rf"^{re.escape(prefix)}-(?:{HUB}|[{POD_NAMES}])$")
    hub = f"{prefix}-{HUB}"
    return sorted((name for name in existing if pattern.match(name)), key=lambda name: (name == hub, name))
