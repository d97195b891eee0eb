"""Keep-alive upstream connections, reused across requests and client connections.

HTTP/1.1 proxying opens one upstream connection per request in flight, not per request: when a response ends
cleanly the connection goes back to the pool under its key (the upstream and how it is reached), and the next
request to that key takes it instead of paying a handshake. Decisions (which idle connection, which expire) live
in the pure ``IdleSet``; this module adds the clock, the health check and the one sweeper task.

A connection handed out from the pool may have been closed by the server while idle: ``acquire`` checks that an
idle socket has nothing to read (an idle HTTP/1.1 connection has nothing to say: a byte means the server's FIN, a
reset or garbage) before reusing it, with one non-blocking ``MSG_PEEK`` read. A server can still close in the
instant after the check; the proxy loop then sends an idempotent request once more on a fresh connection
(``connect``), since the server provably never processed it.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, NoReturn, TypeVar

import trio

from dataplane.upstream import direct_io
from dataplane.upstream.idle_set import IdleSet

K = TypeVar("K", bound=Hashable)

_PEEK_FLAGS = int(socket.MSG_PEEK | socket.MSG_DONTWAIT)  # an int: OR-ing the enum flags costs per call
DEFAULT_MAX_IDLE_PER_KEY = 64
DEFAULT_IDLE_TIMEOUT = (
    60.0  # seconds; shorter than common server keep-alive timeouts would be wasteful, longer risks races
)


class PooledStream(Generic[K]):
    """One upstream connection and what the pool knows about it.

    Resource handling: owns ``sock`` (a connected, non-blocking stdlib socket; a ``trio.SocketStream`` given
    instead is taken over: its socket is detached from it) and closes it in ``close``.
    """

    __slots__ = ("key", "on_close", "peer", "reused", "sock")

    def __init__(
        self, key: K, sock: socket.socket | trio.SocketStream, on_close: Callable[[], None] | None = None
    ) -> None:
        if isinstance(sock, trio.SocketStream):
            trio_sock = sock.socket
            sock = socket.socket(trio_sock.family, trio_sock.type, trio_sock.proto, trio_sock.detach())
        sock.setblocking(False)
        self.key = key
        self.sock = sock
        self.on_close = on_close
        self.reused = False  # handed out from the pool rather than freshly connected
        self.peer: str | None = None  # over mesh mTLS: the server's verified identity

    def looks_idle(self) -> bool:
        """True when the socket has nothing to read: not closed, reset, or talking out of turn."""
        try:
            self.sock.recv(1, _PEEK_FLAGS)
        except BlockingIOError:
            return True
        except OSError:  # reset, or already closed
            return False
        return False  # a byte, or b"" for the server's FIN

    def close(self) -> None:
        """Close at once (no await): used for connections the pool drops."""
        direct_io.close(self.sock)
        if self.on_close is not None:
            callback, self.on_close = self.on_close, None
            callback()


Connect = Callable[[K], Awaitable[PooledStream[K]]]


class ConnectionPool(Generic[K]):
    def __init__(
        self,
        connect: Connect[K],
        *,
        max_idle_per_key: int = DEFAULT_MAX_IDLE_PER_KEY,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        self._connect = connect
        self._idle: IdleSet[K, PooledStream[K]] = IdleSet(max_per_key=max_idle_per_key, idle_timeout=idle_timeout)
        self._not_empty = trio.Event()
        self._closed = False
        self._retired: set[K] = set()  # keys whose connections close when released (``close_key``)
        self.opened = 0
        self.reused = 0

    @property
    def idle(self) -> int:
        return len(self._idle)

    def idle_for(self, key: K) -> int:
        return self._idle.count(key)

    async def acquire(self, key: K) -> PooledStream[K]:
        """An idle, healthy connection under ``key``, else a new one (``connect``'s errors propagate)."""
        if self._retired:
            self._retired.discard(key)  # in use again (an endpoint added back): its connections are kept again
        while True:
            conn, expired = self._idle.take(key, trio.current_time())
            _close_all(expired)
            if conn is None:
                break
            if conn.looks_idle():
                conn.reused = True
                self.reused += 1
                return conn
            conn.close()
        return await self.connect(key)

    async def connect(self, key: K) -> PooledStream[K]:
        """A new connection under ``key``, never an idle one (``connect``'s errors propagate)."""
        if self._retired:
            self._retired.discard(key)
        conn = await self._connect(key)
        self.opened += 1
        return conn

    def release(self, conn: PooledStream[K], *, reusable: bool) -> None:
        """Give ``conn`` back after a request: kept idle when ``reusable`` (the exchange ended cleanly and both
        sides allow keep-alive), else closed."""
        if not reusable or self._closed or (self._retired and conn.key in self._retired):
            conn.close()
            return
        was_empty = not self._idle
        _close_all(self._idle.put(conn.key, conn, trio.current_time()))
        if was_empty:
            self._not_empty.set()

    def close_key(self, key: K) -> None:
        """Close the idle connections under ``key`` (a service endpoint removed by a reload) and, until a connection
        to ``key`` is asked for again, each busy one when it comes back: they drain, none is kept."""
        self._retired.add(key)
        _close_all(self._idle.drop(key))

    def close_idle(self) -> None:
        """Close every idle connection (drain, shutdown); later releases close too."""
        self._closed = True
        _close_all(self._idle.clear())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Close idle connections when they expire, until cancelled; then close every idle one."""
        task_status.started()
        try:
            while True:
                deadline = self._idle.next_expiry()
                if deadline is None:
                    await self._not_empty.wait()
                    self._not_empty = trio.Event()
                    continue
                await trio.sleep_until(deadline)
                _close_all(self._idle.expire(trio.current_time()))
        finally:
            self.close_idle()


def _close_all(conns: list[PooledStream[K]]) -> None:
    for conn in conns:
        conn.close()
