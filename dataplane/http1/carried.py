"""Outbound: one client connection's HTTP/1.1 requests carried to a meshed destination as HTTP/2 streams on the
proxy's shared mTLS connection there (ALPN ``triomesh.http1-h2/1``); the peer proxy restores HTTP/1.1.

Theory of operation: the client's bytes go through the strict ``RequestParser`` as in ``serve_http1``; each request
becomes a request block (``dataplane.http.carriage``: hop-by-hop fields removed, ``x-forwarded-*`` and
``x-request-id`` set) and opens a stream on the destination's shared connection (``SharedH2Upstreams``), which
multiplexes the requests of every client connection. A body already here goes with the headers; one still
arriving is pumped by a task while the response is awaited. The response block becomes an HTTP/1.1 head framed for
this client (Content-Length kept, else chunked; none after HEAD, for 204 and 304), its DATA the body.

Hand-overs, at a message boundary with the raw bytes of the request (``fallback``): Upgrade, CONNECT and
``Expect: 100-continue`` requests keep today's per-connection HTTP/1.1 path (``serve_http1``), and so does a
connection whose destination's proxy chose plain HTTP/1.1 (an older proxy), with the connection it answered on.

Errors users see, as ``serve_http1`` answers them, with ``x-triomesh-error``: a malformed request -> the parser's
4xx; the shared connection cannot be made -> 503; the stream refused or reset, or an invalid response, before the
response head -> 502 (a refused stream of a request all in hand is sent again once first); no response head within
``response_timeout`` -> 504. A response already started is never completed by us: the client connection closes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import trio

from dataplane.connections import ConnRecord
from dataplane.drain import Drain
from dataplane.errors import ConnectError
from dataplane.http.carriage import CarriageError, request_fields, response_head, trailer_fields
from dataplane.http.model import BodyKind, Framing, Headers, ResponseHead
from dataplane.http.request_id import RequestIds
from dataplane.http.wire import encode_chunk, encode_last_chunk, serialise_response_head
from dataplane.http1.alongside import relay_alongside
from dataplane.http1.client_side import ClientSide
from dataplane.http1.errors import Http1Error
from dataplane.http1.events import NEED_DATA, DataReceived, MessageEnded, RequestReceived
from dataplane.http1.upstream_failure import unreachable
from dataplane.http2.conn import H2Stream
from dataplane.http2.errors import H2Error, H2ErrorCode
from dataplane.http2.shared import Negotiated, Shared, SharedH2Upstreams
from dataplane.net.addr import SockAddr
from dataplane.telemetry.http_stats import HttpStats, RequestKey

MAX_ATTEMPTS: Final = 2  # a refused stream (REFUSED_STREAM, above a GOAWAY) of a request all in hand: once more

Fallback = Callable[[bytes, Negotiated[SockAddr] | None], Awaitable[None]]
"""Carry on with this client connection on the per-connection HTTP/1.1 path: the bytes read since the current
request began, and the plain HTTP/1.1 connection an older peer answered with (None: the pool connects)."""


@dataclass
class CarriedContext:
    """What one client connection's carriage needs from the proxy."""

    rec: ConnRecord
    upstream: SockAddr
    shared: SharedH2Upstreams[SockAddr]
    connect: Callable[[], Awaitable[Negotiated[SockAddr]]]
    """A new mesh connection to ``upstream`` offering the carriage (and plain HTTP/1.1 for an older peer)."""
    fallback: Fallback
    stats: HttpStats
    ids: RequestIds
    response_timeout: float | None = None
    drain: Drain | None = None


class _Failed(Exception):
    """The upstream side failed; ``status`` and ``why`` go to the client if it has no response head yet."""

    def __init__(self, status: int, why: str, *, error: str, retryable: bool = False) -> None:
        super().__init__(why)
        self.status = status
        self.why = why
        self.error = error
        self.retryable = retryable


async def serve_carried(client: trio.SocketStream, ctx: CarriedContext) -> None:
    """Proxy ``client``'s requests until it closes, an error closes the connection, or it is handed over."""
    await _Session(client, ctx).serve()


