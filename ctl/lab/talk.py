"""A demo-app client that connects from inside a pod, as that pod's applications do.

The socket is created in the pod's namespace by this (root) process, so the pod's mesh-init rules intercept it
exactly like an application's connection: pod a's outbound proxy, then pod b's inbound proxy, then b's app.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

from ctl.lab.lines import LineReader
from ctl.netns import netns_socket


@asynccontextmanager
async def _connected(netns: str | None, host: str, port: int) -> AsyncIterator[trio.SocketStream]:
    """A stream connected from inside ``netns``; trio's wrapped socket errors come out as the OSError itself."""
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    sock = trio.socket.from_stdlib_socket(netns_socket(netns, family))
    try:
        await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    try:
        async with trio.SocketStream(sock) as stream:
            yield stream
    except trio.BrokenResourceError as exc:
        # trio wraps the socket error (a reset, usually); callers get the OSError itself.
        if isinstance(exc.__cause__, OSError):
            raise exc.__cause__ from None
        raise ConnectionError(str(exc)) from None


async def talk(netns: str | None, host: str, port: int, lines: Sequence[str]) -> list[str]:
    """The server's greeting and its answer to each of ``lines``, in order (``netns`` None: this namespace).

    Error handling: raises OSError (refused, reset, also mid-exchange) or EOFError if the server closes
    before answering every line. It waits as long as the server takes: callers bound it with
    ``trio.fail_after``.
    """
    async with _connected(netns, host, port) as stream:
        reader = LineReader(stream)
        received = [await _expect_line(reader)]
        for line in lines:
            await stream.send_all(f"{line}\n".encode())
            received.append(await _expect_line(reader))
        await stream.send_eof()
        return received


async def http_get(netns: str | None, host: str, port: int, paths: Sequence[str]) -> list[tuple[str, str]]:
    """GET each of ``paths`` in turn on one keep-alive HTTP/1.1 connection; (status line, body) of each.

    Error handling: as ``talk``; a response without Content-Length or an early close is an EOFError.
    """
    return await http_exchange(netns, host, port, [("GET", path) for path in paths])


async def http_exchange(
    netns: str | None, host: str, port: int, requests: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Send each (method, path) of ``requests`` in turn, without a body, on one keep-alive HTTP/1.1 connection;
    (status line, body) of each. Error handling: as ``http_get``."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    replies = []
    async with _connected(netns, host, port) as stream:
        reader = LineReader(stream)
        for method, path in requests:
            body_length = "Content-Length: 0\r\n" if method == "POST" else ""  # POST without one has no length
            request = f"{method} {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: meshctl-lab\r\n{body_length}\r\n"
            await stream.send_all(request.encode())
            status = await _expect_line(reader)
            length = None
            while field := await _expect_line(reader):
                name, _, value = field.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if length is None:
                raise EOFError(f"response without Content-Length: {status}")
            body = await reader.read_exactly(length)
            replies.append((status, body.decode("utf-8", errors="replace").rstrip("\n")))
    return replies


async def _expect_line(reader: LineReader) -> str:
    line = await reader.readline()
    if line is None:
        raise EOFError("the server closed the connection before answering")
    return line.decode("utf-8", errors="replace")
