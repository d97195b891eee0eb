"""Proxying one client connection's HTTP/1.1 requests, with keep-alive on both sides.

Theory of operation: the client's bytes go through the strict ``RequestParser``; each request is rewritten
(hop-by-hop fields removed, ``x-forwarded-*`` set, ``x-request-id`` ensured), written upstream in canonical form
on a connection from the keep-alive pool, and its response comes back through the ``ResponseParser`` the same
way. Bodies stream in both directions with backpressure: a chunk is read from one side only after the previous
one was written to the other. A request whose body is not all here yet gets a pump task so the response can start
before the body ends (``Expect: 100-continue``, early 413s). After a 101 to an Upgrade, or a 2xx to CONNECT, the
connection becomes a raw relay, starting with whatever either parser had buffered.

Errors users see: a malformed request is answered with the parser's status (400, 414, 431, 501, 505) and the
connection closed; nothing reaches the upstream. No upstream connection: 503. A malformed, reset or missing
response: 502, and the upstream connection is discarded. No response head within ``response_timeout``: 504.
Each error response carries ``x-triomesh-error`` with one line saying why. A response already started is never
completed by us: the client connection is closed without the final chunk (or short of its Content-Length).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import trio

from dataplane.balance.retry_rule import Failure
from dataplane.connections import ConnRecord
from dataplane.drain import Drain
from dataplane.errors import ConnectError
from dataplane.http.authorize import DENIED_STATUS, RequestAuthorizer
from dataplane.http.forwarding import forwarded_request_head, strip_hop_by_hop
from dataplane.http.model import BodyKind, Framing, Headers, ResponseHead
from dataplane.http.request_id import RequestIds
from dataplane.http.wire import encode_chunk, encode_last_chunk, serialise_response_head
from dataplane.http1.alongside import relay_alongside
from dataplane.http1.client_side import ClientSide
from dataplane.http1.errors import Http1Error
from dataplane.http1.events import (
    NEED_DATA,
    ConnectionClosed,
    DataReceived,
    MessageEnded,
    Pending,
    RequestReceived,
    ResponseEvent,
    ResponseReceived,
)
from dataplane.http1.framing import downstream_response_framing
from dataplane.http1.parser import ResponseParser
from dataplane.http1.upstream_failure import bad_response, replayable, unreachable
from dataplane.net.addr import SockAddr
from dataplane.services.call import ServiceCall
from dataplane.services.departures import Departures
from dataplane.services.routing import ServiceRouting
from dataplane.tcp.relay import relay
from dataplane.telemetry.http_stats import HttpStats, RequestKey
from dataplane.upstream import direct_io
from dataplane.upstream.pool import ConnectionPool, PooledStream

UpstreamKey = SockAddr
"""Where a request goes: the connection's original destination, or the service endpoint chosen for it."""


@dataclass
class Http1Context:
    """What one client connection's HTTP/1.1 proxying needs from the proxy."""

    rec: ConnRecord
    upstream: SockAddr
    pool: ConnectionPool[UpstreamKey]
    stats: HttpStats
    ids: RequestIds
    response_timeout: float | None = None
    """Seconds from the request's end to the response head before answering 504 (None: wait)."""
    drain: Drain | None = None
    """The proxy's drain signal: idle keep-alive connections close when it starts, busy ones after their exchange."""
    authorize: RequestAuthorizer | None = None
    """Inbound authorization per request (403 when denied); None: every request is allowed."""
    routing: ServiceRouting | None = None
    """``upstream`` is a service's virtual address: each request goes to one of its endpoints."""
    departures: Departures | None = None
    """With ``routing``: notices clients that leave while their response is awaited."""


class _ResponseFailed(Exception):
    """The upstream side failed; ``status`` and ``why`` go to the client if it has no response head yet."""

    def __init__(self, status: int, why: str, *, error: str, failure: Failure | None = None) -> None:
        super().__init__(why)
        self.status = status
        self.why = why
        self.error = error  # the metric's error label
        self.failure = failure  # what a service route's retry conditions call it; None: never retried


class _Retry(Exception):
    """A service's response the route retries (a listed status): dropped unseen, the request is tried again."""


async def serve_http1(client: trio.SocketStream, ctx: Http1Context, *, initial: bytes = b"") -> None:
    """Proxy requests from ``client`` until it closes, an error closes the connection, or an upgrade is done.

    ``initial``: bytes already read from the client (and counted on ``ctx.rec``), parsed before reading more: the
    epoll engine hands a connection over at a message boundary with the request it will not serve itself.
    """
    await _Session(client, ctx).serve(initial)


