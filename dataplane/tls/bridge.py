"""Mesh TLS connections presented to the rest of the proxy as plain sockets, all pumped by one engine task.

Why: every protocol path (the relay engine, the HTTP/1.1 engine and loop, the HTTP/2 proxy, the keep-alive pools)
works on connected stdlib sockets with direct system calls. Rather than teach each of them TLS, a verified TLS
connection is joined to one end of an ``AF_UNIX`` socketpair and the other end is handed to those paths as if it
were the peer's TCP socket (``open_bridge``).

Why an engine and not two trio tasks per connection: moving a message through the bridge is a few system calls
and one OpenSSL call; as trio tasks each step is a task switch and an epoll registration (a two-hop benchmark
spent most of its time there). Like ``dataplane.tcp.engine``, the TCP sockets and pair ends of every bridge sit in
one level-triggered epoll set driven by one task, and each wake-up runs the copy steps for all ready sockets.

Theory of operation, per bridge (``_Bridge``):
- ``_TCP`` readable: ciphertext goes into the TLS state, every plaintext record it completes goes to the pair end
  at once; what the pair end does not take stays ``owed`` to it and the TCP socket is not read until it drained.
  The peer's close_notify passes on as ``shutdown(SHUT_WR)`` of the pair end (TLS 1.3 half-close); a TCP end of
  file without close_notify is a truncation and ends the bridge.
- the pair end readable: plaintext is encrypted and sent; what TCP does not take stays ``owed`` to it and the pair
  end is not read until it drained (bounded: one read's worth per direction). Its end of file becomes
  close_notify.
- Both directions ended and flushed: both sockets close. Any error on either side closes both at once (the
  other side then sees its peer gone).

Resource handling: the engine owns the TCP socket and its pair end from ``open_bridge`` on and closes them exactly
once; the caller owns the returned socket.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
from typing import TYPE_CHECKING, Final, NoReturn

import trio

from dataplane.errors import ConnectError
from dataplane.net.epoll_interest import change_interest
from dataplane.tls.openssl import NeedData, TLSDataError, TLSEngine

if TYPE_CHECKING:
    from dataplane.tls.stream import TLSStream

CHUNK: Final = 65536  # one read per wake-up and direction: bounds what a bridge holds
MAX_EVENTS: Final = 512
_IN: Final = select.EPOLLIN
_OUT: Final = select.EPOLLOUT
_BROKEN: Final = select.EPOLLERR | select.EPOLLHUP
_LINGER_RESET: Final = struct.pack("ii", 1, 0)


class _Side:
    __slots__ = ("bridge", "eof", "fd", "is_tcp", "mask", "owed", "sock")

    def __init__(self, sock: socket.socket, bridge: _Bridge, *, is_tcp: bool) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.bridge = bridge
        self.is_tcp = is_tcp
        self.mask = _IN
        self.eof = False  # this side's peer ended its direction (close_notify / the pair end's EOF)
        self.owed = b""  # bytes for this socket it has not taken yet (ciphertext for TCP, plaintext for the pair)


class _Bridge:
    __slots__ = ("finished", "plain", "tcp", "tls")

    def __init__(self, tls: TLSEngine) -> None:
        self.tls = tls
        self.finished = False
        self.tcp: _Side
        self.plain: _Side


class BridgeEngine:
    """Pumps every mesh TLS bridge of a proxy; ``run`` must be running in the proxy's nursery."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._sides: dict[int, _Side] = {}
        self._buf = bytearray(CHUNK)
        self._view = memoryview(self._buf)  # slices of it are not copies: the TLS layer copies once, itself

    @property
    def bridging(self) -> int:
        return len(self._sides) // 2

    def open_bridge(self, tls: TLSStream) -> socket.socket:
        """The plaintext side of the handshaken ``tls`` as a connected, non-blocking socket.

        Raises ``ConnectError`` (and closes ``tls``) when no socketpair can be made (EMFILE at the descriptor
        limit): one connection fails, not the proxy."""
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError as exc:
            tcp_sock, _, _ = tls.detach()
            tcp_sock.close()
            raise ConnectError(f"no socketpair for a mesh TLS bridge ({exc.strerror})", errno=exc.errno) from None
        tcp_sock, engine, owed = tls.detach()
        theirs.setblocking(False)
        bridge = _Bridge(engine)
        bridge.tcp = _Side(tcp_sock, bridge, is_tcp=True)
        bridge.plain = _Side(ours, bridge, is_tcp=False)
        for side in (bridge.tcp, bridge.plain):
            self._sides[side.fd] = side
            self._epoll.register(side.fd, _IN)
        if owed:
            self._send(bridge.tcp, owed)
        # Records that came with the handshake (a client's first request) are in the TLS state already.
        if not bridge.finished:
            self._decrypt(bridge)
        return theirs

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        task_status.started()
        fd = self._epoll.fileno()
        poll = self._epoll.poll
        try:
            while True:
                await trio.lowlevel.wait_readable(fd)
                for ready_fd, events in poll(0, MAX_EVENTS):
                    self._dispatch(ready_fd, events)
        finally:
            for side in list(self._sides.values()):
                self._finish(side.bridge, reset=True)
            self._epoll.close()

    def _dispatch(self, fd: int, events: int) -> None:
        side = self._sides.get(fd)
        if side is None:
            return
        bridge = side.bridge
        if events & _OUT:
            self._flush(bridge, side)
            if bridge.finished:
                return
        if events & (_IN | _BROKEN) and not self._blocked(side):
            if side.is_tcp:
                self._read_tcp(bridge)
            else:
                self._read_plain(bridge)

    @staticmethod
    def _blocked(side: _Side) -> bool:
        """Reading this side would produce bytes for a destination that has not taken the last ones."""
        bridge = side.bridge
        other = bridge.plain if side.is_tcp else bridge.tcp
        return bool(other.owed) or side.eof

    # === TCP (ciphertext) -> pair end (plaintext) ===

    def _read_tcp(self, bridge: _Bridge) -> None:
        try:
            n = bridge.tcp.sock.recv_into(self._buf)
        except BlockingIOError:
            return
        except OSError:
            self._finish(bridge, reset=True)
            return
        if n == 0:  # end of file without close_notify: a truncation
            self._finish(bridge, reset=True)
            return
        bridge.tls.receive_data(self._view[:n])
        self._decrypt(bridge)

    def _decrypt(self, bridge: _Bridge) -> None:
        chunks = []
        closed = False
        try:
            while True:
                data = bridge.tls.read(CHUNK)
                if not data:
                    closed = True
                    break
                chunks.append(data)
        except NeedData:
            pass
        except TLSDataError:
            self._finish(bridge, reset=True)
            return
        owed = bridge.tls.data_to_send()  # e.g. a KeyUpdate answer
        if owed:
            self._send(bridge.tcp, owed)
            if bridge.finished:
                return
        if chunks:
            self._send(bridge.plain, b"".join(chunks))
            if bridge.finished:
                return
        if closed:
            bridge.tcp.eof = True
            self._update(bridge)
            self._pass_eof_to_plain(bridge)

    def _pass_eof_to_plain(self, bridge: _Bridge) -> None:
        if bridge.plain.owed:
            return  # after the flush
        try:
            bridge.plain.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._finish(bridge, reset=True)
            return
        self._maybe_done(bridge)

    # === pair end (plaintext) -> TCP (ciphertext) ===

    def _read_plain(self, bridge: _Bridge) -> None:
        try:
            n = bridge.plain.sock.recv_into(self._buf)
        except BlockingIOError:
            return
        except OSError:
            self._finish(bridge, reset=True)
            return
        try:
            if n == 0:
                bridge.plain.eof = True
                bridge.tls.close_notify()
            else:
                bridge.tls.write(self._view[:n])
        except TLSDataError:
            self._finish(bridge, reset=True)
            return
        self._send(bridge.tcp, bridge.tls.data_to_send())
        if n == 0 and not bridge.finished:
            self._update(bridge)
            self._maybe_done(bridge)

    # === both ===

    def _send(self, side: _Side, data: bytes) -> None:
        """Send what ``side`` is owed plus ``data``; keep what it does not take (and watch it for room)."""
        data = side.owed + data
        try:
            sent = side.sock.send(data) if data else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            self._finish(side.bridge, reset=True)
            return
        side.owed = data[sent:]
        if side.owed:
            self._update(side.bridge)

    def _flush(self, bridge: _Bridge, side: _Side) -> None:
        if side.owed:
            self._send(side, b"")
            if not bridge.finished and not side.owed and not side.is_tcp and bridge.tcp.eof:
                self._pass_eof_to_plain(bridge)
        if not bridge.finished:
            self._update(bridge)
            self._maybe_done(bridge)

    def _update(self, bridge: _Bridge) -> None:
        for side in (bridge.tcp, bridge.plain):
            mask = (0 if self._blocked(side) else _IN) | (_OUT if side.owed else 0)
            if mask != side.mask:
                change_interest(self._epoll, side.fd, side.mask, mask)
                side.mask = mask

    def _maybe_done(self, bridge: _Bridge) -> None:
        if bridge.tcp.eof and bridge.plain.eof and not bridge.tcp.owed and not bridge.plain.owed:
            self._finish(bridge, reset=False)

    def _finish(self, bridge: _Bridge, *, reset: bool) -> None:
        if bridge.finished:
            return
        bridge.finished = True
        for side in (bridge.tcp, bridge.plain):
            del self._sides[side.fd]
            if side.mask:
                self._epoll.unregister(side.fd)
            if reset and side.is_tcp:
                with contextlib.suppress(OSError):
                    side.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            side.sock.close()
