"""Proxying one client connection's HTTP/2 (h2c prior knowledge) streams to its upstream over HTTP/2.

Theory of operation: the client connection is the server side of an ``H2Connection``; every request stream that
passed validation gets a task (``_proxy_stream``) which opens a stream on the upstream connection, an
``H2Connection`` client side that multiplexes every stream of this client connection (the first one is the
connection the handler opened before detection). Request body and trailers flow client -> upstream in a pump task
while the response headers, body and trailers flow back; flow control is end to end because each side
acknowledges data only when the other side's send took it (``H2Stream.receive_data``). A stream the upstream
refused (REFUSED_STREAM, or above a GOAWAY's last id) before we sent any of its body is retried once on a new
upstream connection; later, it is passed to the client as REFUSED_STREAM so the client may retry.

Timeouts (from the policy, per stream): no response head within ``response_timeout`` of the request's end -> 504
and the upstream stream cancelled, like HTTP/1.1; no bytes either way for ``stream_idle_timeout`` -> both streams
reset with CANCEL. Upstream connections send a keepalive PING every 10 s (Linkerd's period); one unanswered for
20 s is closed, its streams fail as below, and the next stream opens a new connection.

Errors users see: no upstream connection -> 503, an invalid or missing response (the upstream reset the stream
or closed first) -> 502, no response in time -> 504, each with ``x-triomesh-error``; a response already started
is never completed by us: the client's stream is reset instead. Metrics are recorded per stream like HTTP/1.1's,
with ``grpc_status`` taken from the trailers (or a trailers-only response).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import trio

from dataplane.balance.retry_rule import Failure
from dataplane.connections import ConnRecord
from dataplane.drain import Drain
from dataplane.errors import ConnectError
from dataplane.http.authorize import DENIED_STATUS, RequestAuthorizer
from dataplane.http.errors import ERROR_FIELD, error_value
from dataplane.http.forwarding import ensure_request_id, set_forwarded
from dataplane.http.model import Headers
from dataplane.http.request_id import RequestIds
from dataplane.http2.conn import H2Connection, H2Settings, H2Stream
from dataplane.http2.counters import H2Counters
from dataplane.http2.errors import H2Error, H2ErrorCode, H2StreamResetError
from dataplane.http2.validate import Header
from dataplane.net.addr import SockAddr
from dataplane.services.call import ServiceCall
from dataplane.services.routing import ServiceRouting
from dataplane.telemetry.http_stats import HttpStats, RequestKey
from policy.model import DEFAULT_STREAM_IDLE_TIMEOUT

log = logging.getLogger(__name__)

GRPC_DEADLINE_EXCEEDED: Final = 4
STREAM_IDLE_ERROR: Final = "stream_idle_timeout"
"""The ``response_total`` error label of a stream reset by the idle timeout."""
MAX_ATTEMPTS: Final = 2  # the first try, and one retry of a stream the upstream provably did not process
UPSTREAM_SETTINGS: Final = H2Settings(ping_interval=10.0, ping_timeout=20.0)
"""Upstream connections: keepalive PINGs as Linkerd sends them, so a silently dead upstream is noticed."""


@dataclasses.dataclass
class H2Context:
    """What one client connection's HTTP/2 proxying needs from the proxy."""

    rec: ConnRecord
    upstream: SockAddr
    first: trio.SocketStream | None
    """The upstream connection the handler already opened: the first upstream HTTP/2 connection (None: open one
    with ``connect`` when the first stream needs it)."""
    connect: Callable[[], Awaitable[trio.SocketStream]]
    """Opens another connection to ``upstream`` (after a GOAWAY or a failure of the current one)."""
    stats: HttpStats
    ids: RequestIds
    counters: H2Counters
    upstream_counters: H2Counters
    drain: Drain | None = None
    """The proxy's drain signal: the client connection is sent GOAWAY and ends once its streams are done."""
    response_timeout: float | None = None
    """Seconds from the request's end to the response head before the stream is answered 504; None waits."""
    stream_idle_timeout: float = DEFAULT_STREAM_IDLE_TIMEOUT.seconds
    """Seconds a stream may move no bytes in either direction before both its sides are reset (CANCEL)."""
    upstream_settings: H2Settings = UPSTREAM_SETTINGS
    authorize: RequestAuthorizer | None = None
    """Inbound authorization per stream (403 when denied); None: every request is allowed."""
    routing: ServiceRouting | None = None
    """``upstream`` is a service's virtual address: each stream goes to one of its endpoints."""
    connect_to: Callable[[SockAddr], Awaitable[trio.SocketStream]] | None = None
    """With ``routing``: opens a connection to one endpoint."""
    peers: dict[SockAddr, str] = dataclasses.field(default_factory=dict)
    """With ``routing``: the verified identity of each endpoint ``connect_to`` reached over mesh mTLS."""


