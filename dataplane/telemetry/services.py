"""Service traffic metrics: Linkerd's retry counters (``outbound_http_route_retry_*_total``) and balancer gauges
(``outbound_http_balancer_endpoints``), plus ejections and load shedding.

Counted as plain integers where the decision is made (``dataplane.services``); rendered at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Final, Literal

import msgspec
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

RetryEvent = Literal["requests", "successes", "limit_exceeded", "overflow"]
RETRY_EVENTS: Final[tuple[RetryEvent, ...]] = ("requests", "successes", "limit_exceeded", "overflow")
_RETRY_HELP: Final = {
    "requests": "Retries sent (each try after the first).",
    "successes": "Requests that succeeded on a retry.",
    "limit_exceeded": "Retries not sent because the route's max_attempts was reached.",
    "overflow": "Retries not sent because the service's retry budget was spent.",
}
RouteKey = tuple[str, str, str]
"""(parent_name, parent_port, route_name)"""
ShedReason = Literal["queue_full", "no_endpoints"]


class BalancerRow(msgspec.Struct, frozen=True):
    """One service port's balancer at scrape time."""

    parent_name: str
    parent_port: str
    ready: int
    ejected: int
    queue_length: int


class ServiceCounters:
    """Retries per route, ejections per endpoint, sheds per service: plain integers."""

    def __init__(self) -> None:
        self.retries: dict[tuple[RouteKey, RetryEvent], int] = {}
        self.ejections: dict[tuple[str, str, str], int] = {}
        self.shed: dict[tuple[str, str, ShedReason], int] = {}

    def retry(self, route: RouteKey, event: RetryEvent) -> None:
        key = (route, event)
        self.retries[key] = self.retries.get(key, 0) + 1

    def ejected(self, parent_name: str, parent_port: str, endpoint: str) -> None:
        key = (parent_name, parent_port, endpoint)
        self.ejections[key] = self.ejections.get(key, 0) + 1

    def shed_one(self, parent_name: str, parent_port: str, reason: ShedReason) -> None:
        key = (parent_name, parent_port, reason)
        self.shed[key] = self.shed.get(key, 0) + 1

    def retry_count(self, route: RouteKey, event: RetryEvent) -> int:
        return self.retries.get((route, event), 0)


class ServiceCollector(Collector):
    def __init__(self, counters: ServiceCounters, balancers: Callable[[], Iterable[BalancerRow]]) -> None:
        self._counters = counters
        self._balancers = balancers

    def collect(self) -> Iterator[Metric]:
        labels = ["parent_name", "parent_port", "route_name"]
        families = {
            event: CounterMetricFamily(f"outbound_http_route_retry_{event}", _RETRY_HELP[event], labels=labels)
            for event in RETRY_EVENTS
        }
        for (route, event), count in sorted(self._counters.retries.items()):
            families[event].add_metric(list(route), count)
        yield from families.values()
        endpoints = GaugeMetricFamily(
            "outbound_http_balancer_endpoints",
            "A service port's endpoints by state: ready (in rotation) or ejected (failing, out for a while).",
            labels=["parent_name", "parent_port", "endpoint_state"],
        )
        queue = GaugeMetricFamily(
            "outbound_http_balancer_queue_length",
            "Requests and connections of a service port in flight or waiting for an endpoint.",
            labels=["parent_name", "parent_port"],
        )
        for row in self._balancers():
            endpoints.add_metric([row.parent_name, row.parent_port, "ready"], row.ready)
            endpoints.add_metric([row.parent_name, row.parent_port, "ejected"], row.ejected)
            queue.add_metric([row.parent_name, row.parent_port], row.queue_length)
        yield endpoints
        yield queue
        ejections = CounterMetricFamily(
            "outbound_balancer_ejections",
            "Endpoints ejected by outlier detection (consecutive failures).",
            labels=["parent_name", "parent_port", "endpoint"],
        )
        for key, count in sorted(self._counters.ejections.items()):
            ejections.add_metric(list(key), count)
        yield ejections
        shed = CounterMetricFamily(
            "outbound_balancer_shed",
            "Requests and connections refused at once with 503 (queue_full: the request queue is at capacity; "
            "no_endpoints: no endpoint available within the fail-fast timeout).",
            labels=["parent_name", "parent_port", "reason"],
        )
        for key, count in sorted(self._counters.shed.items()):
            shed.add_metric(list(key), count)
        yield shed
