"""Which TCP ports a network namespace listens on, from /proc/<pid>/net/tcp and tcp6. Parser is pure."""

from __future__ import annotations

from pathlib import Path
from typing import Final

_LISTEN: Final = "0A"  # TCP_LISTEN in the kernel's st column


def parse_listening_ports(table: str) -> set[int]:
    """Local ports in state LISTEN in a /proc/net/tcp{,6} table (header line first; addresses are hex)."""
    ports: set[int] = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == _LISTEN:
            ports.add(int(fields[1].rpartition(":")[2], 16))
    return ports


def listening_ports(pid: int) -> set[int]:
    """Ports listening in ``pid``'s network namespace (empty when the process is gone)."""
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            ports |= parse_listening_ports(Path(f"/proc/{pid}/net/{table}").read_text())
        except OSError:
            continue
    return ports
