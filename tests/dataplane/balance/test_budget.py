import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.balance.budget import RetryBudget


def test_the_floor_allows_min_per_second_times_ttl_without_requests() -> None:
    budget = RetryBudget(0.2, 10, 10.0)
    assert sum(budget.withdraw(0.0) for _ in range(150)) == 100


def test_the_ratio_adds_a_share_of_the_requests() -> None:
    budget = RetryBudget(0.5, 0, 10.0)
    for _ in range(10):
        budget.deposit(0.0)
    assert sum(budget.withdraw(0.0) for _ in range(10)) == 5


def test_counts_expire_after_ttl() -> None:
    budget = RetryBudget(0.0, 1, 10.0)
    assert sum(budget.withdraw(0.0) for _ in range(20)) == 10
    assert not budget.withdraw(9.9)
    assert budget.withdraw(10.0)  # the bucket of t=0 has left the window


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="ttl"):
        RetryBudget(0.2, 10, 0.0)


def test_total_outage_at_500_rps_for_30_s_stays_within_the_budget() -> None:
    # Every attempt fails and max_attempts is 3: each request asks for two retries.
    budget = RetryBudget(0.2, 10, 10.0)
    requests = retries = 0
    for tick in range(500 * 30):
        now = tick / 500
        budget.deposit(now)
        requests += 1
        for _ in range(2):
            if not budget.withdraw(now):
                break
            retries += 1
    reserve = 10 * 10
    assert retries <= 0.2 * requests + 10 * 30 + reserve
    assert retries >= 0.2 * requests  # the budget is used, not starved


@given(st.lists(st.tuples(st.floats(0, 3), st.booleans()), max_size=300))
def test_retries_in_any_ttl_window_stay_within_the_bound(events: list[tuple[float, bool]]) -> None:
    budget = RetryBudget(0.2, 10, 10.0)
    now = 0.0
    requests: list[float] = []
    retries: list[float] = []
    for step, is_retry in events:
        now += step
        if is_retry:
            if budget.withdraw(now):
                retries.append(now)
        else:
            budget.deposit(now)
            requests.append(now)
        # Buckets are a tenth of ttl: the window holds at most ttl and at least 0.9 ttl of history.
        recent_requests = sum(1 for t in requests if t > now - 10.0)
        recent_retries = sum(1 for t in retries if t > now - 9.0)
        assert recent_retries <= 10 * 10 + 0.2 * recent_requests + 1
