"""The HTTP/1.1 engine: the common request/response exchange of every keep-alive connection of a worker, driven
by one task and one level-triggered epoll set (the relay engine's shape, ``dataplane/tcp/engine.py``).

Why: the trio loop (``proxy.py``) costs two task wake-ups per request (the client's request, the upstream's
response), each an EPOLLONESHOT re-arm, an ``epoll_wait`` and a pass of the run loop. Here client sockets and
their upstream sockets sit in one epoll set; the engine task wakes once for a batch of ready sockets and runs
each connection's state machine without a task switch.

Theory of operation, per client connection (``_Client``):

- READING: bytes from the client go to the strict ``RequestParser`` (every rule unchanged) and, raw, to a
  buffer holding everything since the start of the current request. A request the engine serves itself: no
  Upgrade, no CONNECT, no ``Expect: 100-continue``, no body or a Content-Length body of at most
  ``MAX_BUFFERED_BODY`` bytes that arrived with its head (a body still coming streams while the response may
  already start: ``serve_http1`` does that), the proxy not draining. Anything else, and any parse error, is handed to
  ``serve_http1`` AT THE MESSAGE BOUNDARY with the raw bytes, before anything of that request went upstream: it
  parses them again and does exactly what it always did (the same 4xx, the pump task, the upgrade relay...).
- ACQUIRING (only when the engine holds no idle upstream connection for the destination): a short task awaits
  the pool's ``acquire`` (reuse or connect, loop guard registration, 503 on failure).
- EXCHANGE: head (+ body) written upstream in one ``send``; the response comes through the ``ResponseParser``;
  head and body bytes are written to the client after each upstream read. What the client does not take stays
  ``out`` (at most one read, 64 KiB, plus chunk framing) and the upstream is not read until it drained:
  backpressure with a bounded amount held, for Content-Length, chunked and until-close bodies of any size.
  Metrics (``HttpStats``) and ``ConnRecord.requests``/byte counters are kept exactly as ``serve_http1`` keeps them.
  On a clean end, the upstream connection goes back to the engine's idle list (LIFO, per pool and destination)
  and the next request is parsed from what is already buffered (pipelining) or waited for.

Errors, as ``serve_http1`` answers them: an upstream that fails before the response head is a 502 (503 when the
pool cannot connect) with ``x-triomesh-error``, then a lingering close; after the head, the client connection is
closed without completing the response. A client reset discards the upstream connection.

Each connection's handler task stays parked in ``serve`` (no wake-ups while the engine works) and keeps what it
already did: its cancel scope (``ConnRecord.cancel`` from the idle sweep, drain or policy removes the connection
from the engine), closing the client socket, and the slow endings (the rest of a refusal the socket would not
take at once, the lingering close, the hand-over to ``serve_http1``).

Idle upstream connections stay in the epoll set: one that becomes readable while idle was closed by its server
(or talks out of turn) and is closed at once. One idle here for longer than ``IDLE_RETURN`` goes back to the
pool, which expires it on its own schedule.
"""

from __future__ import annotations

import enum
import functools
import logging
import math
import select
import socket
from typing import Final, NoReturn

import trio

from dataplane.balance.retry_rule import Failure
from dataplane.connections import ConnRecord
from dataplane.drain import Drain
from dataplane.errors import ConnectError
from dataplane.http.forwarding import forwarded_request_head, strip_hop_by_hop
from dataplane.http.model import BodyKind, Framing, ResponseHead
from dataplane.http.wire import encode_chunk, encode_last_chunk, serialise_response_head
from dataplane.http1.errors import Http1Error
from dataplane.http1.events import (
    NEED_DATA,
    ConnectionClosed,
    DataReceived,
    MessageEnded,
    RequestReceived,
    ResponseReceived,
)
from dataplane.http1.framing import downstream_response_framing
from dataplane.http1.parser import RequestParser, ResponseParser
from dataplane.http1.proxy import Http1Context, UpstreamKey, serve_http1
from dataplane.http1.refusal import linger, refusal
from dataplane.http1.upstream_failure import bad_response, replayable, unreachable
from dataplane.net.epoll_interest import change_interest
from dataplane.services.call import ServiceCall
from dataplane.telemetry.http_stats import RequestKey
from dataplane.upstream import direct_io
from dataplane.upstream.pool import DEFAULT_MAX_IDLE_PER_KEY, ConnectionPool, PooledStream

log = logging.getLogger(__name__)

