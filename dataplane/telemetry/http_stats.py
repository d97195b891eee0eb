"""Per-request HTTP counts in Linkerd's shape, kept as plain integers. Pure: no prometheus_client, no trio.

The proxy loop records each request and its response (or the error that replaced it) here; the collector in
``http_metrics`` turns the counts into ``request_total``, ``response_total`` and ``response_latency_ms`` at
scrape time, so a request costs a few dict updates, not a lock per metric.

Cardinality is bounded: ``authority`` comes from clients, so only the first ``MAX_AUTHORITIES`` distinct values
get their own series; later ones are counted under ``authority="other"``.
"""

from __future__ import annotations

import bisect
from typing import Final, Literal, NamedTuple

from dataplane.admin.schema import Direction
from dataplane.net.addr import SockAddr
from dataplane.telemetry.retention import Retention

# Linkerd's response_latency_ms buckets, in milliseconds (+Inf is implied).
LATENCY_BUCKETS_MS: Final = (
    1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500,
    1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000,
)  # fmt: skip
MAX_AUTHORITIES: Final = 100
OTHER_AUTHORITY: Final = "other"

Classification = Literal["success", "failure"]


class RequestKey(NamedTuple):
    direction: Direction
    authority: str
    target: SockAddr
    tls: str
    peer_id: str = ""
    """The mesh peer's verified identity: the client's inbound, the server's outbound ("" without mesh mTLS)."""


class ResponseKey(NamedTuple):
    request: RequestKey
    status_code: str
    """The HTTP status, or "" when no response came (see ``error``)."""
    classification: Classification
    grpc_status: str
    """The gRPC status code for gRPC responses, else ""."""
    error: str
    """Why there was no response ("" when there was one)."""


class Histogram:
    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS_MS) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS_MS, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[int]:
        """Counts per upper bound, cumulative, as Prometheus exposes them (the last is +Inf = count)."""
        out, total = [], 0
        for n in self.buckets:
            total += n
            out.append(total)
        return out


def classify(status: int | None, grpc_status: int | None, error: str) -> Classification:
    """Linkerd's rule: no response, a 5xx, or a gRPC status other than OK is a failure."""
    if error or status is None or status >= 500:
        return "failure"
    if grpc_status is not None and grpc_status != 0:
        return "failure"
    return "success"


class HttpStats:
    __slots__ = ("_authorities", "_retention", "latency", "requests", "responses")

    def __init__(self) -> None:
        self.requests: dict[RequestKey, int] = {}
        self.responses: dict[ResponseKey, int] = {}
        self.latency: dict[tuple[RequestKey, str], Histogram] = {}
        self._authorities: set[str] = set()
        self._retention: Retention[RequestKey] = Retention()

    def authority(self, raw: str) -> str:
        """The label value for a request's authority, bounded in cardinality."""
        if raw in self._authorities:
            return raw
        if len(self._authorities) < MAX_AUTHORITIES:
            self._authorities.add(raw)
            return raw
        return OTHER_AUTHORITY

    def request(
        self, direction: Direction, authority: str, target: SockAddr, tls: str, peer_id: str | None = None
    ) -> RequestKey:
        """Count a request as it is forwarded; returns the key its response is recorded under."""
        key = RequestKey(direction, self.authority(authority), target, tls, peer_id or "")
        self.requests[key] = self.requests.get(key, 0) + 1
        return key

    def relabel(self, key: RequestKey, tls: str, peer_id: str) -> RequestKey:
        """A request counted under ``key`` turned out to go over mesh mTLS to ``peer_id`` (a service request, whose
        endpoint is chosen after it was counted): counted under the key saying so instead."""
        moved = key._replace(tls=tls, peer_id=peer_id)
        if moved == key:
            return key
        left = self.requests.get(key, 0) - 1
        if left > 0:
            self.requests[key] = left
        else:
            self.requests.pop(key, None)
        self.requests[moved] = self.requests.get(moved, 0) + 1
        return moved

    def forget_idle(self) -> int:
        """Drop the series of every request key with no request for a retain period (see ``Retention``), and
        free their authorities' places under ``MAX_AUTHORITIES``; returns how many keys went."""
        stale = set(self._retention.stale(self.requests))
        if not stale:
            return 0
        for key in stale:
            del self.requests[key]
        for rkey in [rkey for rkey in self.responses if rkey.request in stale]:
            del self.responses[rkey]
        for hkey in [hkey for hkey in self.latency if hkey[0] in stale]:
            del self.latency[hkey]
        self._authorities = {key.authority for key in self.requests} - {OTHER_AUTHORITY}
        return len(stale)

    def response(
        self,
        key: RequestKey,
        *,
        status: int | None,
        latency_ms: float,
        grpc_status: int | None = None,
        error: str = "",
    ) -> Classification:
        """Count the response to ``key`` (or the error instead of one) and its latency: from the request's
        first byte to the response head, in milliseconds."""
        classification = classify(status, grpc_status, error)
        status_code = "" if status is None else str(status)
        grpc = "" if grpc_status is None else str(grpc_status)
        rkey = ResponseKey(key, status_code, classification, grpc, error)
        self.responses[rkey] = self.responses.get(rkey, 0) + 1
        hkey = (key, status_code)
        histogram = self.latency.get(hkey)
        if histogram is None:
            histogram = self.latency[hkey] = Histogram()
        histogram.observe(latency_ms)
        return classification