class _Session(ClientSide):
    def __init__(self, client: trio.SocketStream, ctx: Http1Context) -> None:
        super().__init__(client, ctx.rec, ctx.drain)
        self.ctx = ctx
        self.client_ip = ctx.rec.client.ip.encode()
        self.exchange: _Exchange  # the request in flight (its replay, once sent again)
        self.kept = False  # the request's body was read whole before it was sent (a service's, to retry it)
        self.sent = False  # ``exchange`` is this request's (it has an upstream connection)
        self._unsent: tuple[int, str, str] = (503, "", "")  # (status, why, error) of a request that never went out

    async def _exchange(self, request: RequestReceived) -> bool:
        """One request and its response; True when the client connection carries on with the next request."""
        ctx = self.ctx
        self.rec.requests += 1
        started = trio.current_time()
        head = request.head
        authority = (head.headers.get(b"host") or b"").decode("latin-1")
        key = ctx.stats.request(self.rec.direction, authority, ctx.upstream, self.rec.tls, self.rec.peer_id)
        authorize = ctx.authorize
        if authorize is not None:
            allowed = authorize.check(head.method, head.target)
            authorize.count(allowed)
            if not allowed:
                why = authorize.why(head.method, head.target)
                return await self._answer_unsent(request, key, started, DENIED_STATUS, why, error="authz_denied")
        forwarded = forwarded_request_head(
            head, request.framing, upgrade=request.upgrade, client=self.client_ip, proto=b"http", ids=ctx.ids
        )
        call = None
        if ctx.routing is not None:
            try:
                call = ctx.routing.call(head.method.decode("latin-1"), head.target.decode("latin-1"))
            except ConnectError as exc:  # shed: the service's queue is full
                return await self._answer_unsent(request, key, started, 503, str(exc), error=exc.reason)
        self.kept = False
        try:
            return await self._forward(request, key, started, forwarded, call)
        finally:
            if call is not None:
                call.finish()

    async def _forward(
        self, request: RequestReceived, key: RequestKey, started: float, forwarded: bytes, call: ServiceCall | None
    ) -> bool:
        """Send the request upstream (to the original destination, or to a service's endpoints with retries) and
        relay its response; True when the client connection carries on."""
        ctx = self.ctx
        self.sent = False
        try:
            if call is None:
                if not await self._first_try(ctx.upstream, request, key, started):
                    return await self._unsent_answered(request)
                await self._run_exchange(forwarded)
            elif not await self._service_tries(call, request, key, started, forwarded):
                return await self._unsent_answered(request)
        except _ResponseFailed as exc:
            return await self._upstream_failed(exc, key, started)
        except Http1Error as exc:  # the request body turned out malformed (a bad chunk)
            return await self._bad_body(exc, key, started)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if self.sent:
                ctx.pool.release(self.exchange.upstream, reusable=False)
            self.rec.close_reason = "client_reset"
            return False
        except BaseException:
            if self.sent:  # cancelled from outside (a client gone, drain timeout, revocation): close the upstream
                ctx.pool.release(self.exchange.upstream, reusable=False)
            raise
        exchange = self.exchange
        if call is not None:
            call.answered = exchange.status < 500  # a retried request that ends on a 5xx did not succeed
        if exchange.switched:
            return False
        ctx.pool.release(exchange.upstream, reusable=exchange.upstream_reusable)
        return request.keep_alive and exchange.response_keep_alive and exchange.request_done

    async def _upstream_failed(self, exc: _ResponseFailed, key: RequestKey, started: float) -> bool:
        """The upstream failed the request: 502/503/504 if the client has no response head yet, else a close."""
        exchange = self.exchange  # the replay's, if the request was sent again
        self.ctx.pool.release(exchange.upstream, reusable=False)
        if not exchange.recorded:
            self.ctx.stats.response(exchange.key, status=exc.status, latency_ms=_ms(started), error=exc.error)
        if exchange.responded:
            self.rec.close_reason = "upstream_reset"
            return False  # a started response is never faked complete: close without its end
        await self._refuse(exc.status, exc.why, close=True)
        return False

    async def _bad_body(self, exc: Http1Error, key: RequestKey, started: float) -> bool:
        """The request body was malformed: 400-ish if the client has no response head yet; the connection ends."""
        responded = recorded = False
        if self.sent:  # else it failed while a service's request body was being read, before any try
            exchange = self.exchange
            self.ctx.pool.release(exchange.upstream, reusable=False)
            responded, recorded, key = exchange.responded, exchange.recorded, exchange.key
        if not recorded:
            self.ctx.stats.response(key, status=exc.status, latency_ms=_ms(started), error=exc.reason.value)
        if not responded:
            await self._refuse(exc.status, f"bad request: {exc.reason.value}", close=True)
        self.rec.close_reason = f"http_{exc.reason.value}"
        return False

    async def _first_try(self, target: SockAddr, request: RequestReceived, key: RequestKey, started: float) -> bool:
        """``self.exchange`` on a connection to ``target``; False once the client was answered 503 instead."""
        try:
            upstream = await self.ctx.pool.acquire(target)
        except ConnectError as exc:
            # Unreachable, refused, a connect timeout or failed mesh TLS alike (Envoy: 503 UF); 504 is for responses.
            self._unsent = (503, unreachable(target, exc.reason), exc.reason)
            self.ctx.stats.response(key, status=503, latency_ms=_ms(started), error=exc.reason)
            return False
        self.rec.dst_opened = True
        if upstream.peer is not None:  # a service endpoint reached over mesh mTLS: say so in the record and metrics
            self.rec.meshed_with(upstream.peer)
            key = self.ctx.stats.relabel(key, "true", upstream.peer)
        self.exchange = _Exchange(self, upstream, request, key, started, target)
        self.sent = True
        return True

    async def _service_tries(
        self, call: ServiceCall, request: RequestReceived, key: RequestKey, started: float, forwarded: bytes
    ) -> bool:
        """A service's request: tries on endpoints the balancer picks until one answers or the route says stop.
        The request is kept (up to the route's ``max_body``) so a later try can send it again; False once the
        client was answered 503 (no endpoint, or none reachable)."""
        data, whole = await self._keep(request, forwarded, call.route.retry.max_body)
        while True:
            try:
                target = await call.endpoint()
            except ConnectError as exc:  # no endpoint within the fail-fast timeout
                self._unsent = (503, str(exc), exc.reason)
                self.ctx.stats.response(key, status=503, latency_ms=_ms(started), error=exc.reason)
                return False
            self.rec.upstream = target
            if not await self._first_try(target, request, key, started):
                call.tried(ok=False)
                if call.may_retry(Failure.CONNECT, body_kept=True):
                    continue
                return False
            exchange = self.exchange
            exchange.call = call
            exchange.deadline = call.try_timeout()
            try:
                await self._run_exchange(data, whole=whole)
            except _ResponseFailed as exc:
                exchange = self.exchange
                call.tried(ok=False, rtt=exchange.head_rtt)
                failure = exc.failure if not exchange.responded else None
                if failure is not None and call.may_retry(failure, body_kept=whole):
                    self.ctx.pool.release(exchange.upstream, reusable=False)
                    continue
                raise
            except _Retry:
                call.tried(ok=False, rtt=self.exchange.head_rtt)
                self.ctx.pool.release(self.exchange.upstream, reusable=False)
                continue
            call.tried(ok=self.exchange.status < 500, rtt=self.exchange.head_rtt)
            return True

    async def _keep(self, request: RequestReceived, forwarded: bytes, limit: int) -> tuple[bytes, bool]:
        """The request as it goes upstream, read whole when its body fits in ``limit`` bytes: (bytes, True); else
        (the head, False), its body streamed (and the request never retried once sent). A client waiting for 100
        Continue, an Upgrade or CONNECT is never held back."""
        framing = request.framing
        if request.expect_continue or request.upgrade is not None or request.is_connect:
            return forwarded, False
        if framing.kind is BodyKind.LENGTH and (framing.length or 0) > limit:
            return forwarded, False
        chunked = framing.kind is BodyKind.CHUNKED
        out = bytearray(forwarded)
        body = 0
        while True:
            event = await self._next_request_event()
            assert isinstance(event, DataReceived | MessageEnded), event
            out += _framed(event, chunked)
            if isinstance(event, MessageEnded):
                self.kept = True
                return bytes(out), True
            body += len(event.data)
            if body > limit:  # a chunked body past the bound: what was read goes first, the rest streams
                return bytes(out), False

    async def _unsent_answered(self, request: RequestReceived) -> bool:
        """Answer ``self._unsent`` to a request nothing of which reached the application."""
        status, why, _ = self._unsent
        if self.kept:  # its body was read already: the connection can carry on
            await self._refuse(status, why, close=not request.keep_alive)
            return request.keep_alive
        return await self._refuse_unsent(request, status, why)

    async def _answer_unsent(
        self, request: RequestReceived, key: RequestKey, started: float, status: int, why: str, *, error: str
    ) -> bool:
        """Answer a request nothing of which was sent upstream; True when the connection carries on."""
        self.ctx.stats.response(key, status=status, latency_ms=_ms(started), error=error)
        return await self._refuse_unsent(request, status, why)

    async def _run_exchange(self, forwarded: bytes, *, whole: bool = False) -> None:
        """Run ``self.exchange`` (``forwarded``: the head and what is kept of the body, the whole request when
        ``whole``); if it fails replayably, replace it with a replay on a new connection."""
        first = self.exchange
        try:
            if whole:
                await first.replay(forwarded)
            else:
                await first.run(forwarded)
        except _ResponseFailed:
            if not first.replayable:
                raise
        else:
            return
        # A kept-alive connection the server closed as we reused it: the request provably never reached the
        # application, so it goes once more on a fresh connection (RFC 9112 9.3.1, as Envoy and Go do).
        self.ctx.pool.release(first.upstream, reusable=False)  # if the reconnect fails, released again: a no-op
        upstream = await self._fresh_upstream(first.target)
        self.exchange = _Exchange(self, upstream, first.request, first.key, first.started, first.target)
        self.exchange.call, self.exchange.deadline = first.call, first.deadline
        assert first.whole is not None
        await self.exchange.replay(first.whole)

    async def _fresh_upstream(self, target: SockAddr) -> PooledStream[UpstreamKey]:
        """A new connection for a replayed request; a failure to connect is that request's failure (503)."""
        try:
            return await self.ctx.pool.connect(target)
        except ConnectError as exc:
            raise _ResponseFailed(503, unreachable(target, exc.reason), error=exc.reason) from exc


