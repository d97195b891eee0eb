"""A mesh TLS connection presented to the rest of the proxy as a plain socket.

Why: every protocol path (the relay engine, the HTTP/1.1 engine and loop, the HTTP/2 proxy, the keep-alive pools)
works on connected stdlib sockets with direct system calls. Rather than teach each of them TLS, a verified
``TLSStream`` is joined to one end of a ``socketpair``; the other end is handed to those paths as if it were the
peer's TCP socket. Two copy loops move plaintext between the pair and the TLS stream (``dataplane.tcp.relay``'s
shape, one chunk in flight per direction, so nothing buffers without bound).

Half-close is passed on both ways (``send_eof`` is close_notify on the TLS side, ``shutdown(SHUT_WR)`` on the
pair). When one side breaks, both are closed at once: the other end then sees its peer gone.

Resource handling: the bridge task owns the TLS stream (and its transport) and its end of the pair; the caller owns
the returned socket. The task ends when both directions have ended or either side broke.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

import trio

if TYPE_CHECKING:
    from dataplane.tls.stream import TLSStream

CHUNK: Final = 65536
_BROKEN: Final = (trio.BrokenResourceError, trio.ClosedResourceError)

Spawn = Callable[[Callable[[], Awaitable[None]]], None]
"""Starts a task in the nursery that owns the proxy's connections (``BackgroundTasks.spawn``)."""


def open_bridge(tls: TLSStream, spawn: Spawn) -> socket.socket:
    """The plaintext side of ``tls`` as a connected, non-blocking socket; the copying runs in a spawned task."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.setblocking(False)
    inner = trio.SocketStream(trio.socket.from_stdlib_socket(ours))

    async def run() -> None:
        await bridge(tls, inner)

    spawn(run)
    return theirs


async def bridge(tls: trio.abc.HalfCloseableStream, inner: trio.SocketStream) -> None:
    """Copy both ways between ``tls`` and ``inner`` until both directions end or a side breaks; close both."""
    try:
        async with trio.open_nursery() as nursery:

            async def copy(source: trio.abc.Stream, sink: trio.abc.HalfCloseableStream) -> None:
                try:
                    while data := await source.receive_some(CHUNK):
                        await sink.send_all(data)
                    await sink.send_eof()
                except _BROKEN:
                    nursery.cancel_scope.cancel(reason="one side of a mesh TLS bridge broke")

            nursery.start_soon(copy, tls, inner)
            await copy(inner, tls)
    finally:
        await trio.aclose_forcefully(inner)
        await trio.aclose_forcefully(tls)
