"""H2Connection: one HTTP/2 connection (client or server side) over a ``trio.abc.Stream``. The only h2 user.

Theory of operation
-------------------
``run`` owns one nursery holding: the reader (this task), one writer task, the optional keepalive task and, on the
server side, one handler task per accepted stream.

- The reader receives up to 64 KiB, passes it through ``FrameScanner`` (frame-level flood checks, GOAWAY cut out),
  then hands it to h2 in 16 KiB slices so a rapid-reset or invalid-request flood is judged every few hundred
  streams, not every few thousand. Streams opened and reset inside one slice never reach the handler.
- The writer is the only task that calls ``send_all``. Everything h2 produces is appended to one outbound buffer and
  written in one ``send_all`` per wake-up. A writer (not a send lock taken by whoever produced bytes) keeps the
  reader from blocking on a peer that does not read, so a PING/SETTINGS flood is counted and refused instead of
  stalling the connection (``ControlBudget``).
- Receive side flow control: DATA is queued on its stream and acknowledged to h2 (``flow_controlled_length``) only
  when the consumer takes it (with ``hold``, once it comes back for the next chunk: a proxy has then forwarded
  it), so a slow consumer stops the peer. The queue needs no item bound: its bytes are
  bounded by the windows we advertise (``stream_window`` per stream, ``connection_window`` per connection), which h2
  enforces; empty DATA is acknowledged at once and never queued.
- Send side: ``send_data`` writes no more than the peer's window allows and waits for WINDOW_UPDATE (and for the
  outbound buffer to drain below 64 KiB) instead of buffering.
- Inbound MAX_CONCURRENT_STREAMS is ours too: h2 would make one stream too many a connection error, so it is
  given a limit no client reaches and the stream over the announced one is refused alone (REFUSED_STREAM).
- GOAWAY is handled by us, not h2: h2 4.4.1 closes its whole state machine on one, which would kill the streams a
  graceful GOAWAY lets finish. Received: streams above the last id fail with ``H2StreamRefusedError`` (retryable)
  and no new stream opens. ``drain`` sends GOAWAY(NO_ERROR, last processed id) and ends when the streams are done.

- Per message cost: h2's header validation is off (``validate.malformed_block`` applies its rules in one pass) and a
  header block equal to one that passed every check on this connection is not checked again; h2 is given our
  encoder (``HeaderBlockEncoder``: no dynamic table, no Huffman) and a decoder that remembers the blocks it decoded
  by bytes and table content (``RememberingDecoder``). docs/http2.md has the measurements.

Resource handling: ``run`` closes the transport when it returns. Error handling: every h2 exception is mapped here to
``dataplane.http2.errors``; ``run`` raises ``H2ProtocolError``/``H2FloodError``/``H2KeepaliveTimeoutError`` after
closing with GOAWAY, and returns normally when the peer closed or a drain finished.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Final, cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
import msgspec
import trio

from dataplane.errors import ProxyError
from dataplane.http2.counters import H2Counters
from dataplane.http2.errors import (
    H2ConnectionClosedError,
    H2Error,
    H2ErrorCode,
    H2FloodError,
    H2GoAwayError,
    H2InvalidResponseError,
    H2KeepaliveTimeoutError,
    H2ProtocolError,
    H2StreamRefusedError,
    H2StreamResetError,
    error_code_name,
)
from dataplane.http2.flood import ControlBudget, FloodKind, FloodLimits, RapidReset
from dataplane.http2.frames import FrameScanner, GoAway, encode_goaway
from dataplane.http2.header_block import HeaderBlockEncoder, fields_size, table_use
from dataplane.http2.validate import BlockKind, Header, malformed_block, validate_request, validate_response

LOG = logging.getLogger(__name__)


def _ignore(event: h2.events.Event) -> bool:
    """PING/SETTINGS ACKs, PRIORITY, unknown frames: h2 already did what they need."""
    return True


_RECEIVE_SIZE: Final = 65536
_FEED_SLICE: Final = 16384
"""h2 parses at most this much between two flood checks (about 600 HEADERS+RST pairs)."""
_HIGH_WATER: Final = 65536
"""Senders wait while this many bytes are queued for the writer: the socket, not us, buffers the rest."""
_H2_STREAM_LIMIT: Final = (1 << 31) - 1
"""The inbound stream limit h2 is given; the announced one is enforced by us, stream by stream."""
_CLOSE_FLUSH_TIMEOUT: Final = 1.0
"""How long a closing connection tries to write its final GOAWAY to a peer that may not read."""

_REMEMBERED_BLOCK_SIZE: Final = 1024
"""Encoded header blocks up to this size may be remembered by ``RememberingDecoder``."""
_MEMO_BUDGET: Final = 32768
"""What each per-connection memo of header blocks (decoded, checked) may keep, by ``fields_size``: a 1 KiB block can
decode to a thousand fields, so blocks are counted by what they decode to; a memo is emptied when it would exceed."""
_Block = tuple[BlockKind, tuple[Header, ...]]
StreamHandler = Callable[["H2Stream"], Awaitable[None]]
MAX_CONCURRENT_STREAMS_REASON: Final = "max_concurrent_streams"
"""``counters.rejected`` reason of a stream refused (REFUSED_STREAM) for going over our announced limit."""


class H2Settings(msgspec.Struct, frozen=True, kw_only=True):
    max_concurrent_streams: int = 100
    """What we allow the peer to open (h2 refuses more); outbound we honour the peer's value."""
    stream_window: int = 65535
    """Receive window per stream = the most bytes one stream can buffer here (reliability table (c): <= 64 KiB)."""
    connection_window: int = 1 << 20
    """Receive window for the connection = the most bytes all its streams buffer together (<= 1 MiB)."""
    max_header_list_size: int = 65536
    ping_interval: float | None = None
    """Send a keepalive PING this often (seconds); None: never."""
    ping_timeout: float = 20.0
    """Close the connection when a keepalive PING is not answered within this many seconds."""
    allow_underscores: bool = False
    """Accept request header names with `_` (refused by default: reliability.md G3 26)."""
    flood: FloodLimits = FloodLimits()


