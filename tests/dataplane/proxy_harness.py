"""Running the real connection handler on loopback with a fixed original destination.

On loopback no iptables rule rewrites the destination, so SO_ORIGINAL_DST has nothing to return; ``FixedSide``
stands in for that one stage and everything else (accept, loop guard, policy, connect, relay, close, table,
metrics) is the production code. The netns tests cover the real SO_ORIGINAL_DST and TPROXY paths.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from dataplane.admin.schema import Direction
from dataplane.connections import ConnectionTable
from dataplane.handler import handle_connection
from dataplane.idle import sweep_idle
from dataplane.net.addr import SockAddr
from dataplane.net.loop_guard import LoopGuard
from dataplane.runtime import Runtime
from dataplane.tcp.engine import RelayEngine
from policy.index import PortSettings
from policy.model import Policy
from policy.store import PolicyStore, Snapshot


@dataclass
class FixedSide:
    dst: SockAddr
    direction: Direction = "outbound"
    intercepted: bool = True

    def original_dst(self, stream: trio.SocketStream, local: SockAddr) -> SockAddr:
        return self.dst

    def port_settings(self, snapshot: Snapshot, dst: SockAddr) -> PortSettings:
        return snapshot.index.outbound(dst.ip, dst.port)

    def source_ip(self, client: SockAddr) -> str | None:
        return None


@dataclass
class Harness:
    proxy: SockAddr
    table: ConnectionTable
    store: PolicyStore
    side: FixedSide

    async def connect(self) -> trio.SocketStream:
        return await trio.open_tcp_stream(self.proxy.ip, self.proxy.port)


@asynccontextmanager
async def running_proxy(dst: SockAddr, policy: Policy | None = None, *, engine: bool = True) -> AsyncIterator[Harness]:
    """The handler behind a loopback listener; ``engine`` False relays with trio tasks instead of the engine."""
    table = ConnectionTable()
    store = PolicyStore(policy or Policy(), source="test")
    relay_engine = RelayEngine() if engine else None
    rt = Runtime(
        table=table,
        store=store,
        guard=LoopGuard(frozenset()),
        mark=0,
        inbound_mode="redirect",
        engine=relay_engine,
    )
    side = FixedSide(dst)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    addr = SockAddr.from_sockname(listeners[0].socket.getsockname())
    async with trio.open_nursery() as nursery:
        if relay_engine is not None:
            await nursery.start(relay_engine.run)
        handler = functools.partial(handle_connection, side=side, rt=rt)
        await nursery.start(trio.serve_listeners, handler, listeners)
        nursery.start_soon(sweep_idle, table, store)
        yield Harness(addr, table, store, side)
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def loopback_server(handler: Callable[[trio.SocketStream], Awaitable[None]]) -> AsyncIterator[SockAddr]:
    """``handler`` serving every connection to a loopback port until the block ends; yields the address."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    addr = SockAddr.from_sockname(listeners[0].socket.getsockname())
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        yield addr
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def echo_server() -> AsyncIterator[SockAddr]:
    """A loopback server that echoes until EOF, then closes its side."""

    async def echo(stream: trio.SocketStream) -> None:
        async with stream:
            try:
                while data := await stream.receive_some(65536):
                    await stream.send_all(data)
                await stream.send_eof()
            except trio.BrokenResourceError:
                pass

    async with loopback_server(echo) as addr:
        yield addr


def free_port() -> int:
    """A loopback port nothing listens on (bound then closed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
