"""Relaying bytes both ways between two half-closeable streams.

Theory of operation: one copy loop per direction (the handler's own task and one child). Each loop reads at
most ``CHUNK`` bytes and writes them before reading again, so at most one chunk per direction is in the proxy:
a slow reader on one side pushes back on the writer on the other through the kernel's socket buffers. A FIN is
passed on with ``send_eof`` and the other direction keeps flowing (half-close). An error on either side ends both
directions at once, and the outcome says which side failed so the caller can reset the other one: a reset must
not turn into a clean FIN, which would make a truncated stream look complete.
"""

from __future__ import annotations

import enum
from typing import Final

import trio

from dataplane.connections import ConnRecord, Flow
from dataplane.errors import errno_name

CHUNK: Final = 65536  # one read per direction in flight: bounds memory per connection


class Outcome(enum.Enum):
    COMPLETED = "completed"  # both directions saw EOF and passed it on
    CLIENT_RESET = "client_reset"  # reading from or writing to the client failed
    UPSTREAM_RESET = "upstream_reset"  # reading from or writing to the upstream failed
    CANCELLED = "cancelled"  # closed from outside; the record carries the reason (relay engine only)


class _Abort(Exception):
    def __init__(self, outcome: Outcome, exc: BaseException) -> None:
        super().__init__(outcome.value)
        self.outcome = outcome
        self.errno = _errno_of(exc)


async def relay(
    client: trio.abc.HalfCloseableStream, upstream: trio.abc.HalfCloseableStream, rec: ConnRecord
) -> Outcome:
    """Copy client -> upstream and upstream -> client until both directions end; update ``rec`` as bytes move.

    Error handling: returns CLIENT_RESET or UPSTREAM_RESET (and records the errno name on ``rec``) instead of
    raising when a side breaks. Cancellation (idle sweep, drain) propagates; the caller records its reason.
    """
    aborted: list[_Abort] = []

    async def pump(
        src: trio.abc.HalfCloseableStream,
        dst: trio.abc.HalfCloseableStream,
        flow: Flow,
        src_fails: Outcome,
        dst_fails: Outcome,
        cancel_scope: trio.CancelScope,
    ) -> None:
        try:
            await _copy(src, dst, flow, src_fails, dst_fails)
        except _Abort as abort:
            aborted.append(abort)
            cancel_scope.cancel(reason=abort.outcome.value)
            return
        _half_closed(rec, src_fails)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            pump,
            upstream,
            client,
            rec.down,
            Outcome.UPSTREAM_RESET,
            Outcome.CLIENT_RESET,
            nursery.cancel_scope,
        )
        await pump(client, upstream, rec.up, Outcome.CLIENT_RESET, Outcome.UPSTREAM_RESET, nursery.cancel_scope)
    if not aborted:
        return Outcome.COMPLETED
    first = aborted[0]
    if first.outcome is Outcome.CLIENT_RESET:
        rec.src_errno = first.errno
    else:
        rec.dst_errno = first.errno
    return first.outcome


async def _copy(
    src: trio.abc.HalfCloseableStream,
    dst: trio.abc.HalfCloseableStream,
    flow: Flow,
    src_fails: Outcome,
    dst_fails: Outcome,
) -> None:
    while True:
        try:
            data = await src.receive_some(CHUNK)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _Abort(src_fails, exc) from exc
        if not data:
            break
        flow.received += len(data)
        try:
            await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _Abort(dst_fails, exc) from exc
        flow.sent += len(data)
    try:
        await dst.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise _Abort(dst_fails, exc) from exc


def _half_closed(rec: ConnRecord, side_done: Outcome) -> None:
    client_done = side_done is Outcome.CLIENT_RESET
    if rec.state == "open":
        rec.state = "client_half_closed" if client_done else "upstream_half_closed"
    elif rec.state in ("client_half_closed", "upstream_half_closed"):
        rec.state = "closing"


def _errno_of(exc: BaseException) -> str:
    cause = exc.__cause__
    if isinstance(cause, OSError):
        return errno_name(cause.errno)
    return "ECONNRESET"