class RememberingDecoder(hpack.Decoder):
    """hpack's decoder, remembering what a block decoded to and which fields it added to the dynamic table
    (``table_use``): a block is a function of its bytes and, if it refers to dynamic entries, of the table's content.
    A client that sends the same request fields as references to its table (h2load, browsers) or an upstream that
    sends the same response fields as literals each time (nginx) then costs one decode per distinct block, not one
    per message; a remembered block's additions are replayed on the table.

    The table's content is named by its length and its newest entry (an object of its own per insertion: hpack
    builds a tuple in ``HeaderTable.add``, and the memo keeps it alive so its id is not reused); entries leave from
    the oldest end only, so the two identify the content. Only blocks hpack decoded (within the header list limit
    in force then, part of the key) are remembered; blocks with a size update never."""

    def __init__(self) -> None:
        super().__init__()
        self._remembered: dict[
            tuple[bytes, int, int, int], tuple[list[hpack.HeaderTuple], list[hpack.HeaderTuple], object]
        ] = {}
        self._remembered_size = 0

    def _table_state(self) -> tuple[int, int, object]:
        entries = self.header_table.dynamic_entries
        newest = entries[0] if entries else None
        return len(entries), id(newest), newest

    def decode(self, data: bytes, raw: bool = False) -> Iterable[hpack.HeaderTuple]:
        if not raw or len(data) > _REMEMBERED_BLOCK_SIZE:
            return super().decode(data, raw)
        block, limit = bytes(data), self.max_header_list_size
        size, newest_id, newest = self._table_state()
        remembered = self._remembered.get((block, limit, -1, 0)) or self._remembered.get(
            (block, limit, size, newest_id)
        )
        if remembered is not None:
            headers, added, _ = remembered
            for name, value in added:
                self.header_table.add(name, value)
            return list(headers)
        headers = list(super().decode(data, raw))
        use = table_use(block)
        cost = fields_size(headers) + len(block)
        if use is None or cost > _MEMO_BUDGET:
            return headers
        if self._remembered_size + cost > _MEMO_BUDGET:
            self._remembered.clear()
            self._remembered_size = 0
        self._remembered_size += cost
        key = (block, limit, size, newest_id) if use.reads else (block, limit, -1, 0)
        self._remembered[key] = (list(headers), [headers[p] for p in use.added], newest)
        return headers


