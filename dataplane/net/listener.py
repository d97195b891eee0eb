"""Binding the proxy's listening sockets."""

from __future__ import annotations

import errno
import socket
from typing import Final

import trio

from dataplane.net.addr import SockAddr
from dataplane.net.sockopts import set_transparent

BACKLOG: Final = 4096  # the kernel caps it at net.core.somaxconn (4096 here)
_NO_IPV6: Final = (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT)


class IPv6UnavailableError(OSError):
    """This namespace cannot bind IPv6 (disabled or no address): ``--ipv6 auto`` skips the IPv6 listeners."""


def open_listener(addr: SockAddr, *, transparent: bool = False, reuse_port: bool = False) -> trio.SocketListener:
    """Bind and listen on ``addr``.

    ``transparent`` sets IP_TRANSPARENT so TPROXY can hand us connections for any address. ``reuse_port`` lets
    several worker processes share the port. IPv6 listeners are V6ONLY so IPv4 and IPv6 each have their own
    socket and SO_ORIGINAL_DST is always asked at the right level.
    """
    family = socket.AF_INET6 if addr.is_ipv6 else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        if family == socket.AF_INET6 and exc.errno in _NO_IPV6:
            raise IPv6UnavailableError(exc.errno, f"IPv6 unavailable: {exc.strerror}") from None
        raise
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if transparent:
            set_transparent(sock)
        try:
            sock.bind((addr.ip, addr.port))
        except OSError as exc:
            if family == socket.AF_INET6 and exc.errno in _NO_IPV6:
                raise IPv6UnavailableError(exc.errno, f"cannot bind {addr}: {exc.strerror}") from None
            raise OSError(exc.errno, f"cannot listen on {addr}: {exc.strerror}") from None
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock))


def listener_address(listener: trio.SocketListener) -> SockAddr:
    return SockAddr.from_sockname(listener.socket.getsockname())


def open_abstract_unix_listener(name: str) -> trio.SocketListener:
    """Listen on an abstract unix socket (Linux: no file, gone with the process, private to the namespace)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind("\0" + name)
        sock.listen(64)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock))
