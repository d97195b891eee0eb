"""Sockets created inside a named network namespace (``ip netns`` names, bind-mounted under /run/netns).

A socket belongs to the namespace it was created in for its whole life, so the calling thread enters the
target namespace with setns(2), creates the socket and goes straight back; connecting and all I/O happen
afterwards in the caller's own namespace. setns(2) on a network namespace changes only the calling thread, so
this is safe in a worker thread too, as long as the same thread switches back (it does, in ``finally``).
Python 3.11 has no ``os.setns``, hence ctypes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from ctl.errors import CtlError

NETNS_RUN_DIR: Final = Path("/run/netns")  # where `ip netns add` bind-mounts named namespaces
_CLONE_NEWNET: Final = 0x40000000  # from <sched.h>: setns() must find a network namespace behind the fd
_OWN_NETNS: Final = "/proc/thread-self/ns/net"  # this thread's namespace, to return to


class NetnsError(CtlError):
    """The namespace does not exist or cannot be entered."""


def netns_path(name: str) -> Path:
    if not name or "/" in name or name in (".", ".."):
        raise NetnsError(f"invalid network namespace name {name!r}")
    return NETNS_RUN_DIR / name


@contextlib.contextmanager
def entered_netns(name: str) -> Iterator[None]:
    """Run the body with this thread inside namespace ``name``; always switches back."""
    path = netns_path(name)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetnsError(f"network namespace {name!r} does not exist (no {path})") from None
    except PermissionError:
        raise NetnsError(f"cannot open network namespace {name!r}: permission denied (run as root)") from None
    try:
        home = os.open(_OWN_NETNS, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target, f"cannot enter network namespace {name!r}")
            try:
                yield
            finally:
                _setns(home, "cannot return to meshctl's own network namespace")
        finally:
            os.close(home)
    finally:
        os.close(target)


def netns_socket(netns: str | None, family: socket.AddressFamily) -> socket.socket:
    """An unconnected TCP socket in ``netns`` (or in this thread's own namespace when None)."""
    if netns is None:
        return socket.socket(family, socket.SOCK_STREAM)
    with entered_netns(netns):
        return socket.socket(family, socket.SOCK_STREAM)


def _setns(fd: int, what: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        hint = " (needs root: CAP_SYS_ADMIN)" if code == errno.EPERM else ""
        raise NetnsError(f"{what}: {os.strerror(code)}{hint}")
