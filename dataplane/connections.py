"""The connection table: every open connection and the recently closed ones.

Each connection has a ``ConnRecord`` with a way to cancel it, so the table can close a connection from outside
(idle sweep, drain deadline, later policy revocation) with a reason. The relay updates plain integer counters on
the record; nothing on the per-chunk path touches a dict, a lock or a metrics library. Aggregates for /metrics
are computed at scrape time from the closed-connection totals plus the live records.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final, Literal

import trio

from dataplane.admin.schema import ConnectionInfo, ConnState, Direction
from dataplane.detect.totals import DetectTotals
from dataplane.net.addr import SockAddr
from dataplane.telemetry.retention import Retention

if TYPE_CHECKING:
    from dataplane.detect.detect import Detection

RECENT_LIMIT: Final = 512  # closed connections kept for /connections: enough to explain a burst, bounded memory

CloseSide = Literal["src", "dst"]


class Flow:
    """Bytes moved in one direction: ``received`` from the source side, ``sent`` to the destination side."""

    __slots__ = ("received", "sent")

    def __init__(self) -> None:
        self.received = 0
        self.sent = 0


class ConnRecord:
    """One proxied connection. Mutable on purpose: the relay bumps counters on it per chunk."""

    __slots__ = (
        "_swept_bytes",
        "client",
        "close_reason",
        "closed_at",
        "detect_result",
        "detect_seconds",
        "direction",
        "down",
        "dst_errno",
        "dst_opened",
        "id",
        "idle_timeout",
        "last_activity",
        "local",
        "on_cancel",
        "on_close",
        "opened_at",
        "original_dst",
        "peer_id",
        "policy_version",
        "protocol",
        "requests",
        "service",
        "sni",
        "src_errno",
        "state",
        "tls",
        "up",
        "upstream",
    )

    def __init__(self, conn_id: int, direction: Direction, client: SockAddr, local: SockAddr, now: float) -> None:
        self.id = conn_id
        self.direction: Direction = direction
        self.client = client
        self.local = local
        self.original_dst: SockAddr | None = None
        self.upstream: SockAddr | None = None
        self.protocol = "opaque"
        self.requests = 0  # HTTP requests or h2 streams carried
        self.detect_result: str | None = None  # None: not detected (an opaque or excluded port)
        self.detect_seconds: float | None = None
        self.sni: str | None = None
        self.state: ConnState = "connecting"
        self.opened_at = time.time()
        self.closed_at: float | None = None
        self.up = Flow()  # client -> upstream
        self.down = Flow()  # upstream -> client
        self.close_reason: str | None = None
        self.src_errno = ""
        self.dst_errno = ""
        self.dst_opened = False
        self.tls = "no_identity"
        self.peer_id: str | None = None  # the mesh peer's verified SPIFFE ID: the client inbound, the server outbound
        self.policy_version = ""
        self.idle_timeout = float("inf")
        self.last_activity = now
        self._swept_bytes = 0
        # How to close this connection from outside: its handler's CancelScope while the handler runs, the
        # relay engine's close once the engine owns the sockets; None once closed.
        self.on_cancel: Callable[[str], None] | None = None
        self.service: str | None = None  # "name:port" when the original destination is a service's address
        # Called once when the connection closes (a service's balancer counts it open until then).
        self.on_close: Callable[[], None] | None = None

    @property
    def target(self) -> SockAddr:
        """The ``target_addr`` of metrics: the original destination, or our own address before it is known."""
        return self.original_dst if self.original_dst is not None else self.local

    def meshed_with(self, peer: str) -> None:
        """The connection runs over mesh mTLS with ``peer`` (the verified client inbound, the server outbound)."""
        self.tls = "true"
        self.peer_id = peer

    def metric_key(self) -> MetricKey:
        return (self.direction, self.target, self.tls, self.peer_id or "")

    def detected(self, detection: Detection) -> None:
        self.protocol = detection.protocol.value
        self.detect_result = detection.result
        self.detect_seconds = detection.seconds
        self.sni = detection.sni

    def cancel(self, reason: str) -> None:
        """Close this connection from outside; the first reason given wins."""
        if self.close_reason is None:
            self.close_reason = reason
        if self.on_cancel is not None:
            self.on_cancel(reason)

    def info(self, worker: int = 0) -> ConnectionInfo:
        return ConnectionInfo(
            id=self.id,
            direction=self.direction,
            client=str(self.client),
            original_dst=str(self.target),
            upstream=str(self.upstream) if self.upstream is not None else None,
            protocol=self.protocol,
            detect_result=self.detect_result,
            requests=self.requests,
            detect_seconds=self.detect_seconds,
            sni=self.sni,
            state=self.state,
            opened_at=self.opened_at,
            closed_at=self.closed_at,
            bytes_to_upstream=self.up.sent,
            bytes_to_client=self.down.sent,
            close_reason=self.close_reason,
            errno=(self.src_errno or self.dst_errno or None),
            tls=self.tls,
            client_id=self.peer_id if self.direction == "inbound" else None,
            server_id=self.peer_id if self.direction == "outbound" else None,
            service=self.service,
            policy_version=self.policy_version,
            worker=worker,
        )


MetricKey = tuple[Direction, SockAddr, str, str]  # (direction, target_addr, tls, mesh peer id or "")


class PeerTotals:
    """Counters of Linkerd's tcp_* families for one (direction, target, tls, peer)."""

    __slots__ = ("closed", "opened", "read", "written")

    def __init__(self) -> None:
        self.opened = 0
        self.closed: dict[str, int] = {}  # errno name ("" when clean) -> count
        self.read = 0
        self.written = 0


