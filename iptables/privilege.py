"""Checks mesh-init has the capabilities iptables and netlink need, before it reads or changes anything."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from iptables.errors import PrivilegeError

CAP_NET_ADMIN: Final = 12
CAP_NET_RAW: Final = 13  # iptables-legacy talks to the kernel over a raw socket
NEEDED: Final = {"CAP_NET_ADMIN": CAP_NET_ADMIN, "CAP_NET_RAW": CAP_NET_RAW}


def effective_capabilities(status_text: str) -> int:
    """The CapEff bitmask from a /proc/<pid>/status text."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    raise ValueError("no CapEff line in /proc/self/status")


def missing_capabilities(caps: int) -> list[str]:
    return [name for name, bit in NEEDED.items() if not caps >> bit & 1]


def require_net_admin(status_path: Path = Path("/proc/self/status")) -> None:
    """Raise PrivilegeError unless this process can change the namespace's firewall and routing."""
    missing = missing_capabilities(effective_capabilities(status_path.read_text()))
    if missing:
        raise PrivilegeError(
            "mesh-init must run as root or with CAP_NET_ADMIN and CAP_NET_RAW in the pod's network namespace "
            f"(missing: {', '.join(missing)})"
        )
