"""Reads the exclusions mesh-init takes from a policy bundle (``--policy FILE``).

The bundle is decoded with msgspec straight into ``policy.model.Policy`` (YAML, which also reads JSON), so the
same schema checks apply as in the proxy; mesh-init then only uses ``inbound.exclude_ports``,
``outbound.exclude_ports`` and ``outbound.exclude_cidrs``. CIDR syntax, which the schema leaves to the loader,
is checked here.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import msgspec.yaml

from iptables.config import ConfigError, PortRange, parse_cidr
from policy.model import Policy


class PolicyExclusions(msgspec.Struct, frozen=True, kw_only=True):
    inbound_ports: tuple[PortRange, ...]
    outbound_ports: tuple[PortRange, ...]
    outbound_cidrs: tuple[str, ...]


def read_policy_exclusions(path: Path) -> PolicyExclusions:
    """Raises ConfigError whose field is the policy path (``outbound.exclude_cidrs[1]``) or the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the policy file: {exc.strerror}") from None
    try:
        policy = msgspec.yaml.decode(data, type=Policy)
    except msgspec.ValidationError as exc:
        raise ConfigError(str(path), f"invalid policy: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(str(path), f"not valid YAML/JSON: {exc}") from None
    cidrs = []
    for index, cidr in enumerate(policy.outbound.exclude_cidrs):
        cidrs.append(parse_cidr(f"{path}: outbound.exclude_cidrs[{index}]", cidr).with_prefixlen)
    return PolicyExclusions(
        inbound_ports=tuple(PortRange(first=p, last=p) for p in policy.inbound.exclude_ports),
        outbound_ports=tuple(PortRange(first=p, last=p) for p in policy.outbound.exclude_ports),
        outbound_cidrs=tuple(cidrs),
    )