class H2Stream:
    """One request/response exchange. The server side receives it in its handler; the client side from
    ``H2Connection.open_stream``. Methods raise ``H2StreamResetError``/``H2ConnectionClosedError``."""

    __slots__ = (
        "_buffered",
        "_conn",
        "_error",
        "_held",
        "_inbox",
        "_local_ended",
        "_remote_ended",
        "_wakeup",
        "opened_at",
        "request_headers",
        "responded",
        "response_headers",
        "stream_id",
        "trailers",
    )

    def __init__(self, conn: H2Connection, stream_id: int, request_headers: list[Header]) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self.request_headers = request_headers
        self.response_headers: list[Header] | None = None
        self.trailers: list[Header] | None = None
        """Trailers the peer sent, set once ``receive_data`` has returned b''."""
        self.opened_at = trio.current_time()
        self.responded = False
        self._inbox: deque[tuple[bytes, int]] = deque()
        self._buffered = 0
        self._held = 0  # flow-controlled bytes of the chunk a ``hold`` caller has in hand
        self._wakeup = trio.Event()
        self._remote_ended = False
        self._local_ended = False
        self._error: H2Error | None = None

    def __repr__(self) -> str:
        return (
            f"<H2Stream {self.stream_id} queued={len(self._inbox)} remote_ended={self._remote_ended} "
            f"local_ended={self._local_ended} error={type(self._error).__name__ if self._error else None}>"
        )

    @property
    def buffered(self) -> int:
        """Flow-controlled bytes received on this stream and not yet given back to the peer's window."""
        return self._buffered

    @property
    def remote_ended(self) -> bool:
        """The peer ended its side (END_STREAM seen); queued data may still be waiting for ``receive_data``."""
        return self._remote_ended

    @property
    def queued(self) -> bool:
        """A body chunk is here: the next ``receive_data`` returns it without waiting."""
        return bool(self._inbox)

    @property
    def at_end(self) -> bool:
        """The peer ended the stream and every chunk was handed out: the next ``receive_data`` returns b''."""
        return self._remote_ended and not self._inbox

    # === receiving ===

    async def receive_response(self) -> list[Header]:
        """Client side: wait for the final response headers (validated; 1xx are skipped)."""
        while self.response_headers is None:
            if self._error is not None:
                raise self._error
            await self._wait()
        return self.response_headers

    async def receive_data(self, *, hold: bool = False) -> bytes:
        """The next body chunk; b'' once the peer ended the stream (``trailers`` is then set if it sent any).

        Taking a chunk is what gives its bytes back to the peer's flow-control window; with ``hold`` that waits
        until the next ``receive_data`` call (a proxy forwards the chunk in between), so the chunk in hand still
        counts against the peer's window and ``buffered`` never exceeds it."""
        if self._held:
            self._give_back(self._held)
            self._held = 0
        while not self._inbox:
            # A complete stream stays complete: a reset that came after the peer's END_STREAM (RST_STREAM NO_ERROR
            # after a full response, RFC 9113 8.1) only stops our sending.
            if self._remote_ended:
                return b""
            if self._error is not None:
                raise self._error
            await self._wait()
        data, flow_controlled = self._inbox.popleft()
        if hold:
            self._held = flow_controlled
        else:
            self._give_back(flow_controlled)
        return data

    def _give_back(self, flow_controlled: int) -> None:
        self._buffered -= flow_controlled
        self._conn._consumed(self.stream_id, flow_controlled)

    async def _wait(self) -> None:
        await self._wakeup.wait()
        self._wakeup = trio.Event()

    def _wake(self) -> None:
        self._wakeup.set()

    # === sending ===

    async def send_headers(self, headers: Sequence[Header], *, end_stream: bool = False) -> None:
        """Server side: the response headers (1xx may come first). Validated like an upstream response."""
        self._check_sendable()
        await self._conn._send_headers(self, headers, end_stream=end_stream)
        self.responded = True

    async def send_data(self, data: bytes, *, end_stream: bool = False) -> None:
        """Send ``data``, waiting for the peer's flow-control window as needed (never buffering beyond it)."""
        await self._conn._send_data(self, data, end_stream=end_stream)

    async def send_trailers(self, headers: Sequence[Header]) -> None:
        """End the stream with trailers (gRPC status)."""
        self._check_sendable()
        await self._conn._send_headers(self, headers, end_stream=True)

    async def end(self) -> None:
        """End our side without more data."""
        await self._conn._send_data(self, b"", end_stream=True)

    def reset(self, code: H2ErrorCode = H2ErrorCode.CANCEL) -> None:
        """RST_STREAM with ``code``; later calls on this stream raise ``H2StreamResetError``. Idempotent."""
        self._conn._reset(self, code)

    def _check_sendable(self) -> None:
        if self._error is not None:
            raise self._error
        if self._local_ended:
            raise H2StreamResetError(f"stream {self.stream_id} already ended on our side", code=0, remote=False)


