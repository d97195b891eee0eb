"""The relay engine: every opaque plaintext relay of a worker driven by one task and one epoll set.

Why not one trio task per direction (``relay.py``)? For opaque TCP the proxy does almost nothing per message,
so the cost is the event loop: every read is a task switch and an epoll registration. Here the sockets of all
relayed connections sit in one level-triggered epoll set owned by one task. That task wakes once for a batch
of ready sockets (trio sees only the epoll descriptor) and runs the copy steps for all of them without a task
switch. A connection costs no task and no coroutine frame while it is idle, only a few small objects.

Theory of operation, per direction (a ``_Half``): when the source is readable, move what it has to the
destination at once, in one of two ways:

- copy: ``recv_into`` the engine's one buffer (at most ``CHUNK``), ``send`` it. Cheapest for small messages.
- splice: when a read fills the whole buffer the direction is moving bulk data, so it borrows a pipe from the
  pool and moves bytes socket -> pipe -> socket with splice(2), never copying them into Python. When reads get
  small again the direction gives the (empty) pipe back and copies again.

What the destination does not take stays ``pending`` (copy: at most one chunk in Python; splice: at most one
pipe in the kernel); reading from the source stops and the destination is watched for writability until it
drains: backpressure, with a bounded amount held per direction. A read of 0 bytes is the source's FIN: once the
pending bytes are flushed, ``shutdown(SHUT_WR)`` passes it on and the other direction keeps flowing
(half-close). When both directions have passed their FIN the connection is complete. An error on either socket
resets the other one (SO_LINGER 0): a reset must not turn into a clean FIN.

Resource handling: the engine owns the sockets handed to ``add`` and closes them exactly once, whatever ends the
connection (completion, an error, or ``ConnRecord.cancel`` from the idle sweep, drain or policy), gives back any
pipe, and then calls the ``on_done`` callback once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import struct
from collections.abc import Callable
from typing import Final, NoReturn

import trio

from dataplane.connections import ConnRecord, Flow
from dataplane.errors import errno_name
from dataplane.net.epoll_interest import change_interest
from dataplane.tcp.pipes import PIPE_SIZE, PipePool
from dataplane.tcp.relay import Outcome

CHUNK: Final = 65536  # bytes per copy-mode read; a read this full switches the direction to splice
SMALL_SPLICE: Final = 16384  # a splice moving less than this switches the direction back to copying
MAX_EVENTS: Final = 512  # events handled per wake-up before other trio tasks get a turn
_IN: Final = select.EPOLLIN
_OUT: Final = select.EPOLLOUT
_BROKEN: Final = select.EPOLLERR | select.EPOLLHUP
_SPLICE_FLAGS: Final = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
_LINGER_RESET: Final = struct.pack("ii", 1, 0)

OnDone = Callable[[ConnRecord, Outcome], None]


class _End:
    """One socket of a relayed connection."""

    __slots__ = ("fd", "is_client", "mask", "pair", "reader", "sock", "writer")

    def __init__(self, sock: socket.socket, pair: _Pair, is_client: bool) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.pair = pair
        self.is_client = is_client
        self.mask = _IN
        self.reader: _Half  # the direction reading from this socket
        self.writer: _Half  # the direction writing to this socket


class _Half:
    """One direction: bytes from ``src`` to ``dst``."""

    __slots__ = ("dst", "eof", "flow", "pending", "pipe", "piped", "src")

    def __init__(self, src: _End, dst: _End, flow: Flow) -> None:
        self.src = src
        self.dst = dst
        self.flow = flow
        self.pending: bytes | None = None  # copy mode: bytes the destination has not taken yet
        self.pipe: tuple[int, int] | None = None  # splice mode: the borrowed pipe
        self.piped = 0  # splice mode: bytes in the pipe the destination has not taken yet
        self.eof = False  # the source sent FIN

    @property
    def blocked(self) -> bool:
        """Bytes are waiting for the destination: do not read more from the source."""
        return self.pending is not None or self.piped > 0


class _Pair:
    __slots__ = ("client", "down", "finished", "on_done", "rec", "up", "upstream")

    def __init__(self, rec: ConnRecord, on_done: OnDone) -> None:
        self.rec = rec
        self.on_done = on_done
        self.finished = False
        self.client: _End
        self.upstream: _End
        self.up: _Half
        self.down: _Half


class RelayEngine:
    def __init__(self, *, chunk: int = CHUNK, splice: bool = True, pipes: PipePool | None = None) -> None:
        self._epoll = select.epoll()
        self._ends: dict[int, _End] = {}
        self._buf = bytearray(chunk)
        self._view = memoryview(self._buf)
        self._splice = splice
        self.pipes = pipes if pipes is not None else PipePool()

    @property
    def relaying(self) -> int:
        """Connections being relayed now."""
        return len(self._ends) // 2

    @property
    def max_held_per_direction(self) -> int:
        """The most bytes one direction can hold inside the proxy (the backpressure bound)."""
        return max(len(self._buf), PIPE_SIZE if self._splice else 0)

    def add(self, client: socket.socket, upstream: socket.socket, rec: ConnRecord, on_done: OnDone) -> None:
        """Start relaying between two connected, non-blocking sockets; the engine owns them from now on."""
        pair = _Pair(rec, on_done)
        pair.client = c = _End(client, pair, is_client=True)
        pair.upstream = u = _End(upstream, pair, is_client=False)
        pair.up = _Half(c, u, rec.up)
        pair.down = _Half(u, c, rec.down)
        c.reader = u.writer = pair.up
        u.reader = c.writer = pair.down
        for end in (c, u):
            end.sock.setblocking(False)
            self._ends[end.fd] = end
            self._epoll.register(end.fd, _IN)
        rec.state = "open"
        rec.on_cancel = lambda _reason: self._finish(pair, Outcome.CANCELLED, reset=None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Relay until cancelled. Only epoll's descriptor is known to trio."""
        task_status.started()
        fd = self._epoll.fileno()
        poll = self._epoll.poll
        dispatch = self._dispatch
        try:
            while True:
                await trio.lowlevel.wait_readable(fd)
                for ready_fd, events in poll(0, MAX_EVENTS):
                    dispatch(ready_fd, events)
        finally:
            self._epoll.close()
            self.pipes.close()

    # === the copy steps ===

    def _dispatch(self, fd: int, events: int) -> None:
        end = self._ends.get(fd)
        if end is None:  # closed earlier in this batch
            return
        pair = end.pair
        writer = end.writer
        if events & _OUT and writer.blocked:
            self._flush(writer)
            if pair.finished:
                return
        reader = end.reader
        if events & (_IN | _BROKEN) and not reader.eof and not reader.blocked:
            if reader.pipe is None:
                self._copy(reader)
            else:
                self._splice_in(reader)
        elif events & select.EPOLLERR:
            # Nothing to read or write here, yet the socket failed (a reset while we wait on the other side).
            code = end.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) or errno.ECONNRESET
            self._abort(pair, end, code)

    def _copy(self, half: _Half) -> None:
        src = half.src
        try:
            n = src.sock.recv_into(self._buf)
        except BlockingIOError:
            return
        except OSError as exc:
            self._abort(src.pair, src, exc.errno)
            return
        if n == 0:
            self._source_eof(half)
            return
        half.flow.received += n
        dst = half.dst
        try:
            sent = dst.sock.send(self._view[:n])
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._abort(src.pair, dst, exc.errno)
            return
        half.flow.sent += sent
        if sent < n:
            half.pending = bytes(self._view[sent:n])
            self._update(src)
            self._update(dst)
        elif n == len(self._buf) and self._splice:
            half.pipe = self.pipes.take()  # bulk: splice from the next read on (None: keep copying)

    def _splice_in(self, half: _Half) -> None:
        src = half.src
        assert half.pipe is not None
        try:
            n = os.splice(src.fd, half.pipe[1], PIPE_SIZE, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            return
        except OSError as exc:
            self._abort(src.pair, src, exc.errno)
            return
        if n == 0:
            self._source_eof(half)
            return
        half.flow.received += n
        half.piped = n
        self._splice_out(half)
        if src.pair.finished:
            return
        if half.piped:
            self._update(src)
            self._update(half.dst)
        elif n < SMALL_SPLICE:
            self._release_pipe(half)

    def _splice_out(self, half: _Half) -> None:
        assert half.pipe is not None
        dst = half.dst
        try:
            sent = os.splice(half.pipe[0], dst.fd, half.piped, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            return
        except OSError as exc:
            self._abort(dst.pair, dst, exc.errno)
            return
        half.flow.sent += sent
        half.piped -= sent

    def _flush(self, half: _Half) -> None:
        dst = half.dst
        if half.piped:
            self._splice_out(half)
            if dst.pair.finished or half.piped:
                return
        else:
            pending = half.pending
            assert pending is not None
            try:
                sent = dst.sock.send(pending)
            except BlockingIOError:
                return
            except OSError as exc:
                self._abort(dst.pair, dst, exc.errno)
                return
            half.flow.sent += sent
            if sent < len(pending):
                half.pending = pending[sent:]
                return
            half.pending = None
        self._update(dst)
        if half.eof:
            self._pass_eof(half)
        else:
            self._update(half.src)

    def _source_eof(self, half: _Half) -> None:
        half.eof = True
        self._update(half.src)
        self._pass_eof(half)

    def _pass_eof(self, half: _Half) -> None:
        if half.blocked:
            return  # after the flush
        if half.pipe is not None:
            self._release_pipe(half)
        pair = half.src.pair
        try:
            half.dst.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._abort(pair, half.dst, exc.errno)
            return
        if pair.up.eof and pair.down.eof and not pair.up.blocked and not pair.down.blocked:
            pair.rec.state = "closing"
            self._finish(pair, Outcome.COMPLETED, reset=None)
        else:
            pair.rec.state = "client_half_closed" if half is pair.up else "upstream_half_closed"

    def _release_pipe(self, half: _Half) -> None:
        assert half.pipe is not None
        self.pipes.give_back(half.pipe, empty=half.piped == 0)
        half.pipe = None
        half.piped = 0

    def _update(self, end: _End) -> None:
        """Watch ``end`` for what its two directions need now.

        A socket that needs nothing (its reader waits on the other socket, its writer has nothing pending) is
        taken out of the epoll set: EPOLLHUP cannot be masked and would otherwise wake us in a loop.
        """
        reader, writer = end.reader, end.writer
        mask = (_IN if not reader.eof and not reader.blocked else 0) | (_OUT if writer.blocked else 0)
        old = end.mask
        if mask == old:
            return
        end.mask = mask
        change_interest(self._epoll, end.fd, old, mask)

    # === endings ===

    def _abort(self, pair: _Pair, failed: _End, code: int | None) -> None:
        rec = pair.rec
        name = errno_name(code) or "ECONNRESET"
        if failed.is_client:
            rec.src_errno = name
            self._finish(pair, Outcome.CLIENT_RESET, reset=pair.upstream)
        else:
            rec.dst_errno = name
            self._finish(pair, Outcome.UPSTREAM_RESET, reset=pair.client)

    def _finish(self, pair: _Pair, outcome: Outcome, reset: _End | None) -> None:
        if pair.finished:
            return
        pair.finished = True
        pair.rec.on_cancel = None
        for half in (pair.up, pair.down):
            if half.pipe is not None:
                self._release_pipe(half)
        for end in (pair.client, pair.upstream):
            del self._ends[end.fd]
            if end.mask:
                self._epoll.unregister(end.fd)
            if end is reset:
                with contextlib.suppress(OSError):
                    end.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            end.sock.close()
        pair.on_done(pair.rec, outcome)
