import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.balance.ewma import PeakEwma


def test_starts_at_the_default_rtt() -> None:
    ewma = PeakEwma(0.03, 10.0, now=5.0)
    assert ewma.estimate(5.0) == 0.03
    assert ewma.cost(5.0, pending=0) == 0.03
    assert ewma.cost(5.0, pending=3) == pytest.approx(0.12)


def test_a_peak_replaces_the_estimate_at_once() -> None:
    ewma = PeakEwma(0.03, 10.0, now=0.0)
    ewma.observe(0.5, now=0.001)
    assert ewma.estimate(0.001) == 0.5


def test_lower_latencies_pull_the_estimate_down_gradually() -> None:
    ewma = PeakEwma(0.03, 10.0, now=0.0)
    ewma.observe(1.0, now=0.0)
    ewma.observe(0.0, now=10.0)  # one time constant later: 1/e of the old estimate is left
    assert ewma.estimate(10.0) == pytest.approx(math.exp(-1))
    ewma.observe(0.1, now=10.0)  # no time passed: the old estimate keeps its whole weight
    assert ewma.estimate(10.0) == pytest.approx(math.exp(-1))


def test_an_idle_estimate_decays_towards_zero() -> None:
    ewma = PeakEwma(0.2, 1.0, now=0.0)
    assert ewma.estimate(1.0) == pytest.approx(0.2 / math.e)
    assert ewma.estimate(50.0) < 1e-9
    assert ewma.estimate(-1.0) == 0.2  # a clock read before the last stamp is not the future


def test_idle_scale_speeds_up_or_slows_down_the_idle_decay() -> None:
    ewma = PeakEwma(0.2, 1.0, now=0.0)
    assert ewma.estimate(1.0, idle_scale=2.0) == pytest.approx(ewma.estimate(2.0))
    assert ewma.estimate(2.0, idle_scale=0.5) == pytest.approx(ewma.estimate(1.0))


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="decay"):
        PeakEwma(0.03, 0.0, now=0.0)


@given(st.lists(st.tuples(st.floats(0, 10), st.floats(0, 5)), max_size=30))
def test_the_estimate_stays_between_zero_and_the_highest_latency_seen(samples: list[tuple[float, float]]) -> None:
    ewma = PeakEwma(0.03, 10.0, now=0.0)
    now, peak = 0.0, 0.03
    for rtt, step in samples:
        now += step
        ewma.observe(rtt, now)
        peak = max(peak, rtt)
        assert 0.0 <= ewma.estimate(now) <= peak