READ_SIZE: Final = 65536  # one read at most, from either side
MAX_BUFFERED_BODY: Final = 65536  # a Content-Length request body up to this, all here with its head, is served
READ_AHEAD: Final = 65536  # pipelined bytes read from a client while its exchange runs, at most
MAX_EVENTS: Final = 512  # events handled per wake-up before other trio tasks get a turn
TRUSTED_IDLE: Final = 1.0  # seconds: an upstream connection idle for less is reused without a health check
IDLE_RETURN: Final = 5.0  # seconds an upstream connection idles here before going back to the pool
TICK: Final = 0.01  # seconds between looks at timed service requests (their timeouts fire up to this late)
_IN: Final = select.EPOLLIN
_OUT: Final = select.EPOLLOUT
_BROKEN: Final = select.EPOLLERR | select.EPOLLHUP
_READABLE: Final = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR


class _State(enum.Enum):
    READING = "reading"
    ACQUIRING = "acquiring"
    EXCHANGE = "exchange"
    FINISHED = "finished"


class _End(enum.Enum):
    DONE = "done"  # close the connection (after sending ``tail``, if any)
    LINGER = "linger"  # a refusal was (or is in ``tail`` to be) sent: close gracefully
    HANDOVER = "handover"  # serve_http1 carries on with ``tail`` as the bytes already read


_PoolKey = tuple[ConnectionPool[UpstreamKey], UpstreamKey]


class _Upstream:
    """One upstream connection while the engine holds it (in use by a client, or idle in its list)."""

    __slots__ = ("client", "fd", "idle_since", "key", "mask", "parser", "pending", "pooled", "reused", "sock")

    def __init__(self, pooled: PooledStream[UpstreamKey], key: _PoolKey) -> None:
        self.pooled = pooled
        self.sock = pooled.sock
        self.fd = pooled.sock.fileno()
        self.key = key
        self.parser = ResponseParser()
        self.client: _Client | None = None  # None: idle
        self.pending = b""  # request bytes the socket has not taken yet
        self.mask = 0
        self.idle_since = 0.0
        self.reused = pooled.reused  # it carried an exchange before this one


class _Client:
    __slots__ = (
        "body",
        "call",
        "chunked",
        "client_ip",
        "closing",
        "ctx",
        "end",
        "eof",
        "fd",
        "heard",
        "key",
        "mask",
        "out",
        "parser",
        "raw",
        "rec",
        "recorded",
        "replayed",
        "request",
        "responded",
        "response_done",
        "response_keep_alive",
        "sent",
        "sent_at",
        "sock",
        "started",
        "state",
        "status",
        "tail",
        "target",
        "try_deadline",
        "up",
        "woken",
    )

    def __init__(self, sock: socket.socket, ctx: Http1Context) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.ctx = ctx
        self.rec: ConnRecord = ctx.rec
        self.client_ip = ctx.rec.client.ip.encode()
        self.parser = RequestParser()
        self.raw = bytearray()  # every byte since the start of the current request (for a hand-over)
        self.eof = False
        self.mask = 0
        self.state = _State.READING
        self.request: RequestReceived | None = None
        self.body: list[bytes] = []
        self.key: RequestKey | None = None
        self.started = 0.0
        self.up: _Upstream | None = None
        self.out = b""  # response bytes the client has not taken yet
        self.chunked = False
        self.recorded = False
        self.responded = False
        self.response_done = False
        self.response_keep_alive = False
        self.closing = False  # the response said Connection: close (drain)
        self.sent = b""  # the whole forwarded request, to send once more if its reused upstream closes unheard
        self.heard = False  # the upstream sent a byte of this exchange
        self.replayed = False
        self.woken = trio.Event()
        self.end = _End.DONE
        self.tail = b""
        self.target: UpstreamKey = ctx.upstream  # where the request goes: the destination, or a service endpoint
        self.call: ServiceCall | None = None  # a service's request: its endpoint, load and retries
        self.sent_at = 0.0
        self.status = 0
        self.try_deadline = math.inf  # a service request's try: its response head by then (``_expire_tries``)


