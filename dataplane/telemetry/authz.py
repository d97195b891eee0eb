"""Inbound authorization decisions: Linkerd's ``inbound_{http,tcp}_authz_{allow,deny}_total``.

Counted as plain integers by (protocol, decision, target, tls, client identity) where each decision is acted on;
rendered at scrape time by ``AuthzCollector``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

AuthzKind = Literal["http", "tcp"]
_LABELS = ["target_addr", "tls", "client_id"]
_KINDS: tuple[AuthzKind, ...] = ("http", "tcp")


class AuthzCounters:
    def __init__(self) -> None:
        self.counts: dict[tuple[AuthzKind, bool, str, str, str], int] = {}

    def record(self, kind: AuthzKind, allowed: bool, target: str, tls: str, client_id: str | None) -> None:
        key = (kind, allowed, target, tls, client_id or "")
        self.counts[key] = self.counts.get(key, 0) + 1


class AuthzCollector(Collector):
    def __init__(self, counters: AuthzCounters) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        families = {
            (kind, allowed): CounterMetricFamily(
                f"inbound_{kind}_authz_{'allow' if allowed else 'deny'}",
                f"Inbound {'HTTP requests' if kind == 'http' else 'TCP connections'} "
                f"{'allowed' if allowed else 'denied'} by the policy's authorization rules.",
                labels=_LABELS,
            )
            for kind in _KINDS
            for allowed in (True, False)
        }
        for (kind, allowed, target, tls, client_id), count in sorted(self._counters.counts.items()):
            families[(kind, allowed)].add_metric([target, tls, client_id], count)
        yield from families.values()