class ConnectionTable:
    def __init__(self, *, recent_limit: int = RECENT_LIMIT, worker: int = 0, workers: int = 1) -> None:
        self.live: dict[int, ConnRecord] = {}
        self.recent: deque[ConnRecord] = deque(maxlen=recent_limit)
        self.worker = worker
        self.opened_total = 0
        self.closed_total = 0
        # Totals of closed connections, per metric key and peer; live ones are added at scrape time.
        self.closed_totals: dict[tuple[MetricKey, CloseSide], PeerTotals] = {}
        self.close_reasons: dict[tuple[Direction, str], int] = {}
        self.detections = DetectTotals()
        self._retention: Retention[MetricKey] = Retention()
        # Ids stay unique across worker processes without talking: worker w of n numbers w+1, w+1+n, ...
        self._next_id = worker + 1
        self._id_step = workers
        self._emptied: trio.Event | None = None

    def detected(self, rec: ConnRecord, detection: Detection) -> None:
        """What detection found goes on the connection's record and into the detection totals."""
        rec.detected(detection)
        self.detections.record(rec.direction, detection.result, detection.seconds)

    def open(self, direction: Direction, client: SockAddr, local: SockAddr) -> ConnRecord:
        rec = ConnRecord(self._next_id, direction, client, local, trio.current_time())
        self._next_id += self._id_step
        self.live[rec.id] = rec
        self.opened_total += 1
        return rec

    def close(self, rec: ConnRecord) -> None:
        if self.live.pop(rec.id, None) is None:
            return
        rec.state = "closed"
        rec.closed_at = time.time()
        rec.on_cancel = None
        if rec.on_close is not None:
            on_close, rec.on_close = rec.on_close, None
            on_close()
        if rec.close_reason is None:
            rec.close_reason = "completed"
        self.closed_total += 1
        self.recent.appendleft(rec)
        key = rec.metric_key()
        _add_closed(self._totals(key, "src"), rec.up.received, rec.down.sent, rec.src_errno)
        if rec.dst_opened:
            _add_closed(self._totals(key, "dst"), rec.down.received, rec.up.sent, rec.dst_errno)
        reason_key = (rec.direction, rec.close_reason)
        self.close_reasons[reason_key] = self.close_reasons.get(reason_key, 0) + 1
        if not self.live and self._emptied is not None:
            self._emptied.set()

    async def wait_empty(self) -> None:
        """Return once no connection is open (the drain waits on this)."""
        while self.live:
            self._emptied = trio.Event()
            await self._emptied.wait()

    def _totals(self, key: MetricKey, peer: CloseSide) -> PeerTotals:
        totals = self.closed_totals.get((key, peer))
        if totals is None:
            totals = self.closed_totals[(key, peer)] = PeerTotals()
        return totals

    def sweep_idle(self, now: float) -> int:
        """Close connections idle for longer than their timeout; returns how many.

        Activity is noticed by comparing byte counters between sweeps, so the relay never reads the clock: a
        connection closes between ``idle_timeout`` and ``idle_timeout`` + one sweep interval after its last byte.
        """
        closed = 0
        for rec in list(self.live.values()):
            moved = rec.up.received + rec.down.received
            if moved != rec._swept_bytes:
                rec._swept_bytes = moved
                rec.last_activity = now
            elif now - rec.last_activity >= rec.idle_timeout and rec.close_reason is None:
                rec.cancel("idle_timeout")
                closed += 1
        return closed

    def forget_idle_series(self) -> int:
        """Drop the TCP metric totals of targets with no connection open and none closed for a retain period
        (see ``Retention``); returns how many targets went."""
        live = {rec.metric_key() for rec in self.live.values()}
        closed = {key: totals.opened for (key, peer), totals in self.closed_totals.items() if peer == "src"}
        stale = [key for key in self._retention.stale(closed) if key not in live]
        for key in stale:
            self.closed_totals.pop((key, "src"), None)
            self.closed_totals.pop((key, "dst"), None)
        return len(stale)

    def cancel_all(self, reason: str) -> int:
        records = list(self.live.values())
        for rec in records:
            rec.cancel(reason)
        return len(records)

    def iter_live(self) -> Iterator[ConnRecord]:
        return iter(list(self.live.values()))


def _add_closed(totals: PeerTotals, read: int, written: int, errno_name: str) -> None:
    totals.opened += 1
    totals.read += read
    totals.written += written
    totals.closed[errno_name] = totals.closed.get(errno_name, 0) + 1
