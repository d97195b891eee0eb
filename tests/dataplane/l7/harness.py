"""The whole proxy in this process (``Proxy`` from the app, as ``mesh-proxy`` builds it) with a forward listener:
detection and the HTTP proxies exactly as they run for real, on loopback without iptables."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from dataplane.app import Proxy
from dataplane.net.addr import SockAddr
from dataplane.settings import parse_args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Running:
    listen: SockAddr
    proxy: Proxy
    shutdown: trio.Event
    """Set it to start the drain (what SIGTERM does)."""
    stopped: trio.Event


@asynccontextmanager
async def running_proxy(upstream: SockAddr, *extra: str) -> AsyncIterator[Running]:
    """A running proxy whose forward listener leads to ``upstream``."""
    listen = SockAddr("127.0.0.1", free_port())
    settings = parse_args(
        [
            "--forward", f"{listen}={upstream}", "--admin", f"127.0.0.1:{free_port()}",
            "--outbound-port", str(free_port()), "--inbound-port", str(free_port()),
            "--ipv6", "off", "--mark", "0", "--drain-timeout", "1s", *extra,  # a later --drain-timeout wins
        ]
    )  # fmt: skip
    proxy = Proxy(settings)
    running = Running(listen, proxy, trio.Event(), trio.Event())

    async def serve(*, task_status: trio.TaskStatus[SockAddr] = trio.TASK_STATUS_IGNORED) -> None:
        await proxy.serve(running.shutdown, task_status=task_status)
        running.stopped.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(serve)
        yield running
        running.shutdown.set()


@asynccontextmanager
async def forwarding_proxy(upstream: SockAddr, *extra: str) -> AsyncIterator[tuple[SockAddr, Proxy]]:
    """A running proxy whose forward listener leads to ``upstream``; yields (listener address, proxy)."""
    async with running_proxy(upstream, *extra) as running:
        yield running.listen, running.proxy
