"""The client side of an HTTP/1.1 proxy session: reading requests with keep-alive, writing responses, refusing bad
requests, closing idle connections when the proxy drains. Shared by ``serve_http1`` (requests to an upstream
connection) and ``serve_carried`` (requests as streams of a shared HTTP/2 mesh connection), which say what one
exchange is (``_exchange``)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable

import trio

from dataplane.connections import ConnRecord
from dataplane.drain import Drain
from dataplane.http.model import BodyKind
from dataplane.http1.errors import Http1Error
from dataplane.http1.events import (
    NEED_DATA,
    ConnectionClosed,
    DataReceived,
    MessageEnded,
    Pending,
    RequestReceived,
)
from dataplane.http1.parser import RequestParser
from dataplane.http1.refusal import linger, refusal
from dataplane.upstream import direct_io


class ClientSide:
    """One client connection's requests, until it closes, an error closes it, or ``_exchange`` says to stop.

    Resource handling: ``sock`` is the client's descriptor as a stdlib socket (for direct_io); the caller detaches
    it (never closes it) when the session ends: the descriptor stays with ``client``."""

    def __init__(self, client: trio.SocketStream, rec: ConnRecord, drain: Drain | None) -> None:
        self.client = client
        trio_sock = client.socket
        self.sock = socket.socket(trio_sock.family, trio_sock.type, trio_sock.proto, trio_sock.fileno())
        self.rec = rec
        self.parser = RequestParser()
        self.between_requests = False  # a response was just sent: the next request cannot be here yet
        self.idle = False  # waiting for the next request, none in flight: a drain may close the connection now
        self.closing = False  # the last response said Connection: close (drain)
        self._drain = drain
        self._feed: Callable[[memoryview], object] = self.parser.receive_data

    async def serve(self, initial: bytes = b"") -> None:
        """Serve until the end; ``initial``: bytes already read from the client (and counted), parsed first. A client
        that resets or vanishes between or during requests gets nothing more (``client_reset``)."""
        if initial:
            self.parser.receive_data(initial)
        try:
            await self._run()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if self.rec.close_reason is None:
                self.rec.close_reason = "client_reset"
        finally:
            self.sock.detach()  # the descriptor stays the caller's, closed with ``client``

    async def _run(self) -> None:
        drain = self._drain
        token = drain.hook(self._drained) if drain is not None else None
        try:
            await self._serve()
        finally:
            if drain is not None and token is not None:
                drain.unhook(token)

    async def _exchange(self, request: RequestReceived) -> bool:
        """One request and its response; True when the client connection carries on with the next request."""
        raise NotImplementedError

    def _drained(self) -> None:
        """The proxy started draining: an idle connection closes now; a busy one after its exchange."""
        if self.idle:
            self.rec.cancel("drain")

    async def _serve(self) -> None:
        while True:
            try:
                event = await self._next_request_event()
            except Http1Error as exc:
                await self._refuse(exc.status, f"bad request: {exc.reason.value}", close=True)
                self.rec.close_reason = f"http_{exc.reason.value}"
                return
            if isinstance(event, ConnectionClosed):
                return
            assert isinstance(event, RequestReceived), event
            keep_going = await self._exchange(event)
            if not keep_going or self.closing:
                if self.closing and self.rec.close_reason is None:
                    self.rec.close_reason = "drain"
                return
            self.parser.start_next()
            self.between_requests = True

    async def _read_client(self) -> None:
        wait_first, self.between_requests = self.between_requests, False
        self.idle = wait_first
        drain = self._drain
        if wait_first and drain is not None and drain.draining:
            self._drained()  # it began while the last response was still streaming
        try:
            self.rec.up.received += await direct_io.receive(self.sock, self._feed, wait_first=wait_first)
        finally:
            self.idle = False

    async def _next_request_event(self) -> RequestReceived | DataReceived | MessageEnded | ConnectionClosed:
        while True:
            event = self.parser.next_event()
            if not isinstance(event, Pending):
                return event
            assert event is NEED_DATA, "asked for the next request before start_next()"
            await self._read_client()

    async def _send_client(self, data: bytes | bytearray) -> None:
        await direct_io.send_all(self.sock, data)
        self.rec.down.sent += len(data)

    async def _refuse(self, status: int, why: str, *, close: bool) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._send_client(refusal(status, why, close=close))
            if close:
                await linger(self.sock)

    async def _refuse_unsent(self, request: RequestReceived, status: int, why: str) -> bool:
        """Answer a request nothing of which was sent upstream; True when the connection carries on."""
        # The request body (if any) was not read: the connection cannot carry another request.
        body_pending = request.framing.kind is not BodyKind.NONE
        if not body_pending:
            ended = self.parser.next_event()
            assert isinstance(ended, MessageEnded), ended
        await self._refuse(status, why, close=body_pending)
        return not body_pending and request.keep_alive
