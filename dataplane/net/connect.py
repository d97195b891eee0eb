"""Opening upstream connections: socket mark, optional transparent source, timeout, loop-guard registration."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable

import trio

from dataplane.errors import ConnectError, ConnectTimeoutError, connect_error_for
from dataplane.net.addr import SockAddr
from dataplane.net.sockopts import set_mark, set_transparent


async def open_upstream(
    dst: SockAddr,
    *,
    timeout: float,
    mark: int,
    source_ip: str | None = None,
    on_local_address: Callable[[SockAddr], None] | None = None,
) -> socket.socket:
    """Connect to ``dst`` and return the connected, non-blocking socket.

    ``mark`` (SO_MARK, 0 for none) keeps the connection out of mesh-init's interception. ``source_ip`` binds the
    socket transparently to a non-local address (the client's, under TPROXY) so the application sees the real
    client. ``on_local_address`` learns the local address as soon as the kernel picks it, before the handshake
    completes, so the loop guard can recognise the connection if it is redirected back to us.

    Error handling: every failure raises a ``ConnectError`` subclass (refused, timeout, unreachable, other);
    the socket is closed on every failure path.
    """
    family = socket.AF_INET6 if dst.is_ipv6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        try:
            if mark:
                set_mark(sock, mark)
            if source_ip is not None:
                set_transparent(sock)
                sock.bind((source_ip, 0))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            raise ConnectError(f"preparing the socket for {dst} failed: {exc.strerror}", errno=exc.errno) from None
        try:
            sock.connect((dst.ip, dst.port))
        except BlockingIOError:
            pass
        except OSError as exc:
            raise connect_error_for(exc.errno or errno.EIO, str(dst)) from None
        if on_local_address is not None:
            on_local_address(SockAddr.from_sockname(sock.getsockname()))
        with trio.move_on_after(timeout) as scope:
            await trio.lowlevel.wait_writable(sock)
        if scope.cancelled_caught:
            raise ConnectTimeoutError(f"connect to {dst} timed out after {timeout:g}s", errno=errno.ETIMEDOUT)
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise connect_error_for(code, str(dst))
    except BaseException:
        sock.close()
        raise
    return sock
