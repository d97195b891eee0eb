"""Throwaway network namespaces (prefix ``tmipt-``) for root-only mesh-init tests, and ways to act in them.

Sockets are created inside a namespace by switching the calling thread there (setns) just for the
``socket()`` call: a socket stays in the namespace it was created in, so the test then uses it normally.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CLONE_NEWNET = 0x40000000
IP = shutil.which("ip") or "ip"
_libc = ctypes.CDLL(None, use_errno=True)


def sh(*argv: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60, env=env)


def new_name() -> str:
    return f"tmipt-{secrets.token_hex(3)}"


@contextmanager
def netns(name: str | None = None) -> Iterator[str]:
    """A fresh namespace with loopback up; always deleted afterwards."""
    name = name or new_name()
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        sh("ip", "netns", "del", name, check=False)


@dataclass(frozen=True)
class Pair:
    """A pod namespace and a peer namespace joined by a veth, with IPv4 and IPv6 addresses."""

    pod: str
    peer: str
    pod_v4: str = "198.18.0.1"
    peer_v4: str = "198.18.0.2"
    pod_v6: str = "fd00:7e57::1"
    peer_v6: str = "fd00:7e57::2"


@contextmanager
def pod_pair() -> Iterator[Pair]:
    tag = secrets.token_hex(3)
    with netns(f"tmipt-{tag}-pod") as pod, netns(f"tmipt-{tag}-peer") as peer:
        pair = Pair(pod=pod, peer=peer)
        # veth names must fit in 15 characters; both ends die with their namespaces.
        sh(
            "ip",
            "link",
            "add",
            f"tmipt{tag}p",
            "netns",
            pod,
            "type",
            "veth",
            "peer",
            f"tmipt{tag}c",
            "netns",
            peer,
        )
        for ns, dev, v4, v6 in (
            (pod, f"tmipt{tag}p", pair.pod_v4, pair.pod_v6),
            (peer, f"tmipt{tag}c", pair.peer_v4, pair.peer_v6),
        ):
            sh("ip", "-n", ns, "addr", "add", f"{v4}/24", "dev", dev)
            sh("ip", "-n", ns, "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            sh("ip", "-n", ns, "link", "set", dev, "up")
        yield pair


@contextmanager
def inside(name: str) -> Iterator[None]:
    """Run the block with this thread in namespace ``name``; always switch back."""
    with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{name}") as target:
        _setns(target.fileno())
        try:
            yield
        finally:
            _setns(home.fileno())


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def tcp_socket(ns: str, family: socket.AddressFamily) -> socket.socket:
    with inside(ns):
        sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(5)  # every wait in these tests is bounded
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


def listener(
    ns: str, family: socket.AddressFamily, host: str, port: int, *, transparent: bool = False
) -> socket.socket:
    sock = tcp_socket(ns, family)
    if transparent:
        set_transparent(sock, family)
    sock.bind((host, port))
    sock.listen(8)
    return sock


IPV6_TRANSPARENT = 75  # not in Python's socket module


def set_transparent(sock: socket.socket, family: socket.AddressFamily) -> None:
    if family == socket.AF_INET:
        sock.setsockopt(socket.SOL_IP, socket.IP_TRANSPARENT, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)


def nothing_pending(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(5)
    conn.close()
    return False


def mesh_init(
    ns: str, *args: str, env: dict[str, str] | None = None, as_uid: int | None = None
) -> subprocess.CompletedProcess[str]:
    """Run mesh-init inside ``ns``. As root it runs this checkout; as another user, the installed copy."""
    setpriv = shutil.which("setpriv") or "setpriv"
    user = [setpriv, f"--reuid={as_uid}", f"--regid={as_uid}", "--clear-groups"] if as_uid is not None else []
    # Absolute paths: ``env`` may carry a PATH without them (the missing-binary tests).
    argv = [IP, "netns", "exec", ns, *user, sys.executable, "-m", "iptables", *args]
    cwd = REPO_ROOT if as_uid is None else Path("/")
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120, env=env, cwd=cwd)


def save(ns: str, backend: str, family: str = "ipv4") -> str:
    """The namespace's rules as <backend>-save prints them, minus the timestamped comment lines."""
    tool = f"{'iptables' if family == 'ipv4' else 'ip6tables'}-{backend}-save"
    out = sh("ip", "netns", "exec", ns, tool).stdout
    return "".join(line + "\n" for line in out.splitlines() if not line.startswith("#"))


def routing(ns: str) -> str:
    """ip rules and every route table, both families: to prove routing was left as it was."""
    return "".join(
        sh("ip", "-n", ns, *args).stdout
        for args in (
            ["-4", "rule"],
            ["-6", "rule"],
            ["-4", "route", "show", "table", "all"],
            ["-6", "route", "show", "table", "all"],
        )
    )