class _Session(ClientSide):
    def __init__(self, client: trio.SocketStream, ctx: CarriedContext) -> None:
        super().__init__(client, ctx.rec, ctx.drain)
        self.ctx = ctx
        self.raw = bytearray()  # the bytes of the current request not yet consumed (for a hand-over)
        self._feed = self._keep_raw
        self.client_ip = ctx.rec.client.ip.encode()
        self.authority = str(ctx.upstream).encode()

    def _keep_raw(self, data: memoryview) -> None:
        self.raw += data
        self.parser.receive_data(data)

    def _consumed(self) -> None:
        """Everything the parser has turned into events is no longer needed for a hand-over."""
        del self.raw[: len(self.raw) - self.parser.buffered]

    # === one exchange ===

    async def _exchange(self, request: RequestReceived) -> bool:
        """One request and its response; True when the client connection carries on with the next request."""
        ctx, rec = self.ctx, self.rec
        if request.upgrade is not None or request.is_connect or request.expect_continue:
            await ctx.fallback(bytes(self.raw), None)
            return False
        head = request.head
        started = trio.current_time()
        try:
            shared = await ctx.shared.get(ctx.upstream, ctx.connect)
        except ConnectError as exc:
            rec.requests += 1
            key = self._key(request)
            ctx.stats.response(key, status=503, latency_ms=_ms(started), error=exc.reason)
            return await self._refuse_unsent(request, 503, unreachable(ctx.upstream, exc.reason))
        if isinstance(shared, Negotiated):  # an older peer proxy: HTTP/1.1 inside mTLS from here on
            await ctx.fallback(bytes(self.raw), shared)
            return False
        rec.requests += 1
        rec.meshed_with(shared.peer)
        rec.dst_opened = True
        key = self._key(request)
        self._consumed()
        fields = request_fields(head, request.framing, authority=self.authority, client=self.client_ip, ids=ctx.ids)
        exchange = _Exchange(self, request, key, started)
        try:
            await exchange.run(shared, fields)
        except (_Failed, Http1Error) as exc:
            if exchange.stream is not None:
                exchange.stream.reset(H2ErrorCode.CANCEL)
            await self._failed(exchange, exc)
            return False
        except BaseException:
            if exchange.stream is not None:
                exchange.stream.reset(H2ErrorCode.CANCEL)
            raise
        return request.keep_alive and exchange.keep_alive and exchange.request_done

    async def _failed(self, exchange: _Exchange, exc: _Failed | Http1Error) -> None:
        """The upstream failed (``_Failed``) or the request body turned out malformed (``Http1Error``): counted,
        and answered unless a response already started (then the connection closes short of its end)."""
        if isinstance(exc, _Failed):
            status, why, error = exc.status, exc.why, exc.error
            if exchange.responded:
                self.rec.close_reason = "upstream_reset"
        else:
            status, why, error = exc.status, f"bad request: {exc.reason.value}", exc.reason.value
            self.rec.close_reason = f"http_{exc.reason.value}"
        if not exchange.recorded:
            self.ctx.stats.response(exchange.key, status=status, latency_ms=_ms(exchange.started), error=error)
        if not exchange.responded:
            await self._refuse(status, why, close=True)

    def _key(self, request: RequestReceived) -> RequestKey:
        authority = (request.head.headers.get(b"host") or b"").decode("latin-1")
        rec = self.rec
        return self.ctx.stats.request(rec.direction, authority, self.ctx.upstream, rec.tls, rec.peer_id)