async def serve_h2(client: trio.SocketStream, ctx: H2Context) -> None:
    """Proxy the client's streams until it closes, an error closes it, or a drain finishes."""
    async with trio.open_nursery() as nursery:
        upstreams = _Upstreams(ctx, nursery, ctx.connect)
        endpoints = _Endpoints(ctx, nursery)
        server = H2Connection(client, client_side=False, counters=ctx.counters)

        async def handle(stream: H2Stream) -> None:
            if ctx.routing is not None:
                await _service_stream(ctx, endpoints, stream)
            else:
                await _proxy_stream(ctx, upstreams, stream)

        token = ctx.drain.hook(functools.partial(nursery.start_soon, server.drain)) if ctx.drain is not None else None
        try:
            await server.run(handle)
        except H2Error as exc:
            ctx.rec.close_reason = exc.reason
            log.info("conn=%d h2 client connection closed: %s", ctx.rec.id, exc)
        finally:
            if token is not None and ctx.drain is not None:
                ctx.drain.unhook(token)
            nursery.cancel_scope.cancel(reason="the client connection ended")


class _Upstreams:
    """The current upstream HTTP/2 connection to one destination, replaced when it stops taking streams."""

    def __init__(
        self,
        ctx: H2Context,
        nursery: trio.Nursery,
        connect: Callable[[], Awaitable[trio.SocketStream]],
        first: trio.SocketStream | None = None,
    ) -> None:
        self.ctx = ctx
        self.nursery = nursery
        self.connect = connect
        self.current: H2Connection | None = None
        self.unused_first: trio.SocketStream | None = first if first is not None else ctx.first
        self.lock = trio.Lock()

    async def get(self) -> H2Connection:
        current = self.current
        if current is not None and current.accepting:
            return current  # no lock to take and leave per stream: that would be a checkpoint each time
        async with self.lock:
            if self.current is not None and self.current.accepting:
                return self.current
            if self.unused_first is not None:
                transport, self.unused_first = self.unused_first, None
            else:
                transport = await self.connect()
            conn = H2Connection(
                transport, client_side=True, settings=self.ctx.upstream_settings, counters=self.ctx.upstream_counters
            )
            await self.nursery.start(self._run, conn)
            self.current = conn
            return conn

    async def _run(self, conn: H2Connection, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await conn.run(task_status=task_status)
        except H2Error as exc:  # its streams see the error themselves; the client connection carries on
            log.info("conn=%d upstream h2 connection closed: %s", self.ctx.rec.id, exc)


class _Endpoints:
    """A service connection's upstream HTTP/2 connections, one per endpoint its streams went to."""

    def __init__(self, ctx: H2Context, nursery: trio.Nursery) -> None:
        self.ctx = ctx
        self.nursery = nursery
        self.by_target: dict[SockAddr, _Upstreams] = {}

    async def get(self, target: SockAddr) -> H2Connection:
        upstreams = self.by_target.get(target)
        if upstreams is None:
            connect_to = self.ctx.connect_to
            assert connect_to is not None
            upstreams = _Upstreams(self.ctx, self.nursery, functools.partial(connect_to, target))
            upstreams.unused_first = None
            self.by_target[target] = upstreams
        return await upstreams.get()


def _stream_key(ctx: H2Context, headers: Sequence[Header]) -> RequestKey:
    ctx.rec.requests += 1
    authority = _get(headers, b":authority") or b""
    return ctx.stats.request(ctx.rec.direction, authority.decode("latin-1"), ctx.upstream, ctx.rec.tls, ctx.rec.peer_id)


async def _service_stream(ctx: H2Context, endpoints: _Endpoints, stream: H2Stream) -> None:
    """A stream to a service: tries on endpoints the balancer picks, retried as the route says. A request that
    ended with its headers, or whose body (within the route's ``max_body``) all arrived with them, is kept to be
    sent again; a streaming one is retried only when it provably never reached an endpoint."""
    assert ctx.routing is not None
    started = trio.current_time()
    headers = stream.request_headers
    key = _stream_key(ctx, headers)
    method = (_get(headers, b":method") or b"").decode("latin-1")
    try:
        call = ctx.routing.call(method, (_get(headers, b":path") or b"").decode("latin-1"))
    except ConnectError as exc:  # shed: the service's queue is full
        await _refuse(stream, 503, str(exc))
        ctx.stats.response(key, status=503, latency_ms=_ms(started), error=exc.reason)
        return
    if call is None:  # a reload made the address no service: to the address itself, like any destination
        await _proxy_stream(ctx, _Upstreams(ctx, endpoints.nursery, ctx.connect), stream, key)
        return
    grpc = _is_grpc(headers)
    try:
        await _service_tries(ctx, endpoints, stream, call, key, started, grpc=grpc)
    finally:  # cancelled too (the client connection ended): the request leaves the service's queue
        call.finish()


async def _service_tries(
    ctx: H2Context,
    endpoints: _Endpoints,
    stream: H2Stream,
    call: ServiceCall,
    key: RequestKey,
    started: float,
    *,
    grpc: bool,
) -> None:
    if grpc:
        call.limit_by_grpc_timeout(_get(stream.request_headers, b"grpc-timeout"))
    body = await _kept_body(stream, call.route.retry.max_body)
    idle = trio.CancelScope(deadline=started + ctx.stream_idle_timeout + _idle_slack(ctx))
    exchange: _Exchange | None = None
    with idle:
        while True:
            up = await _open_try(ctx, endpoints, stream, call, body, key=key, started=started, grpc=grpc)
            if not isinstance(up, H2Stream):
                if up is _RETRY:
                    continue
                break
            assert ctx.rec.upstream is not None
            key = _meshed_key(ctx, key, ctx.rec.upstream)
            exchange = _Exchange(ctx, stream, up, key, started, idle, call=call, kept=body is not None)
            await exchange.run(pump=body is None)
            if not exchange.retry:
                if call.current is not None:  # answered by this endpoint: its latency and health
                    call.tried(ok=not exchange.failed and exchange.status < 500, rtt=exchange.head_rtt)
                call.answered = exchange.recorded and not exchange.failed and exchange.status < 500
                break
    if idle.cancelled_caught:
        _idled_out(ctx, stream, key, started, exchange)


_RETRY: Final = object()


async def _open_try(
    ctx: H2Context,
    endpoints: _Endpoints,
    stream: H2Stream,
    call: ServiceCall,
    body: bytes | None,
    *,
    key: RequestKey,
    started: float,
    grpc: bool,
) -> H2Stream | object | None:
    """One try's upstream stream on the endpoint the balancer picks (with the kept body sent); ``_RETRY`` when it
    could not be opened and the route retries that; None once the client was answered 503."""
    try:
        target = await call.endpoint()
    except ConnectError as exc:
        await _refuse(stream, 503, str(exc))
        ctx.stats.response(key, status=503, latency_ms=_ms(started), error=exc.reason)
        return None
    ctx.rec.upstream = target
    forwarded = _forwarded_request(stream.request_headers, ctx, grpc_timeout=call.grpc_timeout() if grpc else None)
    try:
        conn = await endpoints.get(target)
        up = await conn.open_stream(forwarded, end_stream=body == b"")
        if body:
            await up.send_data(body, end_stream=True)
    except (ConnectError, H2Error) as exc:
        call.tried(ok=False)
        refused = isinstance(exc, H2Error)
        failure = Failure.REFUSED if refused else Failure.CONNECT
        retryable = not isinstance(exc, H2Error) or exc.retryable
        if retryable and call.may_retry(failure, body_kept=True):
            return _RETRY
        why = f"upstream {target}: {exc}" if refused else f"upstream {target} unreachable: {exc.reason}"
        await _refuse(stream, 503, why)
        ctx.stats.response(key, status=503, latency_ms=_ms(started), error=exc.reason)
        return None
    return up


def _meshed_key(ctx: H2Context, key: RequestKey, target: SockAddr) -> RequestKey:
    """The request's metric key once its endpoint is known: with its mesh identity when it was reached over mTLS
    (the connection's record says so too)."""
    peer = ctx.peers.get(target)
    if peer is None:
        return key
    ctx.rec.meshed_with(peer)
    return ctx.stats.relabel(key, "true", peer)


async def _kept_body(stream: H2Stream, limit: int) -> bytes | None:
    """The whole request body when it already arrived (END_STREAM, no trailers) and fits ``limit``: b"" for none;
    None when it streams (or has trailers): then it is pumped as it comes, and never sent twice."""
    if not stream.remote_ended or stream.trailers or stream.buffered > limit:
        return None
    chunks = []
    while data := await stream.receive_data():
        chunks.append(data)
    return b"".join(chunks)


async def _proxy_stream(ctx: H2Context, upstreams: _Upstreams, stream: H2Stream, key: RequestKey | None = None) -> None:
    started = trio.current_time()
    headers = stream.request_headers
    if key is None:
        key = _stream_key(ctx, headers)
    authorize = ctx.authorize
    if authorize is not None:
        method, path = _get(headers, b":method") or b"", _get(headers, b":path") or b""
        allowed = authorize.check(method, path)
        authorize.count(allowed)
        if not allowed:
            await _refuse(stream, DENIED_STATUS, authorize.why(method, path))
            ctx.stats.response(key, status=DENIED_STATUS, latency_ms=_ms(started), error="authz_denied")
            return
    forwarded = _forwarded_request(headers, ctx)
    # A request that ended with its headers (most GETs) goes out the same way: no body pump, no empty DATA frame.
    bodiless = stream.remote_ended and stream.buffered == 0 and not stream.trailers
    # The stream idle timeout: a cancel scope of this task whose deadline moves on with every head or chunk
    # forwarded (no timer task per stream). It covers waiting for an upstream stream slot too.
    idle = trio.CancelScope(deadline=started + ctx.stream_idle_timeout + _idle_slack(ctx))
    exchange: _Exchange | None = None
    with idle:
        up = await _open_upstream(ctx, upstreams, stream, forwarded, bodiless=bodiless, key=key, started=started)
        if up is not None:
            exchange = _Exchange(ctx, stream, up, key, started, idle)
            await exchange.run(pump=not bodiless)
    if idle.cancelled_caught:
        _idled_out(ctx, stream, key, started, exchange)


async def _open_upstream(
    ctx: H2Context,
    upstreams: _Upstreams,
    stream: H2Stream,
    forwarded: list[Header],
    *,
    bodiless: bool,
    key: RequestKey,
    started: float,
) -> H2Stream | None:
    """The request's stream on an upstream connection; None once the client was answered 503 instead."""
    attempt = 1
    while True:
        try:
            conn = await upstreams.get()
            return await conn.open_stream(forwarded, end_stream=bodiless)
        except ConnectError as exc:
            await _refuse(stream, 503, f"upstream {ctx.upstream} unreachable: {exc.reason}")
            ctx.stats.response(key, status=503, latency_ms=_ms(started), error=exc.reason)
            return None
        except H2Error as exc:
            if exc.retryable and attempt < MAX_ATTEMPTS:
                attempt += 1
                continue
            await _refuse(stream, 503, f"upstream {ctx.upstream}: {exc}")
            ctx.stats.response(key, status=503, latency_ms=_ms(started), error=exc.reason)
            return None


def _idle_slack(ctx: H2Context) -> float:
    """How late the idle timeout may fire (see ``_Exchange._moved``): a tenth of it, at most 1 s."""
    return min(ctx.stream_idle_timeout / 10, 1.0)


def _idled_out(ctx: H2Context, down: H2Stream, key: RequestKey, started: float, exchange: _Exchange | None) -> None:
    """Nothing moved for ``stream_idle_timeout`` (waiting for an upstream stream, a response head, a window): both
    sides are reset with CANCEL, since a response may have started."""
    idle = ctx.stream_idle_timeout
    log.info("conn=%d h2 stream %d moved nothing for %gs: reset", ctx.rec.id, down.stream_id, idle)
    down.reset(H2ErrorCode.CANCEL)
    if exchange is not None:
        exchange.up.reset(H2ErrorCode.CANCEL)
        if exchange.recorded:
            return
    ctx.stats.response(key, status=None, latency_ms=_ms(started), error=STREAM_IDLE_ERROR)


class _NoResponseError(Exception):
    """The upstream sent no response head within the response timeout (or a service request's deadline):
    answered 504, as HTTP/1.1 does."""

    def __init__(self, why: str, reason: str = "response_timeout") -> None:
        super().__init__(why)
        self.reason = reason  # the metric's error label, HTTP/1.1's


class _Exchange:
    """One client stream and the upstream stream it is forwarded on.

    Timeouts are cancel scopes, not tasks: ``idle`` (entered by the caller) has its deadline moved on with every
    head or chunk forwarded; ``head`` wraps the wait for the response head and gets its deadline once the request
    has ended (a streaming request waits for no response in particular)."""

    def __init__(
        self,
        ctx: H2Context,
        down: H2Stream,
        up: H2Stream,
        key: RequestKey,
        started: float,
        idle: trio.CancelScope,
        *,
        call: ServiceCall | None = None,
        kept: bool = False,
    ) -> None:
        self.call = call  # a service's stream: its route's deadline and retries
        self.kept = kept  # the whole request is at hand (sent already): it can be sent again
        self.retry = False  # the try failed in a way the route retries: the caller tries again, nothing was answered
        self.failed = False  # the client was answered with an error or reset
        self.sent_at = trio.current_time() if call is not None else 0.0  # a try's latency feeds its endpoint's EWMA
        self.head_rtt: float | None = None
        self.status = 0
        self.ctx = ctx
        self.down = down  # the client's stream (we are its server)
        self.up = up  # our stream to the upstream (we are its client)
        self.key = key
        self.started = started
        self.recorded = False
        self.idle = idle
        self.idle_set = started
        self.slack = _idle_slack(ctx)
        self.deadline = call.try_timeout() if call is not None else math.inf
        self.head = trio.CancelScope(deadline=self.deadline)

    def _moved(self) -> None:
        # Moving a deadline re-registers it with trio, twice per small exchange: it is moved only once it is a slack
        # old, and set a slack late, so the reset comes between 1 timeout and 1 timeout + slack after the last move.
        now = trio.current_time()
        if now - self.idle_set >= self.slack:
            self.idle_set = now
            self.idle.deadline = now + self.ctx.stream_idle_timeout + self.slack

    def _request_ended(self) -> None:
        if self.ctx.response_timeout is not None:
            self.head.deadline = min(self.deadline, trio.current_time() + self.ctx.response_timeout)

    async def run(self, *, pump: bool) -> None:
        # Failures are caught inside the nursery (which would wrap them in exception groups) and handled after.
        failure: H2Error | _NoResponseError | None = None
        if not pump:
            self._request_ended()
            try:
                await self._relay_response()
            except (H2Error, _NoResponseError) as exc:
                failure = exc
        else:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump_request, nursery.cancel_scope)
                try:
                    await self._relay_response()
                except (H2Error, _NoResponseError) as exc:
                    failure = exc
                    nursery.cancel_scope.cancel(reason="the response side failed")
        if failure is not None:
            await self._failed(failure)

    async def _pump_request(self, scope: trio.CancelScope) -> None:
        """Client -> upstream: body chunks and trailers.

        A client that resets its stream gives up on the request: the upstream stream is cancelled and so is the
        exchange. An upstream that stops taking the body (RST_STREAM NO_ERROR after a complete response, RFC 9113
        8.1, or a failure) only ends this pump: the response side carries on, or sees the failure itself."""
        rec = self.ctx.rec
        while True:
            try:
                data = await self.down.receive_data(hold=True)  # acknowledged once forwarded
            except H2Error:
                self.up.reset(H2ErrorCode.CANCEL)
                scope.cancel(reason="the client gave up on the request")
                return
            try:
                if data:
                    rec.up.received += len(data)
                    await self.up.send_data(data)
                    rec.up.sent += len(data)
                    self._moved()
                    continue
                if self.down.trailers:
                    await self.up.send_trailers(self.down.trailers)
                else:
                    await self.up.end()
                self._request_ended()
            except H2Error:
                pass
            return

    async def _relay_response(self) -> None:
        rec = self.ctx.rec
        if self.ctx.response_timeout is None and self.call is None:
            head = await self.up.receive_response()  # no scope to enter and leave per stream
        else:
            with self.head:
                head = await self.up.receive_response()
            if self.head.cancelled_caught:
                raise self._timed_out()
        self._moved()
        status = int(_get(head, b":status") or b"0")
        grpc = _grpc_status(head)  # a trailers-only gRPC response carries it here
        self.status = status
        if self.call is not None:
            self.head_rtt = trio.current_time() - self.sent_at
            if self._retry_response(self.call, status, grpc):
                return
        if self.up.remote_ended and self.up.buffered == 0 and not self.up.trailers:
            # Headers that end the stream (a gRPC trailers-only response, a 204): pass them on as such; an extra
            # empty DATA frame would turn a trailers-only response into one without trailers.
            await self.down.send_headers(head, end_stream=True)
            self.ctx.stats.response(self.key, status=status, latency_ms=_ms(self.started), grpc_status=grpc)
            self.recorded = True
            return
        await self.down.send_headers(head)
        ended = False
        while data := await self.up.receive_data(hold=True):  # acknowledged once forwarded
            rec.down.received += len(data)
            # The upstream's last chunk goes out with END_STREAM: no separate empty DATA frame.
            ended = self.up.at_end and not self.up.trailers
            await self.down.send_data(data, end_stream=ended)
            rec.down.sent += len(data)
            self._moved()
        trailers = self.up.trailers
        if trailers:
            trailer_status = _grpc_status(trailers)
            grpc = trailer_status if trailer_status is not None else grpc
            await self.down.send_trailers(list(trailers))
        elif not ended:
            await self.down.end()
        self.ctx.stats.response(self.key, status=status, latency_ms=_ms(self.started), grpc_status=grpc)
        self.recorded = True

    def _timed_out(self) -> _NoResponseError:
        """The 504 of a response head that did not come in time, named for the timeout that fired."""
        call = self.call
        timeout = self.ctx.response_timeout
        if call is None or (self.head.deadline < self.deadline and timeout is not None):
            return _NoResponseError(f"no response from upstream within {timeout:g}s")
        if self.deadline < call.deadline:
            per_try = call.route.retry.per_try_timeout
            why = f"no response from {self.ctx.rec.upstream} within the per-try timeout ({per_try:g}s)"
            return _NoResponseError(why, "per_try_timeout")
        return _NoResponseError(
            f"no response within the request's deadline (route {call.route.name})", "request_timeout"
        )

    def _retry_response(self, call: ServiceCall, status: int, grpc: int | None) -> bool:
        """A response the route retries (a listed status, or a listed gRPC status of a trailers-only response):
        dropped unseen, and the stream tried again. Only for a request kept whole."""
        if not self.kept:
            return False
        if call.retries_status(status):
            failure, grpc_status = Failure.STATUS, -1
        elif grpc is not None and call.retries_grpc(grpc) and self.up.remote_ended:
            failure, grpc_status = Failure.GRPC, grpc
        else:
            return False
        call.tried(ok=False, rtt=self.head_rtt)
        if not call.may_retry(failure, body_kept=True, status=status, grpc_status=grpc_status):
            return False
        self.up.reset(H2ErrorCode.CANCEL)
        self.retry = True
        return True

    def _service_failure(self, exc: H2Error | _NoResponseError, refused: bool) -> bool:
        """Whether a service stream's failed try is retried (then nothing is answered)."""
        call = self.call
        if call is None or self.down.responded:
            return False
        call.tried(ok=False, rtt=None)
        if refused:
            failure = Failure.REFUSED
        elif isinstance(exc, _NoResponseError):
            if exc.reason != "per_try_timeout":
                return False
            failure = Failure.PER_TRY_TIMEOUT
        else:
            failure = Failure.RESET
        # A refused stream never reached the application: its body (pumped or not) may go again only if kept.
        if call.may_retry(failure, body_kept=self.kept):
            self.retry = True
            return True
        return False

    async def _failed(self, exc: H2Error | _NoResponseError) -> None:
        """The exchange failed (upstream or client side): tell the client in the way that keeps the truth, and
        stop the upstream stream (a no-op when it is the one that failed)."""
        self.up.reset(H2ErrorCode.CANCEL)
        timed_out = isinstance(exc, _NoResponseError)
        refused = isinstance(exc, H2StreamResetError) and exc.remote and exc.code == H2ErrorCode.REFUSED_STREAM
        if self._service_failure(exc, refused):
            return
        self.failed = True
        if not self.recorded:
            # The status the client is answered with, as HTTP/1.1 records it; none for a reset stream.
            status = None if self.down.responded or refused else 504 if timed_out else 502
            self.ctx.stats.response(self.key, status=status, latency_ms=_ms(self.started), error=exc.reason)
            self.recorded = True
        if self.down.responded:
            # A started response is never completed by us.
            self.down.reset(H2ErrorCode.INTERNAL_ERROR)
        elif refused:
            self.down.reset(H2ErrorCode.REFUSED_STREAM)  # unprocessed upstream: the client may retry
        elif timed_out and _is_grpc(self.down.request_headers):
            # gRPC clients read a deadline from grpc-status, not from an HTTP status (which they map to UNAVAILABLE).
            await _grpc_refuse(self.down, GRPC_DEADLINE_EXCEEDED, str(exc))
        elif timed_out:
            await _refuse(self.down, 504, str(exc))
        else:
            await _refuse(self.down, 502, f"upstream {self.ctx.upstream}: {exc}")