class _Exchange:
    """One request/response on one upstream connection."""

    def __init__(
        self,
        session: _Session,
        upstream: PooledStream[UpstreamKey],
        request: RequestReceived,
        key: RequestKey,
        started: float,
        target: SockAddr,
    ) -> None:
        self.s = session
        self.target = target  # the upstream's address: the original destination, or a service's endpoint
        self.call: ServiceCall | None = None  # a service's request: retries decided per response
        self.deadline = math.inf  # a service's request: its response head by then (route timeout, per-try timeout)
        self.head_rtt: float | None = None  # seconds from sending the request to its response head
        self.status = 0
        self.upstream = upstream
        self.request = request
        self.key = key
        self.started = started
        self.rparser = ResponseParser()
        self.responded = False  # a response head went to the client
        self.recorded = False  # the response is counted in the metrics
        self.request_done = False  # set once the parser gave MessageEnded (at once for a request without a body)
        self.response_keep_alive = False
        self.upstream_reusable = False
        self.switched = False
        self.awaiting_response = True  # the request was just sent: its response cannot be here yet
        self.whole: bytes | None = None  # the whole request, when it went upstream in one write
        self.heard = False  # the upstream sent at least one byte

    async def _send_upstream(self, data: bytes) -> None:
        try:
            await direct_io.send_all(self.upstream.sock, data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            why = "upstream reset while sending the request"
            raise _ResponseFailed(502, why, error="upstream_reset", failure=self._reset()) from exc
        self.s.rec.up.sent += len(data)

    async def replay(self, whole: bytes) -> None:
        """Send a request that is all in ``whole`` (kept, to send again if ``replayable``), then relay the response.
        ``run`` calls it once the whole request is parsed; the caller calls it on a fresh exchange to resend."""
        if self.whole is None:
            self.rparser.expect(self.request.head.method, upgrade=self.request.upgrade is not None)
        self.whole = whole
        self.request_done = True
        await self._send_upstream(whole)
        await self._relay_response()

    async def run(self, forwarded_head: bytes) -> None:
        chunked = self.request.framing.kind is BodyKind.CHUNKED
        # Send the head plus whatever of the body is already parsed, in as few writes as possible.
        out = bytearray(forwarded_head)
        while not self.request_done:
            event = self.s.parser.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, DataReceived | MessageEnded):
                out += _framed(event, chunked)
                self.request_done = isinstance(event, MessageEnded)
        if self.request_done:
            await self.replay(bytes(out))
            return
        self.rparser.expect(self.request.head.method, upgrade=self.request.upgrade is not None)
        await self._send_upstream(bytes(out))
        self.pump_failed: Exception | None = None
        response_failed, cut = await relay_alongside(
            functools.partial(self._pump_request_body, chunked),
            self._relay_response,
            failures=(_ResponseFailed, trio.BrokenResourceError, trio.ClosedResourceError),
            request_done=lambda: self.request_done,
        )
        if cut:
            self.response_keep_alive = False
            self.upstream_reusable = False
        if response_failed is not None:
            raise response_failed
        if self.pump_failed is not None:
            raise self.pump_failed

    async def _pump_request_body(self, chunked: bool, exchange: trio.CancelScope) -> None:
        """Client -> upstream body bytes while the response is awaited. Its failures end the whole exchange
        and are re-raised by ``run`` (not as an exception group from the nursery)."""
        try:
            while True:
                event = await self.s._next_request_event()
                if isinstance(event, DataReceived | MessageEnded):
                    data = _framed(event, chunked)
                    if data:
                        await self._send_upstream(data)
                    if isinstance(event, MessageEnded):
                        self.request_done = True
                        return
        except (trio.BrokenResourceError, trio.ClosedResourceError, Http1Error, _ResponseFailed) as exc:
            self.pump_failed = exc
            exchange.cancel(reason="the request body failed")

    async def _read_upstream(self) -> None:
        wait_first, self.awaiting_response = self.awaiting_response, False
        departures = self.s.ctx.departures if wait_first and self.call is not None else None
        if departures is not None:  # a service request: a client that leaves now ends it (see Departures)
            departures.waiting(self.s.rec, self.s.sock)
        try:
            n = await direct_io.receive(self.upstream.sock, self.rparser.receive_data, wait_first=wait_first)
        except trio.BrokenResourceError as exc:
            why = "upstream reset the connection"
            raise _ResponseFailed(502, why, error="upstream_reset", failure=self._reset()) from exc
        finally:
            if departures is not None:
                departures.answered(self.s.rec)
        self.s.rec.down.received += n
        self.heard = self.heard or n > 0

    def _reset(self) -> Failure | None:
        """A reset or close before any response byte is the ``reset`` retry condition; after one, nothing is."""
        return Failure.RESET if not self.heard else None

    @property
    def replayable(self) -> bool:
        """The exchange failed in a way that proves the application never saw the request: a reused idle
        connection gave not a byte back, the request was idempotent and went out whole (so it can be sent again
        as is), and nothing of a response reached the client."""
        return self.whole is not None and replayable(
            self.request.head.method,
            upgrade=self.request.upgrade is not None,
            reused=self.upstream.reused,
            heard=self.heard,
            responded=self.responded,
        )

    def _parse(self) -> ResponseEvent:
        try:
            return self.rparser.next_event()
        except Http1Error as exc:
            why, error = bad_response(exc, heard=self.heard)
            # A close before any byte (the parser's "incomplete" at EOF) is a reset to the retry rules: over mesh
            # mTLS an endpoint whose application is gone closes cleanly rather than resetting.
            raise _ResponseFailed(502, why, error=error, failure=self._reset()) from exc

    async def _response_event(self) -> ResponseReceived | DataReceived | MessageEnded | ConnectionClosed:
        while True:
            event = self._parse()
            if not isinstance(event, Pending):
                return event
            await self._read_upstream()

    async def _response_head(self) -> ResponseReceived:
        """The final response head, within the port's response timeout and a service request's deadline (504)."""
        sent = trio.current_time()
        timeout = self.s.ctx.response_timeout
        deadline = self.deadline
        if timeout is not None and sent + timeout < deadline:
            deadline = sent + timeout
        if deadline == math.inf:
            head_event = await self._final_head()  # no cancel scope to enter and leave per request
        else:
            with trio.move_on_at(deadline) as scope:
                head_event = await self._final_head()
            if scope.cancelled_caught:
                raise self._timed_out(sent, timeout)
        self.head_rtt = trio.current_time() - sent
        self.status = head_event.head.status
        call = self.call
        if call is not None and call.retries_status(self.status) and self._retry_response(call):
            raise _Retry
        return head_event

    async def _relay_response(self) -> None:
        head_event = await self._response_head()
        head = head_event.head
        self.s.ctx.stats.response(self.key, status=head.status, latency_ms=_ms(self.started))
        self.recorded = True
        self.response_keep_alive = head_event.keep_alive
        if head.status == 101 or (self.request.is_connect and 200 <= head.status < 300):
            await self._switch(head_event)
            return
        framing = downstream_response_framing(head_event.framing, self.request.head.version)
        headers = strip_hop_by_hop(head.headers)
        self._last_if_draining(headers)
        # Body bytes already parsed go out with the head; then one write per read from the upstream.
        out = bytearray(serialise_response_head(ResponseHead(head.status, head.reason, b"HTTP/1.1", headers), framing))
        chunked = framing.kind is BodyKind.CHUNKED
        self.responded = True
        while True:
            event = self._parse()
            if isinstance(event, Pending):
                if out:
                    await self.s._send_client(bytes(out))
                    out.clear()
                await self._read_upstream()
            elif isinstance(event, DataReceived):
                out += _framed(event, chunked)
            elif isinstance(event, MessageEnded):
                out += _framed(event, chunked)
                await self.s._send_client(bytes(out))
                self.upstream_reusable = head_event.keep_alive and self.rparser.buffered == 0
                return
            else:
                if out:
                    await self.s._send_client(bytes(out))
                raise _ResponseFailed(502, "upstream closed in the middle of the response", error="upstream_reset")

    def _timed_out(self, sent: float, timeout: float | None) -> _ResponseFailed:
        """The 504 of a response head that did not come in time, named for the timeout that fired."""
        call = self.call
        if timeout is not None and sent + timeout <= self.deadline:
            return _ResponseFailed(504, f"no response from upstream within {timeout:g}s", error="response_timeout")
        assert call is not None
        if self.deadline < call.deadline:
            per_try = call.route.retry.per_try_timeout
            why = f"no response from {self.target} within the per-try timeout ({per_try:g}s)"
            return _ResponseFailed(504, why, error="per_try_timeout", failure=Failure.PER_TRY_TIMEOUT)
        why = f"no response within the route's timeout ({call.route.timeout:g}s, route {call.route.name})"
        return _ResponseFailed(504, why, error="request_timeout")

    def _retry_response(self, call: ServiceCall) -> bool:
        """Whether a response with a status the route lists is dropped and the request tried again."""
        if self.whole is None:
            return False  # the body was streamed: nothing to send again
        return call.may_retry(Failure.STATUS, body_kept=True, status=self.status)

    def _last_if_draining(self, headers: Headers) -> None:
        """While the proxy drains, this exchange is the connection's last: tell the client so it reconnects."""
        drain = self.s.ctx.drain
        if drain is not None and drain.draining:
            headers.set(b"connection", b"close")
            self.s.closing = True

    async def _final_head(self) -> ResponseReceived:
        """Forward 1xx responses (100 Continue, 103) and return the final head (or a 101)."""
        while True:
            event = await self._response_event()
            if isinstance(event, ConnectionClosed):
                why = "upstream closed without a response"
                raise _ResponseFailed(502, why, error="upstream_reset", failure=self._reset())
            assert isinstance(event, ResponseReceived), event
            if not event.informational:
                return event
            head = event.head
            informational = ResponseHead(head.status, head.reason, b"HTTP/1.1", strip_hop_by_hop(head.headers))
            if self.request.head.version == b"1.1":  # an HTTP/1.0 client cannot take a 1xx (RFC 9110 15.2)
                await self.s._send_client(serialise_response_head(informational, Framing(BodyKind.NONE)))

    async def _switch(self, head_event: ResponseReceived) -> None:
        """101 Switching Protocols or CONNECT's 2xx: pass the head on, then relay raw bytes both ways."""
        head = head_event.head
        headers = strip_hop_by_hop(head.headers, upgrade=self.request.upgrade) if head.status == 101 else head.headers
        out = serialise_response_head(
            ResponseHead(head.status, head.reason, b"HTTP/1.1", headers), Framing(BodyKind.NONE)
        )
        self.responded = True
        self.switched = True
        await self.s._send_client(out + self.rparser.take_buffered())
        early = self.s.parser.take_buffered()
        if early:
            await self._send_upstream(early)
        self.s.rec.protocol = "http1-upgraded"
        upstream = trio.SocketStream(trio.socket.from_stdlib_socket(self.upstream.sock))
        await relay(self.s.client, upstream, self.s.rec)
        self.upstream.close()


def _framed(event: DataReceived | MessageEnded, chunked: bool) -> bytes:
    """A body event as it goes on the wire: a chunk (the last one with the trailers) when ``chunked``."""
    if isinstance(event, DataReceived):
        return encode_chunk(event.data) if chunked else event.data
    return encode_last_chunk(event.trailers) if chunked else b""


def _ms(started: float) -> float:
    return (trio.current_time() - started) * 1000
