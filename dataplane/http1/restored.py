"""Inbound: the streams of a mesh connection that carries HTTP/1.1 over HTTP/2 (ALPN ``triomesh.http1-h2/1``),
each forwarded to the application as HTTP/1.1 on the inbound keep-alive pool, its response returned on the stream.

Theory of operation: the connection is the server side of an ``H2Connection`` (request header names with ``_``
allowed: they are the application's HTTP/1.1 fields); each valid stream gets a task (``_Exchange``) which is
authorized like any inbound HTTP request, turns the request block into an HTTP/1.1 head (``dataplane.http.carriage``:
Content-Length kept, else chunked when a body follows), takes an upstream connection from the pool, writes the head
and the body, and parses the response with the strict ``ResponseParser``: its head becomes the response block, its
body DATA, chunked trailers HTTP/2 trailers. The upstream connection goes back to the pool after a clean exchange.

Errors the peer proxy passes on (``x-triomesh-error``): denied -> 403; the application unreachable -> 503; a reset,
malformed or missing response before its head -> 502 (a bodiless idempotent request whose reused connection closed
unheard is sent once more on a fresh one, as ``serve_http1`` does); no response head within ``response_timeout``
-> 504. A response already started is reset (INTERNAL_ERROR), never completed by us.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import trio

from dataplane.connections import ConnRecord
from dataplane.drain import Drain
from dataplane.errors import ConnectError
from dataplane.http.authorize import DENIED_STATUS, RequestAuthorizer
from dataplane.http.carriage import request_head, response_fields, trailer_fields
from dataplane.http.errors import ERROR_FIELD, error_value
from dataplane.http.model import BodyKind, Headers
from dataplane.http.request_id import RequestIds
from dataplane.http.wire import encode_chunk, encode_last_chunk
from dataplane.http1.alongside import relay_alongside
from dataplane.http1.errors import Http1Error
from dataplane.http1.events import NEED_DATA, ConnectionClosed, DataReceived, MessageEnded, ResponseReceived
from dataplane.http1.parser import ResponseParser
from dataplane.http1.upstream_failure import bad_response, replayable, unreachable
from dataplane.http2.conn import H2Connection, H2Settings, H2Stream
from dataplane.http2.counters import H2Counters
from dataplane.http2.errors import H2Error, H2ErrorCode
from dataplane.net.addr import SockAddr
from dataplane.telemetry.http_stats import HttpStats, RequestKey
from dataplane.upstream import direct_io
from dataplane.upstream.pool import ConnectionPool, PooledStream

log = logging.getLogger(__name__)

CARRIAGE_SETTINGS: Final = H2Settings(allow_underscores=True)
"""The inbound side of the carriage: HTTP/1.1 field names may hold ``_`` (HTTP/2 clients' may not, G3 26)."""


@dataclass
class RestoredContext:
    """What one inbound carriage connection needs from the proxy."""

    rec: ConnRecord
    upstream: SockAddr
    pool: ConnectionPool[SockAddr]
    stats: HttpStats
    ids: RequestIds
    counters: H2Counters
    drain: Drain | None = None
    response_timeout: float | None = None
    authorize: RequestAuthorizer | None = None


class _Failed(Exception):
    def __init__(self, status: int, why: str, *, error: str) -> None:
        super().__init__(why)
        self.status = status
        self.why = why
        self.error = error


async def serve_restored(client: trio.SocketStream, ctx: RestoredContext) -> None:
    """Serve the peer proxy's streams until it closes, an error closes the connection, or a drain finishes."""
    server = H2Connection(client, client_side=False, settings=CARRIAGE_SETTINGS, counters=ctx.counters)
    async with trio.open_nursery() as nursery:
        drain = ctx.drain
        token = drain.hook(functools.partial(nursery.start_soon, server.drain)) if drain is not None else None
        try:
            await server.run(functools.partial(_serve_stream, ctx))
        except H2Error as exc:
            ctx.rec.close_reason = exc.reason
            log.info("conn=%d carried HTTP/1.1 connection closed: %s", ctx.rec.id, exc)
        finally:
            if drain is not None and token is not None:
                drain.unhook(token)
            nursery.cancel_scope.cancel(reason="the mesh connection ended")


async def _serve_stream(ctx: RestoredContext, stream: H2Stream) -> None:
    started = trio.current_time()
    rec = ctx.rec
    fields = stream.request_headers
    method, path = _get(fields, b":method"), _get(fields, b":path")
    key = ctx.stats.request(
        rec.direction, _get(fields, b":authority").decode("latin-1"), ctx.upstream, rec.tls, rec.peer_id
    )
    rec.requests += 1
    authorize = ctx.authorize
    if authorize is not None:
        allowed = authorize.check(method, path)
        authorize.count(allowed)
        if not allowed:
            ctx.stats.response(key, status=DENIED_STATUS, latency_ms=_ms(started), error="authz_denied")
            await _refuse(stream, DENIED_STATUS, authorize.why(method, path))
            return
    bodiless = stream.remote_ended and stream.buffered == 0 and not stream.trailers
    try:
        _, head, framing = request_head(fields, bodiless=bodiless, client=rec.client.ip.encode(), ids=ctx.ids)
    except ValueError as exc:
        ctx.stats.response(key, status=400, latency_ms=_ms(started), error="bad_request")
        await _refuse(stream, 400, f"bad request: {exc}")
        return
    exchange = _Exchange(ctx, stream, key, started, method, chunked=framing.kind is BodyKind.CHUNKED)
    try:
        await exchange.run(head, bodiless=bodiless)
    except _Failed as exc:
        exchange.discard()
        if not exchange.recorded:
            ctx.stats.response(key, status=exc.status, latency_ms=_ms(started), error=exc.error)
        if exchange.responded:
            stream.reset(H2ErrorCode.INTERNAL_ERROR)  # a started response is never completed by us
        else:
            await _refuse(stream, exc.status, exc.why)
    except BaseException:
        exchange.discard()
        raise


class _Exchange:
    def __init__(
        self, ctx: RestoredContext, stream: H2Stream, key: RequestKey, started: float, method: bytes, *, chunked: bool
    ) -> None:
        self.ctx = ctx
        self.stream = stream
        self.key = key
        self.started = started
        self.method = method
        self.chunked = chunked
        self.upstream: PooledStream[SockAddr] | None = None
        self.rparser = ResponseParser()
        self.recorded = False
        self.responded = False
        self.heard = False
        self.request_done = False

    def discard(self) -> None:
        if self.upstream is not None:
            self.ctx.pool.release(self.upstream, reusable=False)
            self.upstream = None

    async def run(self, head: bytes, *, bodiless: bool) -> None:
        ctx = self.ctx
        try:
            self.upstream = await ctx.pool.acquire(ctx.upstream)
        except ConnectError as exc:
            raise _Failed(503, unreachable(ctx.upstream, exc.reason), error=exc.reason) from exc
        if bodiless:
            self.request_done = True
            try:
                await self._send(head)
                await self._relay_response()
            except _Failed:
                if not self._replayable():
                    raise
                await self._replay(head)
            return
        await self._send(head)
        failed, cut = await relay_alongside(
            self._pump, self._relay_response, failures=(_Failed,), request_done=lambda: self.request_done
        )
        if cut:
            self.discard()  # the application answered before taking the whole body
        if failed is not None:
            raise failed

    def _replayable(self) -> bool:
        upstream = self.upstream
        return upstream is not None and replayable(
            self.method, upgrade=False, reused=upstream.reused, heard=self.heard, responded=self.responded
        )

    async def _replay(self, head: bytes) -> None:
        """The application closed a kept-alive connection as we reused it: it never saw the request."""
        self.discard()
        ctx = self.ctx
        try:
            self.upstream = await ctx.pool.connect(ctx.upstream)
        except ConnectError as exc:
            raise _Failed(503, unreachable(ctx.upstream, exc.reason), error=exc.reason) from exc
        self.rparser = ResponseParser()
        await self._send(head)
        await self._relay_response()

    async def _send(self, data: bytes) -> None:
        assert self.upstream is not None
        try:
            await direct_io.send_all(self.upstream.sock, data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _Failed(502, "upstream reset while sending the request", error="upstream_reset") from exc
        self.ctx.rec.up.sent += len(data)

    async def _pump(self, scope: trio.CancelScope) -> None:
        """Stream -> application: the request body (chunked again when it had no Content-Length)."""
        stream, rec = self.stream, self.ctx.rec
        try:
            while data := await stream.receive_data(hold=True):
                rec.up.received += len(data)
                await self._send(encode_chunk(data) if self.chunked else data)
            if self.chunked:
                trailers = [(n, v) for n, v in stream.trailers or () if not n.startswith(b":")]
                await self._send(encode_last_chunk(Headers(trailers)))
            self.request_done = True
        except (H2Error, _Failed):
            self.discard()  # the application has part of a request: that connection carries nothing more
            scope.cancel(reason="the request body failed")

    async def _read(self, *, wait_first: bool) -> None:
        assert self.upstream is not None
        try:
            n = await direct_io.receive(self.upstream.sock, self.rparser.receive_data, wait_first=wait_first)
        except trio.BrokenResourceError as exc:
            raise _Failed(502, "upstream reset the connection", error="upstream_reset") from exc
        self.ctx.rec.down.received += n
        self.heard = self.heard or n > 0

    def _event(self) -> object:
        try:
            return self.rparser.next_event()
        except Http1Error as exc:
            why, error = bad_response(exc, heard=self.heard)
            raise _Failed(502, why, error=error) from exc

    async def _relay_response(self) -> None:
        self.rparser.expect(self.method)
        timeout = self.ctx.response_timeout
        if timeout is None:
            response = await self._final_head()
        else:
            with trio.move_on_after(timeout) as scope:
                response = await self._final_head()
            if scope.cancelled_caught:
                raise _Failed(504, f"no response from upstream within {timeout:g}s", error="response_timeout")
        ctx, stream = self.ctx, self.stream
        ctx.stats.response(self.key, status=response.head.status, latency_ms=_ms(self.started))
        self.recorded = True
        block = response_fields(response.head, response.framing)
        try:
            if response.framing.kind is BodyKind.NONE:
                await stream.send_headers(block, end_stream=True)
                self.responded = True
                self._event()  # MessageEnded
            else:
                await stream.send_headers(block)
                self.responded = True
                await self._relay_body()
        except H2Error:
            # The peer proxy reset the stream (its client went away) or the connection ended.
            self.discard()
            raise _Failed(502, "the mesh stream ended", error="client_reset") from None
        self._done(response.keep_alive)

    async def _relay_body(self) -> None:
        stream, rec = self.stream, self.ctx.rec
        held = b""  # the last chunk waits for the next event: the end goes out with it (END_STREAM)
        while True:
            event = self._event()
            if event is NEED_DATA:
                if held:
                    await stream.send_data(held)
                    rec.down.sent += len(held)
                    held = b""
                await self._read(wait_first=False)
            elif isinstance(event, DataReceived):
                if held:
                    await stream.send_data(held)
                    rec.down.sent += len(held)
                held = event.data
            elif isinstance(event, MessageEnded):
                if event.trailers:
                    if held:
                        await stream.send_data(held)
                    await stream.send_trailers(trailer_fields(event.trailers))
                else:
                    await stream.send_data(held, end_stream=True)
                rec.down.sent += len(held)
                return
            else:
                raise _Failed(502, "upstream closed in the middle of the response", error="upstream_reset")

    def _done(self, keep_alive: bool) -> None:
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            reusable = keep_alive and self.rparser.buffered == 0 and self.request_done
            self.ctx.pool.release(upstream, reusable=reusable)

    async def _final_head(self) -> ResponseReceived:
        wait_first = True
        while True:
            event = self._event()
            if event is NEED_DATA:
                await self._read(wait_first=wait_first)
                wait_first = False
                continue
            if isinstance(event, ConnectionClosed):
                raise _Failed(502, "upstream closed without a response", error="upstream_reset")
            assert isinstance(event, ResponseReceived), event
            if not event.informational:
                return event


async def _refuse(stream: H2Stream, status: int, why: str) -> None:
    with contextlib.suppress(H2Error):
        headers = [(b":status", b"%d" % status), (b"content-type", b"text/plain"), (ERROR_FIELD, error_value(why))]
        await stream.send_headers(headers, end_stream=True)


def _get(fields: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes:
    return next((value for n, value in fields if n == name), b"")


def _ms(started: float) -> float:
    return (trio.current_time() - started) * 1000