async def _refuse(stream: H2Stream, status: int, why: str) -> None:
    with contextlib.suppress(H2Error):
        await stream.send_headers(_error_headers(status, why), end_stream=True)


def _is_grpc(headers: Sequence[Header]) -> bool:
    return (_get(headers, b"content-type") or b"").startswith(b"application/grpc")


async def _grpc_refuse(stream: H2Stream, code: int, why: str) -> None:
    """A gRPC error as gRPC clients read it: a trailers-only response with grpc-status."""
    headers = [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", str(code).encode()),
        (b"grpc-message", error_value(why)),
        (ERROR_FIELD, error_value(why)),
    ]
    with contextlib.suppress(H2Error):
        await stream.send_headers(headers, end_stream=True)


def _error_headers(status: int, why: str) -> list[Header]:
    return [(b":status", str(status).encode()), (b"content-type", b"text/plain"), (ERROR_FIELD, error_value(why))]


def _forwarded_request(headers: Sequence[Header], ctx: H2Context, *, grpc_timeout: bytes | None = None) -> list[Header]:
    """The request fields as forwarded: the same rules as HTTP/1.1's (``dataplane.http.forwarding``); a service
    request's ``grpc-timeout`` says what is left of its deadline."""
    out = Headers(headers)
    set_forwarded(out, client=ctx.rec.client.ip.encode(), proto=b"http")
    ensure_request_id(out, ctx.ids)
    if grpc_timeout is not None:
        out.set(b"grpc-timeout", grpc_timeout)
    return list(out)


def _get(headers: Sequence[Header], name: bytes) -> bytes | None:
    for n, v in headers:
        if n == name:
            return v
    return None


def _grpc_status(headers: Sequence[Header]) -> int | None:
    value = _get(headers, b"grpc-status")
    return int(value) if value is not None and value.isdigit() else None


def _ms(started: float) -> float:
    return (trio.current_time() - started) * 1000
