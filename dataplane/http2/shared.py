"""Upstream HTTP/2 connections shared by every client connection of a proxy, one per destination.

Why: HTTP/1.1 carried between proxies over HTTP/2 (``dataplane.http1.carried``) multiplexes the requests of all
client connections to one destination on one mTLS connection instead of one connection per request in flight.

Theory of operation: ``get`` returns the destination's connection while it takes new streams; otherwise one caller
(a lock per destination) connects a new one and starts ``H2Connection.run`` in this object's nursery (``run``,
in the proxy's root nursery: a connection outlives the client connection that opened it). A connection that
received GOAWAY, failed or closed is replaced by the next ``get``; streams already on it finish there. The peer's
MAX_CONCURRENT_STREAMS is honoured by ``H2Connection.open_stream``, which waits for a slot.

``connect`` negotiates: a peer that does not carry HTTP/1.1 over HTTP/2 (an older proxy) answers with a plain
HTTP/1.1 connection, which ``get`` returns to the caller (``Negotiated``) to use for HTTP/1.1; the
destination is then remembered as ``declined`` for ``DECLINED_FOR`` seconds, in which callers take the HTTP/1.1
path at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Final, Generic, NoReturn, TypeVar

import trio

from dataplane.http2.conn import H2Connection, H2Settings
from dataplane.http2.counters import H2Counters
from dataplane.http2.errors import H2Error
from dataplane.upstream.pool import PooledStream

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

DECLINED_FOR: Final = 300.0
"""Seconds a destination whose proxy chose plain HTTP/1.1 is not asked again (it may be upgraded meanwhile)."""


@dataclass(frozen=True, slots=True)
class Negotiated(Generic[K]):
    """A new mesh connection and what the peer agreed to carry on it."""

    stream: PooledStream[K]
    peer: str
    """The peer's verified identity."""
    carries_h2: bool
    """True: HTTP/2 carrying HTTP/1.1; False: the peer chose plain HTTP/1.1 (an older proxy)."""


@dataclass(frozen=True, slots=True)
class Shared:
    conn: H2Connection
    peer: str


class SharedH2Upstreams(Generic[K]):
    """See the module docstring. ``run`` must be running for ``get``."""

    def __init__(self, *, settings: H2Settings, counters: H2Counters) -> None:
        self._settings = settings
        self._counters = counters
        self._current: dict[K, Shared] = {}
        self._locks: dict[K, trio.Lock] = {}
        self._declined: dict[K, float] = {}
        self._nursery: trio.Nursery | None = None
        self.opened = 0  # connections opened (for tests and the docs' measurements)

    @property
    def connections(self) -> int:
        return len(self._current)

    def declined(self, key: K) -> bool:
        """The destination's proxy recently chose plain HTTP/1.1: use that path without asking."""
        since = self._declined.get(key)
        if since is None:
            return False
        if trio.current_time() - since < DECLINED_FOR:
            return True
        del self._declined[key]
        return False

    async def get(self, key: K, connect: Callable[[], Awaitable[Negotiated[K]]]) -> Shared | Negotiated[K]:
        """The shared connection to ``key`` (a new one if needed), or the plain HTTP/1.1 connection an older peer
        answered with (``carries_h2`` False). ``connect``'s errors (``ConnectError``) propagate."""
        current = self._current.get(key)
        if current is not None and current.conn.accepting:
            return current  # no lock to take per request: that would be a checkpoint each time
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = trio.Lock()
        async with lock:
            current = self._current.get(key)
            if current is not None and current.conn.accepting:
                return current
            if self._nursery is None:
                raise RuntimeError("SharedH2Upstreams.get() before run()")
            negotiated = await connect()
            if not negotiated.carries_h2:
                self._declined[key] = trio.current_time()
                log.info("%s does not carry HTTP/1.1 over HTTP/2: HTTP/1.1 inside mTLS there", key)
                return negotiated
            pooled = negotiated.stream
            transport = trio.SocketStream(trio.socket.from_stdlib_socket(pooled.sock))
            conn = H2Connection(transport, client_side=True, settings=self._settings, counters=self._counters)
            shared = Shared(conn, negotiated.peer)
            await self._nursery.start(self._run, key, shared, pooled)
            self._current[key] = shared
            self.opened += 1
            return shared

    async def _run(
        self, key: K, shared: Shared, pooled: PooledStream[K], *, task_status: trio.TaskStatus[None]
    ) -> None:
        try:
            await shared.conn.run(task_status=task_status)
        except H2Error as exc:  # its streams see the error themselves; the next get() connects again
            log.info("shared h2 connection to %s closed: %s", key, exc)
        finally:
            if self._current.get(key) is shared:
                del self._current[key]
            pooled.close()  # the transport is closed already; this tells the loop guard

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Hold the shared connections' tasks until cancelled (the proxy's root nursery)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None
        raise AssertionError("unreachable")
