"""The per-connection error boundary shared by both directions.

Stages: accept -> original destination -> loop guard -> policy -> connect -> relay -> close. The direction-
specific parts (how the original destination is recovered, which policy applies, the source address of the
upstream connection) come from a ``Side``; everything else is the same for inbound and outbound.

Only bugs escape this function: every expected failure becomes a close reason on the connection record, one log
line and the right signal to the peers (a reset where the other side reset or could not be reached, a FIN
otherwise). trio's ``serve_listeners`` would let a handler exception crash the server.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from typing import Protocol

import trio

from dataplane.admin.schema import Direction
from dataplane.connections import ConnRecord
from dataplane.errors import ProxyError, RedirectLoopError
from dataplane.net.addr import SockAddr
from dataplane.net.connect import open_upstream
from dataplane.runtime import Runtime
from dataplane.tcp.relay import Outcome, relay
from policy.index import PortSettings
from policy.store import Snapshot

log = logging.getLogger(__name__)

_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST instead of FIN


class Side(Protocol):
    """What differs between inbound and outbound."""

    @property
    def direction(self) -> Direction: ...

    def original_dst(self, stream: trio.SocketStream, local: SockAddr) -> SockAddr: ...

    def port_settings(self, snapshot: Snapshot, dst: SockAddr) -> PortSettings: ...

    def source_ip(self, client: SockAddr) -> str | None: ...


async def handle_connection(stream: trio.SocketStream, side: Side, rt: Runtime) -> None:
    try:
        client = SockAddr.from_sockname(stream.socket.getpeername())
        local = SockAddr.from_sockname(stream.socket.getsockname())
    except OSError:
        # The client reset before we looked at it: nothing to proxy, nothing to record.
        _close(stream, reset=True)
        return
    rec = rt.table.open(side.direction, client, local)
    legs = _Legs(stream, rt)
    try:
        with trio.CancelScope() as scope:
            rec.scope = scope
            await _proxy(legs, rec, side, rt)
    except ProxyError as exc:
        rec.close_reason = exc.reason
        rec.dst_errno = exc.errno_name
        # The client asked for a connection we could not make: it should see a reset, as it would have from
        # the destination itself, never a clean end of stream.
        legs.reset_client = True
        level = logging.WARNING if isinstance(exc, RedirectLoopError) else logging.INFO
        log.log(level, "conn=%d %s %s -> %s: %s", rec.id, rec.direction, client, rec.target, exc)
    except trio.Cancelled:
        if rec.close_reason is None:
            rec.close_reason = "shutdown"
        raise
    finally:
        legs.close()
        rt.table.close(rec)
        _log_close(rec)


async def _proxy(legs: _Legs, rec: ConnRecord, side: Side, rt: Runtime) -> None:
    dst = side.original_dst(legs.client, rec.local)
    rec.original_dst = dst
    loop = rt.guard.check(rec.client, dst, rec.local)
    if loop is not None:
        raise RedirectLoopError(loop)
    snapshot = rt.store.current
    settings = side.port_settings(snapshot, dst)
    rec.policy_version = snapshot.version
    rec.idle_timeout = settings.idle_timeout
    rec.upstream = dst
    legs.upstream = await open_upstream(
        dst,
        timeout=settings.connect_timeout,
        mark=rt.mark,
        source_ip=side.source_ip(rec.client),
        on_local_address=legs.remember_upstream_local,
    )
    rec.dst_opened = True
    rec.state = "open"
    outcome = await relay(legs.client, legs.upstream, rec)
    if outcome is not Outcome.COMPLETED:
        rec.close_reason = outcome.value
        legs.reset_client = outcome is Outcome.UPSTREAM_RESET
        legs.reset_upstream = outcome is Outcome.CLIENT_RESET


class _Legs:
    """The two sockets of one proxied connection and how each must be closed."""

    def __init__(self, client: trio.SocketStream, rt: Runtime) -> None:
        self.client = client
        self.upstream: trio.SocketStream | None = None
        self.upstream_local: SockAddr | None = None
        self.reset_client = False
        self.reset_upstream = False
        self._guard = rt.guard

    def remember_upstream_local(self, addr: SockAddr) -> None:
        self.upstream_local = addr
        self._guard.add_upstream(addr)

    def close(self) -> None:
        if self.upstream_local is not None:
            self._guard.discard_upstream(self.upstream_local)
        if self.upstream is not None:
            _close(self.upstream, reset=self.reset_upstream)
        _close(self.client, reset=self.reset_client)


def _close(stream: trio.SocketStream, *, reset: bool) -> None:
    """Close synchronously (safe inside a cancelled scope), with RST when ``reset``."""
    sock = stream.socket
    if reset:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()


def _log_close(rec: ConnRecord) -> None:
    level = logging.DEBUG if rec.close_reason == "completed" else logging.INFO
    if not log.isEnabledFor(level):
        return
    duration = (rec.closed_at or rec.opened_at) - rec.opened_at
    log.log(
        level,
        "conn=%d closed %s client=%s dst=%s reason=%s errno=%s to_upstream=%dB to_client=%dB duration=%.3fs",
        rec.id,
        rec.direction,
        rec.client,
        rec.target,
        rec.close_reason,
        rec.src_errno or rec.dst_errno or "-",
        rec.up.sent,
        rec.down.sent,
        duration,
    )
