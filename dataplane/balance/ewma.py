"""Peak-EWMA latency estimate, as Linkerd's balancer keeps one per endpoint (tower's ``PeakEwma``).

A latency above the estimate replaces it at once (the peak), so an endpoint that turns slow loses traffic on
its first slow answer; lower latencies pull the estimate down only gradually. Between observations the
estimate decays towards zero, so an endpoint that stopped getting traffic because it was slow is tried again
after a while instead of being starved forever.
"""

from __future__ import annotations

import math


class PeakEwma:
    """Linkerd's peak-EWMA latency estimate (linkerd2-proxy linkerd/proxy/balance, tower PeakEwma)."""

    __slots__ = ("_estimate", "_stamp", "decay", "observed")

    def __init__(self, default_rtt: float, decay: float, now: float) -> None:
        if default_rtt < 0 or decay <= 0:
            raise ValueError("default_rtt must be >= 0 and decay > 0")
        self._estimate = default_rtt
        self._stamp = now
        self.decay = decay
        """The time constant (seconds): after ``decay`` seconds an old latency weighs 1/e."""
        self.observed = False
        """Whether any latency was observed yet (until then the estimate is ``default_rtt``)."""

    def _weight(self, now: float, idle_scale: float = 1.0) -> float:
        """How much of the stored estimate still counts at ``now``."""
        return math.exp(-max(0.0, now - self._stamp) * idle_scale / self.decay)

    def observe(self, rtt: float, now: float) -> None:
        if not self.observed:
            # The first answer replaces the guess outright: a default_rtt above the real latency would otherwise
            # linger for ``decay`` seconds and keep a new endpoint from its share.
            self.observed = True
            self._estimate = rtt
        elif rtt > self._estimate:
            self._estimate = rtt
        else:
            w = self._weight(now)
            # min(): a convex combination, kept from rising past the old estimate by float rounding
            self._estimate = min(self._estimate, self._estimate * w + rtt * (1.0 - w))
        self._stamp = max(self._stamp, now)

    def estimate(self, now: float, *, idle_scale: float = 1.0) -> float:
        """The estimate decayed to ``now`` (towards zero since the last observation). ``idle_scale`` makes the
        elapsed time count more or less: the balancer scales it by weight, because a light endpoint waits longer
        between requests and would otherwise always look a little cheaper than a heavy one."""
        return self._estimate * self._weight(now, idle_scale)

    def cost(self, now: float, pending: int) -> float:
        """The estimate scaled by the requests already waiting on the endpoint (one more is about to)."""
        return self.estimate(now) * (pending + 1)