class H2Connection:
    """See the module docstring. Server side: ``await nursery.start(conn.run, handler)``; client side:
    ``await nursery.start(conn.run)`` then ``await conn.open_stream(headers)``."""

    def __init__(
        self,
        transport: trio.abc.Stream,
        *,
        client_side: bool,
        settings: H2Settings | None = None,
        counters: H2Counters | None = None,
    ) -> None:
        self._transport = transport
        self._client_side = client_side
        self._settings = settings = settings if settings is not None else H2Settings()
        self.counters = counters if counters is not None else H2Counters()
        # h2's header validation is off both ways. Inbound, ``malformed_block`` checks the same rules in one pass
        # (h2 chains seven generators per block) and fails the connection as h2 did (reliability A7). Outbound,
        # everything we send was validated on its way in or is ours.
        config = h2.config.H2Configuration(
            client_side=client_side,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
        )
        self._h2 = h2.connection.H2Connection(config=config)
        # hpack's encoder (dynamic table, Huffman) costs more than anything else we send: ours uses neither.
        self._h2.encoder = cast(hpack.Encoder, HeaderBlockEncoder())
        decoder = RememberingDecoder()
        decoder.max_header_list_size = self._h2.decoder.max_header_list_size
        self._h2.decoder = decoder
        self._h2.local_settings = self._local_settings(settings.max_concurrent_streams)
        self._scanner = FrameScanner(settings.flood, expect_preface=not client_side)
        self._rapid_reset = RapidReset(settings.flood)
        self._control = ControlBudget(settings.flood)
        self._streams: dict[int, H2Stream] = {}
        self._new_streams: list[H2Stream] = []
        self._outbound = bytearray()
        self._writer_wakeup = trio.Event()
        self._writer_done = trio.Event()
        self._drained = trio.lowlevel.ParkingLot()  # senders waiting for the outbound buffer to drain
        self._window = trio.lowlevel.ParkingLot()  # senders waiting for flow-control window
        self._slots = trio.lowlevel.ParkingLot()  # openers waiting for a MAX_CONCURRENT_STREAMS slot
        self._ping_acked = trio.Event()
        self._closing = False
        self._closed = trio.Event()
        self._fatal: H2Error | None = None
        self._goaway_sent: int | None = None  # last stream id we announced
        self._goaway_received: int | None = None
        self._reader_scope = trio.CancelScope()
        self._passed: set[_Block] = set()  # header blocks that passed every check here (see ``_unchecked``)
        self._passed_bytes = 0
        self._on_event = self._event_handlers()
        self.flood: FloodKind | None = None
        """The flood kind that closed this connection, if one did."""
        self.close_reason = ""
        """Why the connection ended: peer_closed, drained, goaway_received, or an error's ``reason``."""

    def _local_settings(self, max_concurrent_streams: int) -> h2.settings.Settings:
        return h2.settings.Settings(
            client=self._client_side,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: self._settings.stream_window,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: self._settings.max_header_list_size,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )

    def __repr__(self) -> str:
        side = "client" if self._client_side else "server"
        return f"<H2Connection {side} streams={len(self._streams)} outbound={len(self._outbound)}>"

    @property
    def accepting(self) -> bool:
        """False once a GOAWAY was sent or received, or the connection is closing: open a new one."""
        return not (self._closing or self._goaway_sent is not None or self._goaway_received is not None)

    @property
    def active_streams(self) -> int:
        return len(self._streams)

    @property
    def buffered(self) -> int:
        """Received bytes queued on all streams, not yet consumed (bounded by ``connection_window``)."""
        return sum(stream._buffered for stream in self._streams.values())

    # === running ===

    async def run(
        self,
        handler: StreamHandler | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the connection until the peer closes, a drain finishes or an error closes it.

        ``handler`` (server side, required there) is called once per valid request stream, in its own task; what it
        does not finish is reset. ``task_status.started()`` once our preface and SETTINGS are queued.
        """
        if not self._client_side and handler is None:
            raise ValueError("the server side of H2Connection needs a stream handler")
        self._h2.initiate_connection()
        # Our SETTINGS frame (queued above) announces max_concurrent_streams; h2 itself must never enforce it: one
        # stream too many is its connection error (TooManyStreamsError), while RFC 9113 5.1.2 and reliability.md G2
        # 20 want only that stream refused. _request_received refuses it; h2 is told a limit a client cannot reach.
        self._h2.local_settings = self._local_settings(_H2_STREAM_LIMIT)
        extra = self._settings.connection_window - 65535
        if extra > 0:
            self._h2.increment_flow_control_window(extra)
        self._flush()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer)
                if self._settings.ping_interval is not None:
                    nursery.start_soon(self._keepalive, self._settings.ping_interval)
                task_status.started()
                with self._reader_scope:
                    await self._reader(nursery, handler)
                await self._shut(nursery)
        finally:
            self._closed.set()
            await trio.aclose_forcefully(self._transport)
        if self._fatal is not None:
            raise self._fatal

    async def open_stream(self, headers: Sequence[Header], *, end_stream: bool = False) -> H2Stream:
        """Client side: open a stream with request ``headers``, waiting for a MAX_CONCURRENT_STREAMS slot.

        Raises ``H2GoAwayError`` (retryable) when the connection no longer takes new streams."""
        if not self._client_side:
            raise RuntimeError("open_stream is for the client side")
        while True:
            if not self.accepting:
                raise H2GoAwayError("the upstream HTTP/2 connection is going away; open a new one")
            if self._h2.open_outbound_streams < self._h2.remote_settings.max_concurrent_streams:
                break
            await self._slots.park()
        await self._wait_writable()
        if not self.accepting:
            raise H2GoAwayError("the upstream HTTP/2 connection is going away; open a new one")
        stream_id = self._h2.get_next_available_stream_id()
        stream = H2Stream(self, stream_id, list(headers))
        self._streams[stream_id] = stream
        try:
            self._h2.send_headers(stream_id, headers, end_stream=end_stream)
        except h2.exceptions.ProtocolError as exc:
            del self._streams[stream_id]
            raise H2ProtocolError(f"cannot send request headers: {exc}") from None
        stream._local_ended = end_stream
        self.counters.streams += 1
        self._flush()
        return stream

    async def drain(self) -> None:
        """Graceful close: GOAWAY(NO_ERROR, last processed stream id), refuse new streams, return once the open
        streams are done and the connection closed. Put a deadline around it; cancel ``run`` when it passes."""
        if self._goaway_sent is None and not self._closing:
            last = self._h2.highest_inbound_stream_id
            self._goaway_sent = last
            self._outbound += encode_goaway(last, H2ErrorCode.NO_ERROR)
            self._writer_wakeup.set()
        self._maybe_finish()
        await self._closed.wait()

    async def _reader(self, nursery: trio.Nursery, handler: StreamHandler | None) -> None:
        while True:
            try:
                data = await self._transport.receive_some(_RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self.close_reason = self.close_reason or "peer_closed"
                return
            if not self._receive(data, nursery, handler) or self._closing:
                return
            self._flush()

    def _receive(self, data: bytes | bytearray, nursery: trio.Nursery, handler: StreamHandler | None) -> bool:
        """One received chunk through the scanner and h2; False when the connection is closing."""
        scanner = self._scanner
        data = scanner.feed(data)
        if scanner.tripped is not None:
            return self._flooded(scanner.tripped)
        if scanner.control_frames:
            kind = self._control.queued(scanner.control_frames)
            if kind is not None:
                return self._flooded(kind)
        for start in range(0, len(data), _FEED_SLICE):
            try:
                events = self._h2.receive_data(data[start : start + _FEED_SLICE])
            except h2.exceptions.DenialOfServiceError:
                return self._flooded(FloodKind.HPACK_BOMB)
            except h2.exceptions.ProtocolError as exc:
                self._protocol_error(f"the peer broke HTTP/2: {exc}")
                return False
            for event in events:
                if not self._on_event[type(event)](event):
                    return False
            if self._new_streams:
                self._start_handlers(nursery, handler)
        if scanner.goaways:
            self._goaways_received()
        return True

    # === h2 events: each handler returns False when the connection is closing ===

    def _event_handlers(self) -> defaultdict[type[h2.events.Event], Callable[[h2.events.Event], bool]]:
        table: defaultdict[type[h2.events.Event], Callable[[h2.events.Event], bool]] = defaultdict(lambda: _ignore)
        table.update(
            {
                h2.events.DataReceived: self._on_data,
                h2.events.RequestReceived: self._on_request,
                h2.events.StreamEnded: self._on_stream_ended,
                h2.events.ResponseReceived: self._on_response,
                h2.events.WindowUpdated: self._on_window,
                h2.events.RemoteSettingsChanged: self._on_window,
                h2.events.StreamReset: self._on_stream_reset,
                h2.events.TrailersReceived: self._on_trailers,
                h2.events.InformationalResponseReceived: self._on_informational,
                h2.events.PingAckReceived: self._on_ping_ack,
            }
        )
        return table

    def _on_data(self, event: h2.events.Event) -> bool:
        data = cast(h2.events.DataReceived, event)
        stream = self._streams.get(data.stream_id)
        if stream is None or not data.data:
            # nobody will consume it: give the window back now
            self._consumed(data.stream_id, data.flow_controlled_length)
        else:
            stream._inbox.append((data.data, data.flow_controlled_length))
            stream._buffered += data.flow_controlled_length
            stream._wake()
        return True

    def _on_request(self, event: h2.events.Event) -> bool:
        request = cast(h2.events.RequestReceived, event)
        block = self._unchecked(request.headers, BlockKind.REQUEST)
        if block is not None and not self._well_formed(request.headers, BlockKind.REQUEST):
            return False
        return self._request_received(request.stream_id, request.headers, block)

    def _on_response(self, event: h2.events.Event) -> bool:
        response = cast(h2.events.ResponseReceived, event)
        block = self._unchecked(response.headers, BlockKind.RESPONSE)
        if block is not None and not self._well_formed(response.headers, BlockKind.RESPONSE):
            return False
        self._response_received(response.stream_id, response.headers, block)
        return True

    def _unchecked(self, headers: list[Header], kind: BlockKind) -> _Block | None:
        """The block to check and then remember, or None when an equal one passed every check on this connection
        (a client or upstream repeats its fields from message to message)."""
        block = (kind, tuple(headers))
        return None if block in self._passed else block

    def _passed_checks(self, block: _Block) -> None:
        size = fields_size(block[1])
        if size > _MEMO_BUDGET:
            return
        if self._passed_bytes + size > _MEMO_BUDGET:
            self._passed.clear()
            self._passed_bytes = 0
        self._passed.add(block)
        self._passed_bytes += size

    def _on_informational(self, event: h2.events.Event) -> bool:
        return self._well_formed(cast(h2.events.InformationalResponseReceived, event).headers, BlockKind.RESPONSE)

    def _well_formed(self, headers: list[Header], kind: BlockKind) -> bool:
        """A malformed block (what h2's own validation refused) fails the connection, as h2 did."""
        problem = malformed_block(headers, kind)
        if problem is None:
            return True
        self._protocol_error(f"the peer broke HTTP/2: malformed {kind.value} header block: {problem}")
        return False

    def _on_stream_ended(self, event: h2.events.Event) -> bool:
        stream = self._streams.get(cast(h2.events.StreamEnded, event).stream_id)
        if stream is not None:
            stream._remote_ended = True
            stream._wake()
            self._maybe_forget(stream)
        return True

    def _on_window(self, event: h2.events.Event) -> bool:
        self._window.unpark_all()
        self._slots.unpark_all()
        return True

    def _on_stream_reset(self, event: h2.events.Event) -> bool:
        return self._stream_reset(cast(h2.events.StreamReset, event))

    def _on_trailers(self, event: h2.events.Event) -> bool:
        trailers = cast(h2.events.TrailersReceived, event)
        if not self._well_formed(trailers.headers, BlockKind.TRAILERS):
            return False
        stream = self._streams.get(trailers.stream_id)
        if stream is not None:
            stream.trailers = trailers.headers
        return True

    def _on_ping_ack(self, event: h2.events.Event) -> bool:
        self._ping_acked.set()
        return True

    def _request_received(self, stream_id: int, headers: list[Header], block: _Block | None) -> bool:
        if self._goaway_sent is not None and stream_id > self._goaway_sent:
            self._h2.reset_stream(stream_id, H2ErrorCode.REFUSED_STREAM)
            return self._control.queued(1) is None or self._flooded(FloodKind.OUTBOUND_CONTROL)
        self._rapid_reset.opened()
        if len(self._streams) >= self._settings.max_concurrent_streams:
            # One stream over the limit we announced: refused alone (the client may retry it). Like an invalid one
            # it ended early, so a client that keeps ignoring the limit trips rapid_reset.
            reason, code = MAX_CONCURRENT_STREAMS_REASON, H2ErrorCode.REFUSED_STREAM
        else:
            invalid = None
            if block is not None:
                invalid = validate_request(headers, allow_underscores=self._settings.allow_underscores)
                if invalid is None:
                    self._passed_checks(block)
            if invalid is None:
                stream = H2Stream(self, stream_id, headers)
                self._streams[stream_id] = stream
                self._new_streams.append(stream)
                return True
            LOG.debug("h2 stream %d refused: %s", stream_id, invalid.message)
            reason, code = invalid.reason, H2ErrorCode.PROTOCOL_ERROR
        self.counters.rejected[reason] += 1
        self._h2.reset_stream(stream_id, code)
        kind = self._rapid_reset.ended_early() or self._control.queued(1)
        return kind is None or self._flooded(kind)

    def _response_received(self, stream_id: int, headers: list[Header], block: _Block | None) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        invalid = None
        if block is not None:
            invalid = validate_response(headers)
            if invalid is None:
                self._passed_checks(block)
        if invalid is None:
            stream.response_headers = headers
            stream._wake()
            return
        self.counters.rejected[invalid.reason] += 1
        self._reset(stream, H2ErrorCode.PROTOCOL_ERROR)
        stream._error = H2InvalidResponseError(f"invalid upstream response: {invalid.message}")

    def _stream_reset(self, event: h2.events.StreamReset) -> bool:
        stream = self._streams.pop(event.stream_id, None)
        if stream is None:
            return True
        code = int(event.error_code)
        name = error_code_name(code)
        if code == H2ErrorCode.REFUSED_STREAM:
            stream._error = H2StreamRefusedError(f"the peer refused stream {event.stream_id}", code=code, remote=True)
        else:
            stream._error = H2StreamResetError(
                f"the peer reset stream {event.stream_id} ({name})", code=code, remote=True
            )
        stream._wake()
        self._slots.unpark_all()
        self._window.unpark_all()
        if not stream._remote_ended:
            # A stream the peer had already ended keeps what it sent readable (a server may reset with NO_ERROR
            # right after a complete response, RFC 9113 8.1); its window is given back as it is read.
            self._release(stream)
        if self._client_side or not event.remote_reset:
            return True
        lifetime = trio.current_time() - stream.opened_at
        if not stream.responded or lifetime < self._settings.flood.premature_lifetime:
            kind = self._rapid_reset.ended_early()
            if kind is not None:
                return self._flooded(kind)
        return True

    def _start_handlers(self, nursery: trio.Nursery, handler: StreamHandler | None) -> None:
        # only streams still alive after the whole slice: a HEADERS+RST pair in one slice never reaches the app
        assert handler is not None
        for stream in self._new_streams:
            if stream._error is None:
                self.counters.streams += 1
                nursery.start_soon(self._handle, handler, stream)
        self._new_streams.clear()

    async def _handle(self, handler: StreamHandler, stream: H2Stream) -> None:
        try:
            await handler(stream)
        except H2Error:
            pass  # the stream or connection already failed; nothing more to tell the peer
        except ProxyError as exc:
            LOG.info("h2 stream %d handler failed: %s", stream.stream_id, exc)
            self._reset(stream, H2ErrorCode.INTERNAL_ERROR)
        finally:
            if stream._error is None and not (stream._local_ended and stream._remote_ended):
                # an unfinished response must not look complete; a finished one may still have an unread body
                self._reset(stream, H2ErrorCode.NO_ERROR if stream._local_ended else H2ErrorCode.INTERNAL_ERROR)

    # === sending (called through H2Stream) ===

    async def _send_headers(self, stream: H2Stream, headers: Sequence[Header], *, end_stream: bool) -> None:
        await self._wait_writable()
        stream._check_sendable()
        try:
            self._h2.send_headers(stream.stream_id, headers, end_stream=end_stream)
        except h2.exceptions.ProtocolError as exc:
            self._reset(stream, H2ErrorCode.INTERNAL_ERROR)
            message = f"cannot send headers on stream {stream.stream_id}: {exc}"
            raise H2StreamResetError(message, code=H2ErrorCode.INTERNAL_ERROR, remote=False) from None
        if end_stream:
            stream._local_ended = True
            self._maybe_forget(stream)
        self._flush()

    async def _send_data(self, stream: H2Stream, data: bytes, *, end_stream: bool) -> None:
        h2conn = self._h2
        sent = 0
        total = len(data)
        if not total and not end_stream:
            return
        while True:
            await self._wait_writable()
            stream._check_sendable()
            chunk = total - sent
            if chunk:
                window = h2conn.local_flow_control_window(stream.stream_id)
                if window <= 0:
                    await self._window.park()
                    continue
                chunk = min(chunk, window, h2conn.max_outbound_frame_size)
            last = sent + chunk == total
            try:
                h2conn.send_data(
                    stream.stream_id,
                    data[sent : sent + chunk] if chunk != total else data,
                    end_stream=end_stream and last,
                )
            except h2.exceptions.ProtocolError as exc:
                raise H2StreamResetError(
                    f"cannot send data on stream {stream.stream_id}: {exc}", code=5, remote=False
                ) from None
            sent += chunk
            self._flush()
            if last:
                break
        if end_stream:
            stream._local_ended = True
            self._maybe_forget(stream)

    def _reset(self, stream: H2Stream, code: H2ErrorCode) -> None:
        if stream._error is not None or self._closing:
            # Already failed or reset; what it kept readable (a complete stream the peer reset with NO_ERROR) is
            # not going to be read now: its window goes back to the connection.
            self._release(stream)
            return
        stream._error = H2StreamResetError(
            f"stream {stream.stream_id} reset by us ({code.name})", code=code, remote=False
        )
        stream._wake()
        self._streams.pop(stream.stream_id, None)
        with contextlib.suppress(h2.exceptions.ProtocolError):  # already closed in h2: nothing to send
            self._h2.reset_stream(stream.stream_id, code)
        self._release(stream)
        self._slots.unpark_all()
        self._window.unpark_all()  # a sender waiting for this stream's window sees the reset
        kind = self._control.queued(1)
        if kind is not None:
            self._flooded(kind)
        self._flush()

    def _consumed(self, stream_id: int, flow_controlled: int) -> None:
        if flow_controlled and not self._closing:
            try:
                self._h2.acknowledge_received_data(flow_controlled, stream_id)
            except h2.exceptions.ProtocolError:
                return
            self._flush()

    def _release(self, stream: H2Stream) -> None:
        """Give the window of a dead stream's unread (or held) data back to the connection."""
        while stream._inbox:
            _, flow_controlled = stream._inbox.popleft()
            self._consumed(stream.stream_id, flow_controlled)
        if stream._held:
            self._consumed(stream.stream_id, stream._held)
            stream._held = 0
        stream._buffered = 0

    def _maybe_forget(self, stream: H2Stream) -> None:
        if stream._local_ended and stream._remote_ended:
            self._streams.pop(stream.stream_id, None)
            self._slots.unpark_all()
            self._maybe_finish()

    # === writer and output ===

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data:
            self._outbound += data
            self._writer_wakeup.set()

    async def _wait_writable(self) -> None:
        while len(self._outbound) >= _HIGH_WATER:
            if self._closing:
                raise H2ConnectionClosedError("the HTTP/2 connection is closing")
            await self._drained.park()
        if self._closing:
            raise H2ConnectionClosedError("the HTTP/2 connection is closing")

    async def _writer(self) -> None:
        try:
            while True:
                if not self._outbound:
                    if self._closing:
                        return
                    await self._writer_wakeup.wait()
                    self._writer_wakeup = trio.Event()
                    continue
                chunk, self._outbound = self._outbound, bytearray()
                try:
                    await self._transport.send_all(chunk)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self.close_reason = self.close_reason or "peer_closed"
                    self._outbound.clear()
                    self._closing = True
                    self._reader_scope.cancel()
                    return
                if not self._outbound:
                    self._control.flushed()
                self._drained.unpark_all()
        finally:
            self._writer_done.set()

    async def _keepalive(self, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            self._ping_acked = trio.Event()
            self._h2.ping(b"triomesh")
            self._flush()
            with trio.move_on_after(self._settings.ping_timeout):
                await self._ping_acked.wait()
            if not self._ping_acked.is_set():
                self._fail(
                    H2KeepaliveTimeoutError(f"no PING answer in {self._settings.ping_timeout:g} s"),
                    H2ErrorCode.NO_ERROR,
                )
                return

    # === closing ===

    def _goaways_received(self) -> None:
        for goaway in self._scanner.goaways:
            self._goaway(goaway)
        self._scanner.goaways.clear()

    def _goaway(self, goaway: GoAway) -> None:
        last = goaway.last_stream_id
        if last < 0:
            self._protocol_error("the peer sent a malformed GOAWAY")
            return
        self._goaway_received = last if self._goaway_received is None else min(last, self._goaway_received)
        self.close_reason = "goaway_received"
        if goaway.error_code != H2ErrorCode.NO_ERROR:
            LOG.info("h2 peer sent GOAWAY %s, last stream %d", error_code_name(goaway.error_code), last)
        for stream_id, stream in list(self._streams.items()):
            if stream_id > last and stream_id % 2 == (1 if self._client_side else 0):
                del self._streams[stream_id]
                stream._error = H2StreamRefusedError(
                    f"stream {stream_id} is above the peer's GOAWAY last id {last}: not processed",
                    code=H2ErrorCode.REFUSED_STREAM,
                    remote=True,
                )
                stream._wake()
                self._release(stream)
        self._slots.unpark_all()
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if not self._streams and not self.accepting and not self._closing:
            self.close_reason = self.close_reason or "drained"
            if self._goaway_sent is not None:
                self.close_reason = "drained"
            self._closing = True
            self._reader_scope.cancel()

    def _flooded(self, kind: FloodKind) -> bool:
        self.flood = kind
        self.counters.flood_closed[kind] += 1
        if kind is FloodKind.OUTBOUND_CONTROL:
            self._outbound.clear()  # the peer is not reading: do not keep its ACKs
        code = H2ErrorCode.PROTOCOL_ERROR if kind is FloodKind.EMPTY_FRAMES else H2ErrorCode.ENHANCE_YOUR_CALM
        self._fail(H2FloodError(f"HTTP/2 flood defence tripped: {kind}", kind=kind), code)
        return False

    def _protocol_error(self, message: str) -> None:
        self.counters.protocol_errors += 1
        # h2 has already queued its GOAWAY when it raised; _fail adds one only if it has not
        self._fail(H2ProtocolError(message), H2ErrorCode.PROTOCOL_ERROR)

    def _fail(self, error: H2Error, code: H2ErrorCode) -> None:
        if self._closing:
            return
        self._fatal = error
        self.close_reason = error.reason
        if self._h2.state_machine.state is not h2.connection.ConnectionState.CLOSED:
            self._h2.close_connection(error_code=code, last_stream_id=self._h2.highest_inbound_stream_id)
        self._flush()
        self._closing = True
        self._reader_scope.cancel()

    async def _shut(self, nursery: trio.Nursery) -> None:
        """After the reader stops: fail what is still open, let the writer send the last frames, stop the tasks."""
        self._closing = True
        gone = H2ConnectionClosedError(f"the HTTP/2 connection closed ({self.close_reason})")
        for stream in self._streams.values():
            if stream._error is None:
                stream._error = gone
            stream._wake()
        self._streams.clear()
        self._window.unpark_all()
        self._slots.unpark_all()
        self._drained.unpark_all()
        self._writer_wakeup.set()
        if self.flood is not FloodKind.OUTBOUND_CONTROL:  # that peer does not read: nothing more will get out
            with trio.move_on_after(_CLOSE_FLUSH_TIMEOUT):
                await self._writer_done.wait()
        nursery.cancel_scope.cancel(reason=f"h2 connection closed: {self.close_reason}")
