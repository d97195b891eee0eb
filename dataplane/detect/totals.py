"""Detection results and times, counted per connection and read at scrape time.

Plain integers bumped once per detected connection, like the connection table's totals, so the handler never
touches the metrics library; ``telemetry.metrics`` turns them into Prometheus families.
"""

from __future__ import annotations

import bisect
from typing import Final

from dataplane.admin.schema import Direction

# Seconds. Most connections decide on the first segment (well under a millisecond); the tail shows clients
# that split their first line, and the last buckets the detect timeouts (10 s by default).
BUCKETS: Final = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0)


class Histogram:
    """Non-cumulative bucket counts (the last one is +Inf) and the sum of the observations."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.total += value


class DetectTotals:
    """Every detection this worker made: results per (direction, result) and times per direction."""

    __slots__ = ("results", "seconds")

    def __init__(self) -> None:
        self.results: dict[tuple[Direction, str], int] = {}
        self.seconds: dict[Direction, Histogram] = {}

    def record(self, direction: Direction, result: str, seconds: float) -> None:
        key = (direction, result)
        self.results[key] = self.results.get(key, 0) + 1
        histogram = self.seconds.get(direction)
        if histogram is None:
            histogram = self.seconds[direction] = Histogram()
        histogram.observe(seconds)
