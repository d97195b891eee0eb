"""The Linux socket options a transparent proxy needs, in one place.

Constants Python's socket module lacks are spelled out with their header of origin.
"""

from __future__ import annotations

import errno
import socket
from typing import Final, Protocol

from dataplane.errors import NoOriginalDestinationError
from dataplane.net.addr import SockAddr
from dataplane.net.orig_dst import (
    SO_ORIGINAL_DST,
    SOCKADDR_IN6_LEN,
    SOCKADDR_IN_LEN,
    SOL_IP,
    SOL_IPV6,
    decode_sockaddr_in,
    decode_sockaddr_in6,
)

IP_TRANSPARENT: Final = 19  # linux/in.h (socket.IP_TRANSPARENT exists on 3.11, kept explicit for IPv6 symmetry)
IPV6_TRANSPARENT: Final = 75  # linux/in6.h
SO_MARK: Final = 36  # asm-generic/socket.h


class _SockLike(Protocol):
    """What both stdlib and trio sockets offer for option calls (they are sync on trio sockets too)."""

    @property
    def family(self) -> int: ...

    def getsockopt(self, level: int, optname: int, buflen: int) -> bytes: ...

    def setsockopt(self, level: int, optname: int, value: int) -> None: ...


def original_dst(sock: _SockLike) -> SockAddr:
    """The destination the client dialled before nat REDIRECT sent it to us."""
    try:
        if sock.family == socket.AF_INET6:
            return decode_sockaddr_in6(sock.getsockopt(SOL_IPV6, SO_ORIGINAL_DST, SOCKADDR_IN6_LEN))
        return decode_sockaddr_in(sock.getsockopt(SOL_IP, SO_ORIGINAL_DST, SOCKADDR_IN_LEN))
    except OSError as exc:
        # ENOENT: no conntrack NAT entry, i.e. the client connected to the proxy port directly.
        hint = " (connection was not redirected by iptables)" if exc.errno == errno.ENOENT else ""
        raise NoOriginalDestinationError(f"SO_ORIGINAL_DST failed: {exc.strerror}{hint}", errno=exc.errno) from None


def set_mark(sock: _SockLike, mark: int) -> None:
    """SO_MARK: mesh-init exempts packets carrying the proxy mark from interception (needs CAP_NET_ADMIN)."""
    sock.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)


def set_transparent(sock: _SockLike) -> None:
    """IP_TRANSPARENT: accept TPROXY'd connections, or bind to a non-local (the client's) source address."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(SOL_IPV6, IPV6_TRANSPARENT, 1)
    else:
        sock.setsockopt(SOL_IP, IP_TRANSPARENT, 1)


def check_mark_permitted(mark: int) -> str | None:
    """None when this process may set SO_MARK; otherwise why not, for a start-up error an operator can act on."""
    if mark == 0:
        return None
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        set_mark(probe, mark)
    except PermissionError:
        return (
            f"setting the socket mark {mark:#x} needs CAP_NET_ADMIN: grant it to the proxy "
            "(setpriv --ambient-caps +net_admin, or the container's capabilities) or pass --mark 0 "
            "to rely on the UID exemption alone"
        )
    finally:
        probe.close()
    return None
