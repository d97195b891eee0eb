"""The two endpoints a power-of-two-choices pick compares, drawn so that each is included with probability
proportional to its weight.

Drawing the first by weight and the second by weight among the rest does not do that: it flattens the weights
(with weights 1:2:3 the lightest endpoint is in 5/12 of the pairs, not 1/3), and a pick that then prefers the
heavier of two equally loaded endpoints starves the light one entirely. Here the pair is a randomized
systematic sample with inclusion probabilities pi_i = 2 * w_i / W: when the two are equally costly and either
may win, endpoint i is chosen with probability exactly pi_i / 2 = w_i / W. A weight above half the total is
capped at pi = 1 (that endpoint is in every pair) and the rest share the other inclusion.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence


def inclusion(weights: Sequence[int]) -> list[float]:
    """Each index's probability of being in the pair (they sum to 2; none above 1)."""
    pi = [0.0] * len(weights)
    free = list(range(len(weights)))
    need = 2.0
    while free and need > 0:
        total = sum(weights[i] for i in free)
        capped = [i for i in free if need * weights[i] >= total]
        if not capped:
            for i in free:
                pi[i] = need * weights[i] / total
            break
        for i in capped:
            pi[i] = 1.0
            need -= 1.0
        free = [i for i in free if i not in capped]
    return pi


def draw_pair(weights: Sequence[int], rng: random.Random) -> tuple[int, int]:
    """Two distinct indices of ``weights`` (at least two, all >= 1), in random order."""
    n = len(weights)
    if n < 2:
        raise ValueError("a pair needs two weights")
    if all(w == weights[0] for w in weights):
        # Two distinct uniform indices from two draws (random.sample costs several times more per call).
        i = int(rng.random() * n)
        j = int(rng.random() * (n - 1))
        return i, j + 1 if j >= i else j
    # Shuffled, so that every two endpoints can meet (a fixed order would compare each only with its
    # neighbours half a lap away); then one point u and u + 1 on the line of cumulative inclusions.
    order = list(range(n))
    rng.shuffle(order)
    pi = inclusion(weights)
    cumulative = list(itertools.accumulate(pi[i] for i in order))
    u = rng.random()
    first = min(bisect.bisect_right(cumulative, u), n - 1)
    second = min(bisect.bisect_right(cumulative, u + 1.0), n - 1)
    if second == first:  # only through float rounding at an interval's end
        second = (first + 1) % n
    return order[first], order[second]
