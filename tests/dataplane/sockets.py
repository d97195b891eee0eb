"""Real loopback TCP connections for relay tests."""

from __future__ import annotations

import socket
import struct

import trio


async def tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """A real loopback TCP connection: (connecting end, accepted end)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    accepted: list[trio.SocketStream] = []
    async with trio.open_nursery() as nursery:

        async def accept() -> None:
            accepted.append(await listeners[0].accept())

        nursery.start_soon(accept)
        client = await trio.open_tcp_stream("127.0.0.1", port)
    await listeners[0].aclose()
    return client, accepted[0]


def plain(stream: trio.SocketStream) -> socket.socket:
    """Take the stdlib socket out of a trio stream (as the handler does before handing it to the engine)."""
    return socket.socket(fileno=stream.socket.detach())


def reset(stream: trio.SocketStream) -> None:
    """Close with RST instead of FIN."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


async def read_all(stream: trio.SocketStream) -> bytes:
    data = bytearray()
    while chunk := await stream.receive_some(1 << 18):
        data += chunk
    return bytes(data)
