import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.balance.pair import draw_pair, inclusion


def test_inclusion_is_twice_the_weight_share() -> None:
    assert inclusion([1, 2, 3]) == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert inclusion([1, 1]) == [1.0, 1.0]


def test_a_weight_above_half_is_in_every_pair() -> None:
    assert inclusion([1, 1, 8]) == pytest.approx([0.5, 0.5, 1.0])
    assert inclusion([1, 9, 9, 1]) == pytest.approx([0.1, 0.9, 0.9, 0.1])
    assert inclusion([1, 10, 100]) == pytest.approx([1 / 11, 10 / 11, 1.0])


@given(st.lists(st.integers(1, 100), min_size=2, max_size=20))
def test_inclusions_sum_to_two_and_none_exceeds_one(weights: list[int]) -> None:
    pi = inclusion(weights)
    assert sum(pi) == pytest.approx(2.0)
    assert all(0.0 <= p <= 1.0 + 1e-12 for p in pi)
    # Heavier never less likely to be in the pair.
    for wa, pa in zip(weights, pi, strict=True):
        for wb, pb in zip(weights, pi, strict=True):
            if wa > wb:
                assert pa >= pb - 1e-12


@given(st.lists(st.integers(1, 100), min_size=2, max_size=20), st.integers(0, 2**32))
def test_pairs_are_two_distinct_indices(weights: list[int], seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(20):
        i, j = draw_pair(weights, rng)
        assert i != j
        assert 0 <= i < len(weights)
        assert 0 <= j < len(weights)


@pytest.mark.parametrize("weights", [[1, 2, 3], [5, 1, 1, 1, 2], [1, 1, 1, 1]])
def test_each_index_is_in_the_pair_as_often_as_its_inclusion(weights: list[int]) -> None:
    rng = random.Random(7)
    counts: Counter[int] = Counter()
    pairs: Counter[frozenset[int]] = Counter()
    for _ in range(30_000):
        i, j = draw_pair(weights, rng)
        counts.update((i, j))
        pairs[frozenset((i, j))] += 1
    for index, pi in enumerate(inclusion(weights)):
        assert counts[index] / 30_000 == pytest.approx(pi, abs=0.015)
    # Any two endpoints can meet (the order is shuffled), unless one of them is in every pair anyway.
    if len(weights) == 4:
        assert len(pairs) == 6


def test_fewer_than_two_is_an_error() -> None:
    with pytest.raises(ValueError, match="two"):
        draw_pair([1], random.Random(0))
