"""The detect stage: what the client speaks, learnt by peeking, so the relay still forwards every byte.

Theory of operation. The handler calls ``detect`` once the upstream connection is up: the client's first bytes
have been arriving in the kernel meanwhile, so waiting for them and connecting overlap, and on the common path
(the first segment is already there and decides) detection costs one peek. Bytes are read with MSG_PEEK only,
so they stay in the kernel's receive buffer and whichever relay takes the connection next reads them as usual;
nothing is buffered or replayed in Python.

While the client has sent nothing, the upstream socket is watched too: a server that speaks first (SMTP, MySQL,
SSH banners) makes it readable, and the connection is opaque at once, without waiting for a client that is
itself waiting for the banner (Linkerd's 10 s stall on such ports, anchors.md pain point 5). Nothing is read
from the upstream either.

A peeked prefix that needs more bytes leaves the socket readable (level-triggered), so waiting again would spin.
Instead SO_RCVLOWAT is raised to one byte past what we have (or to the end of the first TLS record): the socket
becomes readable only when more bytes arrive, or on EOF or an error, and is set back to 1 before returning.

Error handling: the detect timeout gives ``read_timeout`` (opaque; or TLS without SNI if the hello was still
incomplete); the client's EOF decides on what it sent (``client_eof`` when that was not enough); a client reset
raises ``ClientResetError``. The caller's cancel scope (drain, policy) cancels detection like any other wait.
"""

from __future__ import annotations

import select
import socket
from typing import Final

import msgspec
import trio

from dataplane.detect.client_hello import MAX_RECORD, first_record_end, parse_client_hello
from dataplane.detect.sniff import MAX_REQUEST_LINE, Detected, NeedMore, Protocol, classify, is_h2_server_preface
from dataplane.errors import ClientResetError

# One peek can hold a whole first TLS record (for SNI) and more than the longest request line we wait for.
PEEK_LIMIT: Final = max(5 + MAX_RECORD, MAX_REQUEST_LINE)
_FIRST_BACKOFF: Final = 0.001  # seconds; doubles up to _MAX_BACKOFF while a wake-up brings no new bytes
_MAX_BACKOFF: Final = 0.05


class Detection(msgspec.Struct, frozen=True):
    """The detect stage's record: what the connection is and how that was decided."""

    protocol: Protocol
    result: str
    """``http/1``, ``http/2``, ``tls``, or why it is opaque: ``not_http``, ``line_too_long``, ``server_first``,
    ``read_timeout``, ``client_eof``. A closed set: it labels the results metric."""
    seconds: float
    """From the start of detection to the decision."""
    sni: str | None = None
    alpn: tuple[str, ...] = ()


async def detect(
    client: trio.socket.SocketType, upstream_fd: int | None, *, timeout: float, tls_only: bool = False
) -> Detection:
    """Peek at ``client``'s first bytes (watching ``upstream_fd`` for a server that speaks first) and decide.

    ``upstream_fd`` None: no upstream yet (a strict mTLS port connects only after the client proved itself).
    ``tls_only``: decide only whether it is a TLS ClientHello (``classify``).
    Consumes nothing from either socket. Raises ``ClientResetError`` if the client resets meanwhile.
    """
    started = trio.current_time()
    prefix = b""
    verdict: Detected | NeedMore = NeedMore()
    stopped = "read_timeout"  # why waiting ended without a final verdict
    lowat = 1
    backoff = _FIRST_BACKOFF
    watch_upstream = upstream_fd is not None
    try:
        with trio.move_on_after(timeout):
            while True:
                if (
                    upstream_fd is not None
                    and watch_upstream
                    and not _readable(client.fileno())
                    and not await _client_first(client, upstream_fd)
                ):
                    if not is_h2_server_preface(_peek_fd(upstream_fd)):
                        stopped = "server_first"
                        break
                    # An HTTP/2 server greets every connection with SETTINGS at once: keep waiting for the client.
                    watch_upstream = False
                    continue
                peeked = await _peek(client)
                if len(peeked) == len(prefix):
                    if _peer_closed(client.fileno()):
                        stopped = "client_eof"
                        break
                    # Readable without new bytes and without EOF (the kernel may wake a reader below
                    # SO_RCVLOWAT under memory pressure): wait a little instead of spinning.
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF)
                    continue
                prefix = peeked
                verdict = classify(prefix, tls_only=tls_only)
                wanted = _wanted(prefix, verdict)
                if wanted is None:
                    break
                lowat = wanted
                client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, lowat)
    finally:
        if lowat != 1:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
    seconds = trio.current_time() - started
    if isinstance(verdict, NeedMore):
        return Detection(Protocol.OPAQUE, stopped, seconds)
    if verdict.protocol is Protocol.TLS:
        # A hello we could not read whole (timeout, EOF) is still TLS, with the server name unknown.
        hello = parse_client_hello(prefix)
        if hello is not None:
            return Detection(Protocol.TLS, verdict.reason, seconds, sni=hello.sni, alpn=hello.alpn)
    return Detection(verdict.protocol, verdict.reason, seconds)


async def _peek(client: trio.socket.SocketType) -> bytes:
    try:
        return await client.recv(PEEK_LIMIT, socket.MSG_PEEK)
    except OSError as exc:
        raise ClientResetError(
            f"the client reset the connection during protocol detection ({exc.strerror})", errno=exc.errno
        ) from None


def _peek_fd(fd: int) -> bytes:
    """What the upstream has sent so far (at most one frame header), without consuming it."""
    with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as dup:  # a duplicate descriptor: ours to close
        try:
            return dup.recv(9, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except OSError:
            return b""


def _wanted(prefix: bytes, verdict: Detected | NeedMore) -> int | None:
    """How many bytes to wait for before looking again, or None when the verdict is final."""
    if isinstance(verdict, NeedMore):
        return len(prefix) + 1
    if verdict.protocol is Protocol.TLS:
        end = first_record_end(prefix)
        # Wait for the rest of the first record (the SNI is in it); a record we cannot use is not waited for.
        if end is not None and len(prefix) < end:
            return end
    return None


def _peer_closed(fd: int) -> bool:
    """Whether the peer has shut down its sending side (EOF), with data still unread or not."""
    poller = select.poll()
    poller.register(fd, select.POLLRDHUP)
    return any(events & (select.POLLRDHUP | select.POLLHUP) for _, events in poller.poll(0))


def _readable(fd: int) -> bool:
    """Whether ``fd`` is readable now (data, EOF or an error), without waiting."""
    ready, _, _ = select.select([fd], [], [], 0)
    return bool(ready)


async def _client_first(client: trio.socket.SocketType, upstream_fd: int) -> bool:
    """Wait until the client or the upstream is readable; True if the client is (it wins a tie)."""
    client_ready = False
    async with trio.open_nursery() as nursery:

        async def upstream_speaks() -> None:
            await trio.lowlevel.wait_readable(upstream_fd)
            nursery.cancel_scope.cancel(reason="the upstream spoke first")

        nursery.start_soon(upstream_speaks)
        await trio.lowlevel.wait_readable(client)
        client_ready = True
        nursery.cancel_scope.cancel(reason="the client spoke first")
    return client_ready or _readable(client.fileno())
