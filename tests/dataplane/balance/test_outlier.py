from hypothesis import given
from hypothesis import strategies as st

from dataplane.balance.outlier import Health, max_ejected


def test_consecutive_failures_eject() -> None:
    health = Health(3, base_ejection=1.0, max_ejection=60.0)
    assert not health.failure(0.0, may_eject=True)
    assert not health.failure(0.0, may_eject=True)
    assert health.failure(0.0, may_eject=True)
    assert health.ejected(0.5)
    assert health.ejected_until == 1.0
    assert not health.ejected(1.0)
    assert health.ejections == 1


def test_a_success_in_between_resets_the_count() -> None:
    health = Health(2, base_ejection=1.0, max_ejection=60.0)
    assert not health.failure(0.0, may_eject=True)
    health.success()
    assert not health.failure(0.0, may_eject=True)
    assert health.failure(0.0, may_eject=True)


def test_back_off_doubles_and_caps_and_a_success_resets_it() -> None:
    health = Health(5, base_ejection=1.0, max_ejection=10.0)
    now = 0.0
    for _ in range(5):
        ejected = health.failure(now, may_eject=True)
    assert ejected
    lengths = []
    for _ in range(6):
        assert health.ejected_until is not None
        lengths.append(health.ejected_until - now)
        now = health.ejected_until
        # On probation after an ejection: the first failure ejects again.
        assert health.failure(now, may_eject=True)
    assert lengths == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert health.ejected_until is not None
    now = health.ejected_until
    health.success()
    assert [health.failure(now, may_eject=True) for _ in range(5)] == [False] * 4 + [True]
    assert health.ejected_until == now + 1.0


def test_failures_while_ejected_do_not_extend_it() -> None:
    health = Health(1, base_ejection=1.0, max_ejection=60.0)
    assert health.failure(0.0, may_eject=True)
    assert not health.failure(0.5, may_eject=True)
    assert health.ejected_until == 1.0
    assert health.ejections == 1


def test_a_failure_past_the_bound_counts_but_does_not_eject() -> None:
    health = Health(2, base_ejection=1.0, max_ejection=60.0)
    assert not health.failure(0.0, may_eject=False)
    assert not health.failure(0.0, may_eject=False)
    assert not health.ejected(0.0)
    assert health.failure(0.0, may_eject=True)


def test_max_ejected_examples() -> None:
    assert max_ejected(10, 50) == 5
    assert max_ejected(3, 50) == 1
    assert max_ejected(2, 10) == 1
    assert max_ejected(1, 50) == 0
    assert max_ejected(1, 100) == 1
    assert max_ejected(5, 0) == 0
    assert max_ejected(0, 50) == 0
    assert max_ejected(4, 99) == 3


@given(st.integers(0, 1000), st.integers(0, 100))
def test_max_ejected_bounds(total: int, percent: int) -> None:
    allowed = max_ejected(total, percent)
    assert 0 <= allowed <= total
    if percent < 100:
        assert allowed < total or total == 0
        assert allowed <= max(total * percent // 100, 1)
    if percent > 0 and total >= 2:
        assert allowed >= 1
