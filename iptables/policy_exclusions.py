"""Reads the exclusions mesh-init takes from a policy bundle (``--policy FILE``).

The bundle goes through the same loader as the proxy's (``policy.load``: YAML, JSON or TOML by extension, every
problem reported with its path), so a bundle mesh-init accepts is one the proxy accepts too. mesh-init then uses
only ``inbound.exclude_ports``, ``outbound.exclude_ports`` and ``outbound.exclude_cidrs``.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from iptables.config import ConfigError, PortRange
from policy.load import PolicyError, load_policy_file


class PolicyExclusions(msgspec.Struct, frozen=True, kw_only=True):
    inbound_ports: tuple[PortRange, ...]
    outbound_ports: tuple[PortRange, ...]
    outbound_cidrs: tuple[str, ...]


def read_policy_exclusions(path: Path) -> PolicyExclusions:
    """Raises ConfigError whose field is the first problem's path (``outbound.exclude_cidrs[1]``) or the file."""
    try:
        policy = load_policy_file(path)
    except PolicyError as exc:
        first = exc.problems[0] if exc.problems else None
        field = f"{path}: {first.path}" if first is not None and first.path else str(path)
        raise ConfigError(field, f"invalid policy:\n{exc}") from None
    return PolicyExclusions(
        inbound_ports=tuple(PortRange(first=p, last=p) for p in policy.inbound.exclude_ports),
        outbound_ports=tuple(PortRange(first=p, last=p) for p in policy.outbound.exclude_ports),
        outbound_cidrs=policy.outbound.exclude_cidrs,
    )