class _Exchange:
    """One request on one stream of the shared connection, and its response to the client."""

    def __init__(self, session: _Session, request: RequestReceived, key: RequestKey, started: float) -> None:
        self.s = session
        self.request = request
        self.key = key
        self.started = started
        self.stream: H2Stream | None = None
        self.recorded = False
        self.responded = False
        self.request_done = False
        self.keep_alive = False
        self.pump_failed: BaseException | None = None

    async def run(self, shared: Shared, fields: list[tuple[bytes, bytes]]) -> None:
        s = self.s
        body, trailers = self._body_in_hand()
        attempt = 1
        while True:
            try:
                await self._send_request(shared, fields, bytes(body), trailers)
                if self.request_done:
                    await self._relay_response()
                else:
                    await self._stream_body()
            except _Failed as exc:
                if not (exc.retryable and self.request_done and attempt < MAX_ATTEMPTS):
                    raise
            else:
                return
            attempt += 1
            try:
                again = await s.ctx.shared.get(s.ctx.upstream, s.ctx.connect)
            except ConnectError as exc:
                raise _Failed(503, unreachable(s.ctx.upstream, exc.reason), error=exc.reason) from exc
            if isinstance(again, Negotiated):  # the peer changed under us: not worth a special path
                again.stream.close()
                raise _Failed(503, f"upstream {s.ctx.upstream} stopped carrying HTTP/2", error="alpn")
            shared = again

    def _body_in_hand(self) -> tuple[bytearray, Headers | None]:
        """The body parts already parsed (they go with the headers) and the trailers, if the body ended."""
        s = self.s
        body = bytearray()
        trailers: Headers | None = None
        if self.request.framing.kind is BodyKind.NONE:
            ended = s.parser.next_event()
            assert isinstance(ended, MessageEnded), ended
            self.request_done = True
        while not self.request_done:
            event = s.parser.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, DataReceived):
                body += event.data
            elif isinstance(event, MessageEnded):
                trailers = event.trailers or None
                self.request_done = True
        s._consumed()
        return body, trailers

    async def _send_request(
        self, shared: Shared, fields: list[tuple[bytes, bytes]], body: bytes, trailers: Headers | None
    ) -> None:
        rec = self.s.rec
        ended_with_headers = self.request_done and not body and trailers is None
        try:
            self.stream = stream = await shared.conn.open_stream(fields, end_stream=ended_with_headers)
            if body:
                await stream.send_data(body, end_stream=self.request_done and trailers is None)
                rec.up.sent += len(body)
            if trailers is not None:
                await stream.send_trailers(trailer_fields(trailers))
            elif self.request_done and body == b"" and not ended_with_headers:
                await stream.end()
        except H2Error as exc:
            why = f"upstream {self.s.ctx.upstream}: {exc}"
            raise _Failed(502, why, error=exc.reason, retryable=exc.retryable) from exc

    async def _stream_body(self) -> None:
        """The rest of the body is still coming: pumped by a task while the response is awaited."""
        failed, cut = await relay_alongside(
            self._pump,
            self._relay_response,
            failures=(_Failed, trio.BrokenResourceError, trio.ClosedResourceError),
            request_done=lambda: self.request_done,
        )
        if cut:
            self.keep_alive = False  # the client connection cannot carry another request now
        if failed is not None:
            raise failed
        if self.pump_failed is not None:
            raise self.pump_failed

    async def _pump(self, scope: trio.CancelScope) -> None:
        s = self.s
        stream = self.stream
        assert stream is not None
        try:
            while True:
                event = await s._next_request_event()
                s._consumed()
                if isinstance(event, DataReceived):
                    await stream.send_data(event.data)
                    s.rec.up.sent += len(event.data)
                elif isinstance(event, MessageEnded):
                    if event.trailers:
                        await stream.send_trailers(trailer_fields(event.trailers))
                    else:
                        await stream.end()
                    self.request_done = True
                    return
        except H2Error:
            return  # the upstream stopped taking the body: the response side sees why
        except (trio.BrokenResourceError, trio.ClosedResourceError, Http1Error) as exc:
            self.pump_failed = exc
            scope.cancel(reason="the request body failed")

    async def _relay_response(self) -> None:
        s = self.s
        stream = self.stream
        assert stream is not None
        timeout = s.ctx.response_timeout
        try:
            if timeout is None:
                fields = await stream.receive_response()
            else:
                with trio.move_on_after(timeout) as scope:
                    fields = await stream.receive_response()
                if scope.cancelled_caught:
                    why = f"no response from upstream within {timeout:g}s"
                    raise _Failed(504, why, error="response_timeout")
            head, framing = response_head(fields, method=self.request.head.method, version=self.request.head.version)
        except H2Error as exc:
            raise _Failed(502, f"upstream {s.ctx.upstream}: {exc}", error=exc.reason, retryable=exc.retryable) from exc
        except CarriageError as exc:
            raise _Failed(502, f"upstream {s.ctx.upstream}: {exc}", error="bad_response") from exc
        s.ctx.stats.response(self.key, status=head.status, latency_ms=_ms(self.started))
        self.recorded = True
        self.keep_alive = framing.kind is not BodyKind.UNTIL_CLOSE
        headers = head.headers
        drain = s.ctx.drain
        if drain is not None and drain.draining:
            headers.set(b"connection", b"close")
            s.closing = True
        out = bytearray(serialise_response_head(ResponseHead(head.status, head.reason, b"HTTP/1.1", headers), framing))
        self.responded = True
        await self._relay_body(stream, framing, out)

    async def _relay_body(self, stream: H2Stream, framing: Framing, out: bytearray) -> None:
        s = self.s
        chunked = framing.kind is BodyKind.CHUNKED
        try:
            while True:
                if not stream.queued and not stream.at_end and out:
                    await s._send_client(out)  # nothing more at hand: what we have goes out before waiting
                    out = bytearray()
                data = await stream.receive_data(hold=True)
                if not data:
                    break
                s.rec.down.received += len(data)
                if framing.kind is not BodyKind.NONE:
                    out += encode_chunk(data) if chunked else data
        except H2Error as exc:
            if out:
                await s._send_client(out)
            raise _Failed(502, f"upstream {s.ctx.upstream}: {exc}", error=exc.reason) from exc
        if chunked:
            out += encode_last_chunk(Headers(stream.trailers or ()))
        if out:
            await s._send_client(out)


def _ms(started: float) -> float:
    return (trio.current_time() - started) * 1000