class Http1Engine:
    """Serves the common HTTP/1.1 exchange of many client connections from one task (``run``)."""

    def __init__(self, *, drain: Drain | None = None, max_idle_per_key: int = DEFAULT_MAX_IDLE_PER_KEY) -> None:
        self._epoll = select.epoll()
        self._socks: dict[int, _Client | _Upstream] = {}
        self._idle: dict[_PoolKey, list[_Upstream]] = {}
        self._buf = bytearray(READ_SIZE)
        self._view = memoryview(self._buf)
        self._drain = drain
        self._max_idle = max_idle_per_key
        self._nursery: trio.Nursery | None = None
        self._timed: set[_Client] = set()  # waiting for a response head with a deadline (a timed service route)
        self._timed_added = trio.Event()
        self.handed_over = 0  # connections passed to serve_http1 (for tests and the docs' measurements)

    @property
    def serving(self) -> int:
        """Client connections in the engine now."""
        return sum(1 for obj in self._socks.values() if isinstance(obj, _Client))

    @property
    def idle_upstreams(self) -> int:
        return sum(len(conns) for conns in self._idle.values())

    @property
    def held(self) -> int:
        """Bytes held in Python for all connections now (client input, response output, parser buffers): the
        backpressure bound, for tests."""
        total = 0
        for obj in self._socks.values():
            if isinstance(obj, _Client):
                total += len(obj.out) + len(obj.raw) + obj.parser.buffered
                if obj.up is not None:
                    total += len(obj.up.pending) + obj.up.parser.buffered
        return total

    async def serve(
        self, client: trio.SocketStream, ctx: Http1Context, *, first: PooledStream[UpstreamKey] | None = None
    ) -> None:
        """Proxy ``client``'s requests until it closes (the caller closes it), handing the connection to
        ``serve_http1`` for what the engine does not serve itself. ``first``: an unused upstream connection to
        ``ctx.upstream`` to start with. Needs ``run`` to be running."""
        if self._nursery is None:
            raise RuntimeError("Http1Engine.serve() before run()")
        if ctx.response_timeout is not None:
            # A timer per response is a cancel scope in a task: that connection is served by the trio loop.
            if first is not None:
                ctx.pool.release(first, reusable=True)
            await serve_http1(client, ctx)
            return
        if first is not None:
            self._park(_Upstream(first, (ctx.pool, ctx.upstream)), trio.current_time())
        trio_sock = client.socket
        # The same descriptor as a stdlib socket; detached (not closed) when the engine is done with it.
        sock = socket.socket(trio_sock.family, trio_sock.type, trio_sock.proto, trio_sock.fileno())
        c = _Client(sock, ctx)
        try:
            self._socks[c.fd] = c
            self._set_mask(c, _IN)
            try:
                await c.woken.wait()
            finally:
                self._finish(c, _End.DONE)  # cancelled (idle sweep, drain, shutdown): out of the engine now
            if c.end is _End.HANDOVER:
                self.handed_over += 1
                sock.detach()
                await serve_http1(client, ctx, initial=c.tail)
                return
            try:
                if c.tail:
                    await direct_io.send_all(sock, c.tail)
                    c.rec.down.sent += len(c.tail)
                if c.end is _End.LINGER:
                    await linger(sock)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                if c.rec.close_reason is None:
                    c.rec.close_reason = "client_reset"
        finally:
            if sock.fileno() >= 0:
                sock.detach()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Serve until cancelled. Only epoll's descriptor is known to trio."""
        fd = self._epoll.fileno()
        poll = self._epoll.poll
        dispatch = self._dispatch
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._return_stale)
                nursery.start_soon(self._expire_tries)
                drain = self._drain
                token = drain.hook(self._drained) if drain is not None else None
                task_status.started()
                try:
                    while True:
                        await trio.lowlevel.wait_readable(fd)
                        for ready_fd, events in poll(0, MAX_EVENTS):
                            dispatch(ready_fd, events)
                finally:
                    if drain is not None and token is not None:
                        drain.unhook(token)
        finally:
            self._nursery = None
            for obj in list(self._socks.values()):
                if isinstance(obj, _Client):
                    self._finish(obj, _End.DONE)
            for conns in self._idle.values():
                for up in conns:
                    self._close_upstream(up)
            self._idle.clear()
            self._epoll.close()

    # === dispatch ===

    def _dispatch(self, fd: int, events: int) -> None:
        obj = self._socks.get(fd)
        if obj is None:  # closed earlier in this batch
            return
        if isinstance(obj, _Client):
            c = obj
        else:
            if obj.client is None:
                # An idle connection has nothing to say: readable means its server closed it (or misbehaves).
                self._unpark(obj)
                self._close_upstream(obj)
                return
            c = obj.client
        try:
            if obj is c:
                self._client_event(c, events)
            else:
                assert isinstance(obj, _Upstream)
                self._upstream_event(c, obj, events)
        except Exception:  # a bug: end this connection, keep the engine serving the others
            self._bug(c)

    def _set_mask(self, obj: _Client | _Upstream, mask: int) -> None:
        """Watch ``obj`` for ``mask``; with nothing to watch it leaves the set (EPOLLHUP cannot be masked)."""
        old = obj.mask
        if mask == old:
            return
        obj.mask = mask
        change_interest(self._epoll, obj.fd, old, mask)

    def _update_client(self, c: _Client) -> None:
        if c.state is _State.FINISHED:
            return
        if c.eof:
            want_in = False
        elif c.state is _State.READING:
            want_in = True
        else:
            want_in = len(c.raw) < READ_AHEAD
        self._set_mask(c, (_IN if want_in else 0) | (_OUT if c.out else 0))

    def _update_upstream(self, up: _Upstream) -> None:
        c = up.client
        want_in = c is None or not c.out
        self._set_mask(up, (_IN if want_in else 0) | (_OUT if up.pending else 0))

    # === the client side ===

    def _client_event(self, c: _Client, events: int) -> None:
        if events & _OUT and c.out:
            self._flush_client(c)
            if c.state is _State.FINISHED:
                return
        if c.mask & _IN:
            if events & _READABLE:
                self._read_client(c)
        elif events & _BROKEN:  # reset (or both directions shut) while we only wait to write
            self._client_failed(c)

    def _read_client(self, c: _Client) -> None:
        try:
            n = c.sock.recv_into(self._buf)
        except BlockingIOError:
            return
        except OSError:
            self._client_failed(c)
            return
        if n == 0:
            c.eof = True
            c.parser.receive_data(b"")
            if c.call is not None and not c.responded:
                # As serve_http1 (Departures): a client that closes before its service response ends the request,
                # which frees its place in the queue and its endpoint's load instead of waiting for an answer.
                self._client_failed(c)
                return
        else:
            data = self._view[:n]
            c.rec.up.received += n
            c.raw += data
            c.parser.receive_data(data)
        if c.state is _State.READING:
            self._advance(c)
        else:
            self._update_client(c)  # read ahead while busy, up to READ_AHEAD

    def _advance(self, c: _Client) -> None:
        """Parse what the client sent; start the exchange once a request the engine serves is complete."""
        parser = c.parser
        while True:
            try:
                event = parser.next_event()
            except Http1Error:
                self._hand_over(c)  # serve_http1 parses the same bytes and refuses them the same way
                return
            if event is NEED_DATA:
                self._update_client(c)
                return
            if isinstance(event, RequestReceived):
                if not self._serves(event, parser.buffered) or not self._authorized(c, event):
                    self._hand_over(c)  # serve_http1 answers a denied request 403 (and counts it)
                    return
                c.request = event
            elif isinstance(event, DataReceived):
                c.body.append(event.data)
            elif isinstance(event, MessageEnded):
                self._begin(c)
                return
            else:  # PAUSED would be a bug: start_next() is called before parsing the next request
                assert isinstance(event, ConnectionClosed), event
                self._finish(c, _End.DONE)
                return

    def _serves(self, request: RequestReceived, buffered: int) -> bool:
        """Whether the engine serves this request itself; ``buffered``: bytes already here after its head."""
        framing = request.framing
        drain = self._drain
        return (
            request.upgrade is None
            and not request.expect_continue
            and not request.is_connect
            and (
                framing.kind is BodyKind.NONE
                or (framing.kind is BodyKind.LENGTH and framing.length <= min(buffered, MAX_BUFFERED_BODY))
            )
            and not (drain is not None and drain.draining)
        )

    @staticmethod
    def _authorized(c: _Client, request: RequestReceived) -> bool:
        authorize = c.ctx.authorize
        if authorize is None:
            return True
        if not authorize.check(request.head.method, request.head.target):
            return False  # counted by serve_http1, which answers it
        authorize.count(True)
        return True

    def _hand_over(self, c: _Client) -> None:
        # serve_http1 takes its upstream connections from the pool: move one of ours there for it.
        conns = self._idle.get((c.ctx.pool, c.ctx.upstream))
        if conns:
            self._give_back(conns.pop())
        self._finish(c, _End.HANDOVER, bytes(c.raw))

    def _begin(self, c: _Client) -> None:
        request = c.request
        assert request is not None
        ctx = c.ctx
        head = request.head
        try:
            forwarded = forwarded_request_head(
                head, request.framing, upgrade=None, client=c.client_ip, proto=b"http", ids=ctx.ids
            )
        except ValueError:
            self._hand_over(c)  # serve_http1 meets the same error, as it always has
            return
        if ctx.routing is not None:
            chosen = ctx.routing.call_now(head.method.decode("latin-1"), head.target.decode("latin-1"))
            if chosen is None:
                self._hand_over(c)  # serve_http1 waits for an endpoint, sheds, keeps timers, retries statuses
                return
            c.call, c.target = chosen
            c.rec.upstream = c.target
        del c.raw[: len(c.raw) - c.parser.buffered]  # the request is consumed; pipelined bytes stay
        rec = c.rec
        rec.requests += 1
        c.started = trio.current_time()
        authority = (head.headers.get(b"host") or b"").decode("latin-1")
        c.key = ctx.stats.request(rec.direction, authority, ctx.upstream, rec.tls, rec.peer_id)
        data = forwarded + b"".join(c.body) if c.body else forwarded
        c.body = []
        c.sent = data
        c.recorded = c.responded = c.response_done = c.heard = c.replayed = False
        up = self._take_idle(ctx.pool, c.target, c.started)
        if up is None:
            c.state = _State.ACQUIRING
            self._update_client(c)
            assert self._nursery is not None
            self._nursery.start_soon(self._acquire, c, data)
            return
        self._send_request(c, up, data)

    async def _acquire(self, c: _Client, data: bytes, *, fresh: bool = False) -> None:
        try:
            await self._acquire_and_send(c, data, fresh=fresh)
        except Exception:  # a bug: end this connection, not the engine (this task runs in its nursery)
            self._bug(c)

    async def _acquire_and_send(self, c: _Client, data: bytes, *, fresh: bool) -> None:
        ctx = c.ctx
        pool = ctx.pool
        try:
            pooled = await (pool.connect(c.target) if fresh else pool.acquire(c.target))
        except ConnectError as exc:
            if c.state is not _State.ACQUIRING:
                return
            request = c.request
            assert request is not None and c.key is not None
            if self._next_endpoint(c, Failure.CONNECT):
                await self._acquire_and_send(c, data, fresh=False)  # as many times as the route's max_attempts
                return
            self._end_call(c, ok=False)
            status = 503  # unreachable, refused or a connect timeout alike, as serve_http1 answers
            ctx.stats.response(c.key, status=status, latency_ms=self._ms(c), error=exc.reason)
            why = unreachable(c.target, exc.reason)
            # As serve_http1: a request with a body closes the connection (its body was not forwarded).
            close = request.framing.kind is not BodyKind.NONE
            answer = refusal(status, why, close=close)
            if close or not request.keep_alive:
                self._finish(c, _End.LINGER if close else _End.DONE, answer)
                return
            self._send_client(c, answer)
            self._next_request(c)
            return
        if c.state is not _State.ACQUIRING:
            pool.release(pooled, reusable=True)  # unused: the client went away meanwhile
            return
        self._send_request(c, _Upstream(pooled, (pool, c.target)), data)

    def _send_request(self, c: _Client, up: _Upstream, data: bytes) -> None:
        request = c.request
        assert request is not None
        c.state = _State.EXCHANGE
        c.rec.dst_opened = True
        if c.call is not None:
            self._service_try_sent(c, c.call, up)
        c.up = up
        up.client = c
        self._socks[up.fd] = up
        up.parser.expect(request.head.method)
        if not self._write_upstream(c, up, data):
            return
        self._update_upstream(up)
        self._update_client(c)

    def _send_client(self, c: _Client, data: bytes) -> None:
        """Write ``data`` to the client now; what it does not take waits in ``out`` (backpressure)."""
        if c.out:
            c.out += data
            return
        sent = self._write_client(c, data)
        if sent is not None and sent < len(data):
            c.out = data[sent:]
            self._update_client(c)
            if c.up is not None:
                self._update_upstream(c.up)

    def _flush_client(self, c: _Client) -> None:
        sent = self._write_client(c, c.out)
        if sent is None:
            return
        c.out = c.out[sent:]
        if c.out:
            return
        self._update_client(c)
        if c.state is _State.EXCHANGE:
            if c.response_done:
                self._response_ended(c)
            else:
                assert c.up is not None
                self._update_upstream(c.up)
                self._pump_response(c)  # the parser may hold more than the last write took

    def _write_client(self, c: _Client, data: bytes) -> int | None:
        """One ``send``: the bytes taken (0 when the socket is full), None when the client failed."""
        try:
            sent = c.sock.send(data)
        except BlockingIOError:
            return 0
        except OSError:
            self._client_failed(c)
            return None
        c.rec.down.sent += sent
        return sent

    def _client_failed(self, c: _Client) -> None:
        if c.rec.close_reason is None:
            c.rec.close_reason = "client_reset"
        self._finish(c, _End.DONE)

    # === the upstream side ===

    def _upstream_event(self, c: _Client, up: _Upstream, events: int) -> None:
        if events & _OUT and up.pending:
            if not self._write_upstream(c, up, up.pending):
                return
            self._update_upstream(up)
        if c.up is not up:  # the exchange ended meanwhile
            return
        if up.mask & _IN:
            if not events & _READABLE:
                return
            try:
                n = up.sock.recv_into(self._buf)
            except BlockingIOError:
                return
            except OSError:
                self._upstream_failed(c, 502, "upstream reset the connection", "upstream_reset")
                return
            c.rec.down.received += n
            c.heard = c.heard or n > 0
            up.parser.receive_data(self._view[:n])
            self._pump_response(c)
        elif events & _BROKEN:
            self._upstream_failed(c, 502, "upstream reset the connection", "upstream_reset")

    def _write_upstream(self, c: _Client, up: _Upstream, data: bytes) -> bool:
        """One ``send`` of request bytes; what the socket does not take stays ``pending``. False: it failed."""
        try:
            sent = up.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._upstream_failed(c, 502, "upstream reset while sending the request", "upstream_reset")
            return False
        c.rec.up.sent += sent
        up.pending = data[sent:]
        return True

    def _pump_response(self, c: _Client) -> None:
        """Turn what the response parser holds into bytes for the client, until it needs more or the client's
        socket is full."""
        up = c.up
        assert up is not None
        request = c.request
        assert request is not None
        parser = up.parser
        out: list[bytes] = []
        while not c.out:
            try:
                event = parser.next_event()
            except Http1Error as exc:
                self._bad_response(c, out, exc)
                return
            if event is NEED_DATA:
                break
            if isinstance(event, DataReceived):
                # At most one upstream read is parsed per pump: ``out`` stays within about READ_SIZE.
                out.append(encode_chunk(event.data) if c.chunked else event.data)
            elif isinstance(event, ResponseReceived):
                if not self._response_head(c, event, out):
                    return
            elif isinstance(event, MessageEnded):
                if c.chunked:
                    out.append(encode_last_chunk(event.trailers))
                c.response_done = True
                break
            else:  # after MessageEnded the loop stops: PAUSED is never asked for
                assert isinstance(event, ConnectionClosed), event
                self._flush_then_fail(c, out, 502, "upstream closed without a response", "upstream_reset")
                return
        if out:
            self._send_client(c, b"".join(out))
            if c.state is _State.FINISHED:
                return
        if c.response_done and not c.out:
            self._response_ended(c)

    def _response_head(self, c: _Client, event: ResponseReceived, out: list[bytes]) -> bool:
        """Write the response head (or forward a 1xx); False when the exchange ended instead."""
        request = c.request
        assert request is not None and c.key is not None
        head = event.head
        if event.informational:
            if request.head.version == b"1.1":
                informational = ResponseHead(head.status, head.reason, b"HTTP/1.1", strip_hop_by_hop(head.headers))
                out.append(serialise_response_head(informational, Framing(BodyKind.NONE)))
            return True
        call = c.call
        if call is not None:
            self._timed.discard(c)
            call.tried(ok=head.status < 500, rtt=trio.current_time() - c.sent_at)
            if call.retries_status(head.status) and self._next_endpoint(c, Failure.STATUS, status=head.status):
                self._try_again(c)  # a status the route retries: dropped unseen, the request to another endpoint
                return False
        ctx = c.ctx
        ctx.stats.response(c.key, status=head.status, latency_ms=self._ms(c))
        c.recorded = True
        c.status = head.status
        c.response_keep_alive = event.keep_alive
        try:
            framing = downstream_response_framing(event.framing, request.head.version)
        except Http1Error as exc:  # a transfer-coded response for an HTTP/1.0 client: as serve_http1 answers it
            c.rec.close_reason = f"http_{exc.reason.value}"
            self._discard_upstream(c)
            self._finish(c, _End.LINGER, refusal(exc.status, f"bad request: {exc.reason.value}", close=True))
            return False
        headers = strip_hop_by_hop(head.headers)
        drain = self._drain
        if drain is not None and drain.draining:
            # While the proxy drains, this exchange is the connection's last: tell the client so it reconnects.
            headers.set(b"connection", b"close")
            c.closing = True
        out.append(serialise_response_head(ResponseHead(head.status, head.reason, b"HTTP/1.1", headers), framing))
        c.chunked = framing.kind is BodyKind.CHUNKED
        c.responded = True
        return True

    def _response_ended(self, c: _Client) -> None:
        up = c.up
        request = c.request
        assert up is not None and request is not None
        if c.call is not None:
            self._end_call(c, ok=c.status < 500)
        c.up = None
        up.client = None
        if c.response_keep_alive and up.parser.buffered == 0:
            self._park(up, c.started)  # idle from a little earlier than now: checked and returned sooner
        else:
            self._close_upstream(up)
        if not (request.keep_alive and c.response_keep_alive) or c.closing:
            if c.closing and c.rec.close_reason is None:
                c.rec.close_reason = "drain"
            self._finish(c, _End.DONE)
            return
        self._next_request(c)

    def _next_request(self, c: _Client) -> None:
        if c.state is _State.FINISHED:  # the client failed while taking the last response
            return
        c.parser.start_next()
        c.request = None
        c.state = _State.READING
        drain = self._drain
        if not c.parser.buffered and not c.eof:
            if drain is not None and drain.draining:
                if c.rec.close_reason is None:
                    c.rec.close_reason = "drain"
                self._finish(c, _End.DONE)
            else:
                self._update_client(c)  # nothing pipelined: wait for the next request
            return
        self._advance(c)

    def _bad_response(self, c: _Client, out: list[bytes], exc: Http1Error) -> None:
        why, error = bad_response(exc, heard=c.heard)
        self._flush_then_fail(c, out, 502, why, error)

    def _flush_then_fail(self, c: _Client, out: list[bytes], status: int, why: str, error: str) -> None:
        if out and c.responded:
            self._send_client(c, b"".join(out))  # what arrived before the failure still goes out
            if c.state is _State.FINISHED:
                return
        self._upstream_failed(c, status, why, error)

    def _upstream_failed(self, c: _Client, status: int, why: str, error: str) -> None:
        """The upstream failed: 502 if the client has no response head yet, else close it short of the end
        (a started response is never faked complete)."""
        if c.state is _State.FINISHED:
            return
        if self._replayable(c):
            # As serve_http1: the server closed a kept-alive connection as we reused it, so the request never
            # reached the application; it goes once more on a fresh connection (RFC 9112 9.3.1).
            self._discard_upstream(c)
            c.replayed = True
            c.state = _State.ACQUIRING
            self._update_client(c)
            assert self._nursery is not None
            self._nursery.start_soon(functools.partial(self._acquire, c, c.sent, fresh=True))
            return
        if c.call is not None and not c.responded and not c.heard and self._next_endpoint(c, Failure.RESET):
            self._try_again(c)  # the endpoint closed or reset before answering: to another endpoint
            return
        self._discard_upstream(c)
        self._end_call(c, ok=False)
        if not c.recorded and c.key is not None:
            c.ctx.stats.response(c.key, status=status, latency_ms=self._ms(c), error=error)
        if c.responded:
            c.rec.close_reason = "upstream_reset"
            self._finish(c, _End.DONE, c.out)
            return
        self._finish(c, _End.LINGER, refusal(status, why, close=True))

    @staticmethod
    def _replayable(c: _Client) -> bool:
        up, request = c.up, c.request
        return (
            up is not None
            and request is not None
            and not c.replayed
            and replayable(request.head.method, upgrade=False, reused=up.reused, heard=c.heard, responded=c.responded)
        )

    # === service requests ===

    def _service_try_sent(self, c: _Client, call: ServiceCall, up: _Upstream) -> None:
        """A service request's try goes out: its latency is timed, its deadline watched, and an endpoint reached
        over mesh mTLS is named in the record and the request's metrics."""
        c.sent_at = trio.current_time()
        c.try_deadline = call.try_timeout()
        if c.try_deadline != math.inf:
            self._timed.add(c)
            self._timed_added.set()
        peer = up.pooled.peer
        if peer is not None and c.key is not None:
            c.rec.meshed_with(peer)
            c.key = c.ctx.stats.relabel(c.key, "true", peer)

    def _try_again(self, c: _Client) -> None:
        """Send the whole request again, to ``c.target`` (chosen by ``_next_endpoint``), on another connection."""
        self._timed.discard(c)
        self._discard_upstream(c)
        c.heard = False
        c.state = _State.ACQUIRING
        self._update_client(c)
        assert self._nursery is not None
        self._nursery.start_soon(self._acquire, c, c.sent)

    @staticmethod
    def _next_endpoint(c: _Client, failure: Failure, *, status: int = 0) -> bool:
        """After a failed try of a service's request: True when the route retries it and another endpoint is
        available now (``c.target`` is set to it); the failed try is counted against its endpoint either way."""
        call, request = c.call, c.request
        if call is None or request is None:
            return False
        if call.current is not None:
            call.tried(ok=False)
        # The engine holds every request whole; a connect failure sent nothing, any other retry resends the body,
        # which the route allows up to its max_body only.
        framing = request.framing
        body = framing.length if framing.kind is BodyKind.LENGTH else 0
        kept = failure is Failure.CONNECT or body <= call.route.retry.max_body
        if not call.may_retry(failure, body_kept=kept, status=status):
            return False
        target = call.endpoint_now()
        if target is None:
            return False
        c.target = c.rec.upstream = target
        return True

    @staticmethod
    def _end_call(c: _Client, *, ok: bool) -> None:
        """A service's request is over: out of the queue (``ok``: answered by its endpoint, below 500)."""
        call, c.call = c.call, None
        if call is not None:
            call.finish(ok=ok)

    # === idle upstream connections ===

    def _take_idle(self, pool: ConnectionPool[UpstreamKey], dst: UpstreamKey, now: float) -> _Upstream | None:
        """The most recently used idle connection; one idle for a while is health-checked as the pool does (a
        close noticed earlier has already removed it from the list: idle sockets stay in the epoll set)."""
        conns = self._idle.get((pool, dst))
        while conns:
            up = conns.pop()
            if now - up.idle_since < TRUSTED_IDLE or up.pooled.looks_idle():
                up.reused = True
                return up
            self._close_upstream(up)
        return None

    def _park(self, up: _Upstream, since: float) -> None:
        conns = self._idle.get(up.key)
        if conns is None:
            conns = self._idle[up.key] = []
        elif len(conns) >= self._max_idle:
            oldest = conns.pop(0)
            self._give_back(oldest)
        up.idle_since = since
        up.client = None
        up.pending = b""
        self._socks[up.fd] = up
        conns.append(up)
        self._set_mask(up, _IN)

    def _unpark(self, up: _Upstream) -> None:
        conns = self._idle.get(up.key)
        if conns is not None and up in conns:
            conns.remove(up)

    def _give_back(self, up: _Upstream) -> None:
        """Out of the engine, into its pool (idle, reusable)."""
        self._forget(up)
        pool, _ = up.key
        pool.release(up.pooled, reusable=True)

    def _forget(self, up: _Upstream) -> None:
        self._set_mask(up, 0)
        if self._socks.get(up.fd) is up:
            del self._socks[up.fd]

    def _close_upstream(self, up: _Upstream) -> None:
        self._forget(up)
        up.client = None
        up.pooled.close()  # the loop guard forgets it through the pool's on_close

    def _discard_upstream(self, c: _Client) -> None:
        up = c.up
        if up is not None:
            c.up = None
            self._close_upstream(up)

    async def _expire_tries(self) -> NoReturn:
        """Every ``TICK`` while some service request waits for its head with a deadline: those past it time out
        (a cancel scope per request, as serve_http1 uses, would cost every request about 20 us)."""
        while True:
            if not self._timed:
                await self._timed_added.wait()
                self._timed_added = trio.Event()
                continue
            await trio.sleep(TICK)
            now = trio.current_time()
            for c in [c for c in self._timed if c.try_deadline <= now]:
                self._timed.discard(c)
                try:
                    self._head_timed_out(c)
                except Exception:  # a bug: end this connection, not the engine
                    self._bug(c)

    def _head_timed_out(self, c: _Client) -> None:
        """No response head by the try's deadline: another try when it was the per-try timeout and the route
        retries that, else 504 (the connection closes, as serve_http1 does)."""
        call = c.call
        if call is None or c.state is not _State.EXCHANGE or c.responded:
            return
        if c.try_deadline < call.deadline:
            if self._next_endpoint(c, Failure.PER_TRY_TIMEOUT):
                self._try_again(c)
                return
            per_try = call.route.retry.per_try_timeout
            why, error = f"no response from {c.target} within the per-try timeout ({per_try:g}s)", "per_try_timeout"
        else:
            route = call.route
            why = f"no response within the route's timeout ({route.timeout:g}s, route {route.name})"
            error = "request_timeout"
        self._discard_upstream(c)  # not reused: its response may still come
        self._end_call(c, ok=False)
        if c.key is not None:
            c.ctx.stats.response(c.key, status=504, latency_ms=self._ms(c), error=error)
        self._finish(c, _End.LINGER, refusal(504, why, close=True))

    async def _return_stale(self) -> NoReturn:
        while True:
            await trio.sleep(IDLE_RETURN)
            horizon = trio.current_time() - IDLE_RETURN
            for conns in self._idle.values():
                while conns and conns[0].idle_since <= horizon:
                    self._give_back(conns.pop(0))

    def _drained(self) -> None:
        """The proxy started draining: connections waiting for their next request close now (busy ones after
        their exchange, with Connection: close)."""
        for obj in list(self._socks.values()):
            if (
                isinstance(obj, _Client)
                and obj.state is _State.READING
                and obj.request is None
                and not obj.parser.buffered
            ):
                if obj.rec.close_reason is None:
                    obj.rec.close_reason = "drain"
                self._finish(obj, _End.DONE)

    # === endings ===

    def _bug(self, c: _Client) -> None:
        log.exception("conn=%d: HTTP/1.1 engine failed", c.rec.id)
        if c.rec.close_reason is None:
            c.rec.close_reason = "proxy_error"
        self._finish(c, _End.DONE)

    def _finish(self, c: _Client, end: _End, tail: bytes = b"") -> None:
        """Take ``c`` out of the engine and wake its handler task; a no-op once finished."""
        if c.state is _State.FINISHED:
            return
        c.state = _State.FINISHED
        self._timed.discard(c)
        self._end_call(c, ok=False)  # a service request cut short (client gone, cancelled): out of the queue
        self._discard_upstream(c)
        if c.mask:
            self._epoll.unregister(c.fd)
            c.mask = 0
        if self._socks.get(c.fd) is c:
            del self._socks[c.fd]
        c.end = end
        c.tail = tail
        c.woken.set()

    @staticmethod
    def _ms(c: _Client) -> float:
        return (trio.current_time() - c.started) * 1000
