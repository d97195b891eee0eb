"""What the kernel says about a process tree: CPU time (/proc/PID/stat), memory (/proc/PID/smaps_rollup), and
how many connections are established to a port (/proc/net/tcp).

A proxy is measured as its whole process tree, so nginx's master and worker count together; PSS splits the
pages they share, RSS counts them in each.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Final, NamedTuple

from dataplane.net.addr import SockAddr

_CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
_TCP_ESTABLISHED: Final = "01"
_TCP_LISTEN: Final = "0A"


class Memory(NamedTuple):
    rss_kib: int
    pss_kib: int

    def __sub__(self, other: tuple[int, ...]) -> Memory:
        return Memory(self.rss_kib - other[0], self.pss_kib - other[1])


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants (a taskset wrapper has already exec'd into its command)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(entry / "stat")[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU of ``pids`` (and their reaped children), in seconds."""
    ticks = 0
    for pid in pids:
        try:
            fields = _stat_fields(Path(f"/proc/{pid}/stat"))
        except OSError:
            continue
        # After "pid (comm)": state=0 ppid=1 ... utime=11 stime=12 cutime=13 cstime=14.
        ticks += sum(int(value) for value in fields[11:15])
    return ticks / _CLK_TCK


def memory(pids: Iterable[int]) -> Memory:
    rss = pss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        found = parse_smaps_rollup(text)
        rss += found.rss_kib
        pss += found.pss_kib
    return Memory(rss, pss)


def parse_smaps_rollup(text: str) -> Memory:
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if sep and key in ("Rss", "Pss"):
            values[key] = int(rest.split()[0])
    return Memory(values.get("Rss", 0), values.get("Pss", 0))


def established_to(port: int) -> int:
    """Established IPv4 TCP connections whose remote port is ``port`` (the clients' side of them)."""
    wanted = f":{port:04X}"
    return sum(1 for _, remote, state in _tcp_sockets(None) if state == _TCP_ESTABLISHED and remote.endswith(wanted))


def is_listening(addr: SockAddr, pid: int | None = None) -> bool:
    """Whether an IPv4 socket listens on ``addr`` (or on 0.0.0.0 and its port) in the network namespace of
    ``pid`` (default: this process's)."""
    port = f":{addr.port:04X}"
    wanted = {_hex_ipv4(addr.ip) + port, _hex_ipv4("0.0.0.0") + port}
    return any(state == _TCP_LISTEN and local in wanted for local, _, state in _tcp_sockets(pid))


def _tcp_sockets(pid: int | None) -> list[tuple[str, str, str]]:
    """(local, remote, state) of every IPv4 TCP socket in the namespace of ``pid``, as /proc prints them."""
    path = "/proc/net/tcp" if pid is None else f"/proc/{pid}/net/tcp"
    try:
        with open(path) as table:
            next(table)  # header
            return [(f[1], f[2], f[3]) for f in (line.split(maxsplit=4) for line in table)]
    except (FileNotFoundError, ProcessLookupError):
        return []  # the process is gone: nothing of it listens


def _hex_ipv4(ip: str) -> str:
    # /proc/net/tcp prints the address as the host-order (little-endian here) 32-bit integer in hex.
    return socket.inet_aton(ip)[::-1].hex().upper()


def _stat_fields(path: Path) -> list[str]:
    # The command name is in parentheses and may itself contain spaces or ")": split after the last one.
    return path.read_text().rpartition(")")[2].split()
