"""Service endpoints for the in-process tests: small trio HTTP/1.1 servers (keep-alive) whose behaviour a test
switches at run time (answer, 503, reset, hang, slow), each counting what reached it; a keep-alive client; and a
whole ``Proxy`` whose forward listener leads to a service's virtual address."""

from __future__ import annotations

import dataclasses
import socket
import struct
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

import trio

from dataplane.net.addr import SockAddr
from tests.dataplane.l7.harness import Running, free_port, running_proxy

VIP = SockAddr("10.255.0.1", 80)
"""The service's virtual address: exists nowhere, never connected to."""

Mode = Literal["ok", "503", "reset", "hang", "close"]


@dataclasses.dataclass
class Endpoint:
    name: str
    mode: Mode = "ok"
    delay: float = 0.0
    requests: int = 0
    connections: int = 0
    heads: list[bytes] = dataclasses.field(default_factory=list)
    address: SockAddr = dataclasses.field(default_factory=lambda: SockAddr("127.0.0.1", 0))
    listener: trio.SocketListener | None = None

    async def serve(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        buffer = b""
        async with stream:
            try:
                while True:
                    while b"\r\n\r\n" not in buffer:
                        chunk = await stream.receive_some()
                        if not chunk:
                            return
                        buffer += chunk
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    length = _content_length(head)
                    while len(buffer) < length:
                        chunk = await stream.receive_some()
                        if not chunk:
                            return
                        buffer += chunk
                    buffer = buffer[length:]
                    self.requests += 1
                    self.heads.append(head)
                    if not await self._answer(stream):
                        return
            except trio.BrokenResourceError:
                pass

    async def _answer(self, stream: trio.SocketStream) -> bool:
        if self.delay:
            await trio.sleep(self.delay)
        if self.mode == "hang":
            await trio.sleep_forever()
        if self.mode == "reset":
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if self.mode == "close":
            return False
        status = b"503 Service Unavailable" if self.mode == "503" else b"200 OK"
        body = self.name.encode()
        await stream.send_all(b"HTTP/1.1 " + status + b"\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        return True


def refusing(app: Endpoint) -> None:
    """Point ``app`` at a loopback port nothing listens on: connections to it are refused."""
    app.address = SockAddr("127.0.0.1", free_port())


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


@asynccontextmanager
async def endpoints(*names: str) -> AsyncIterator[list[Endpoint]]:
    """One running endpoint per name, on loopback ports."""
    apps = [Endpoint(name) for name in names]
    async with trio.open_nursery() as nursery:
        for app in apps:
            (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
            app.listener = listener
            app.address = SockAddr.from_sockname(listener.socket.getsockname())
            nursery.start_soon(trio.serve_listeners, app.serve, [listener])
        yield apps
        nursery.cancel_scope.cancel()


def service_policy(
    apps: Sequence[Endpoint], *, weights: Sequence[int] | None = None, extra: str = "", port_extra: str = ""
) -> str:
    """A bundle with one service at ``VIP`` whose endpoints are ``apps``; ``extra``: more service fields (YAML, at
    the service's indentation)."""
    lines = [
        "outbound:",
        f"  ports: [{{port: {VIP.port}, connect_timeout: 300ms{port_extra}}}]",
        "  services:",
        "    - name: web",
        f"      addresses: ['{VIP.ip}']",
        f"      ports: [{{port: {VIP.port}, name: http}}]",
        "      endpoints:",
    ]
    for index, app in enumerate(apps):
        weight = weights[index] if weights is not None else 1
        lines.append(f"        - {{address: '{app.address}', weight: {weight}}}")
    return "\n".join(lines) + "\n" + extra


@asynccontextmanager
async def service_proxy(tmp_path: Path, policy: str, *extra: str) -> AsyncIterator[Running]:
    """A whole proxy with ``policy`` whose forward listener leads to the service's virtual address."""
    path = tmp_path / "policy.yaml"
    path.write_text(policy)
    async with running_proxy(VIP, "--policy", str(path), *extra) as running:
        yield running


class Client:
    """One keep-alive HTTP/1.1 client connection."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    @classmethod
    async def open(cls, addr: SockAddr) -> Client:
        return cls(await trio.open_tcp_stream(addr.ip, addr.port))

    async def request(
        self, method: str = "GET", path: str = "/", body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request, read its response (content-length framed); (0, {}, b"") when the proxy closed."""
        head = f"{method} {path} HTTP/1.1\r\nhost: web\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        try:
            await self.stream.send_all(head + body)
            while b"\r\n\r\n" not in self.buffer:
                chunk = await self.stream.receive_some()
                if not chunk:
                    return 0, {}, b""
                self.buffer += chunk
        except trio.BrokenResourceError:
            return 0, {}, b""
        raw, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            chunk = await self.stream.receive_some()
            if not chunk:
                break
            self.buffer += chunk
        payload, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split()[1]), headers, payload

    async def aclose(self) -> None:
        await self.stream.aclose()


async def fetch(addr: SockAddr, path: str = "/", method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """One request on a connection of its own."""
    client = await Client.open(addr)
    try:
        return await client.request(method, path)
    finally:
        await client.aclose()
