"""Non-dominated fronts of (accuracy, cost) against the definition, and the pick of K."""

from __future__ import annotations

import numpy as np
import pytest

from shared.pareto import fronts, pick


def dominates(a, c, j, i) -> bool:
    return a[j] >= a[i] and c[j] <= c[i] and (a[j] > a[i] or c[j] < c[i])


@pytest.mark.parametrize("n", [1, 2, 7, 60, 250])
def test_fronts_follow_the_definition(n):
    rng = np.random.default_rng(n)
    acc, cost = rng.random(n).round(2), rng.integers(0, 15, n)  # ties in both objectives
    rank = fronts(acc, cost)
    for i in range(n):
        better = [j for j in range(n) if dominates(acc, cost, j, i)]
        assert (rank[i] == 0) == (not better)
        assert all(rank[j] < rank[i] for j in better)  # a point dominating another is on an earlier front
        if rank[i] > 0:  # ... and something on the front just before dominates it (or equals it)
            assert any(rank[j] == rank[i] - 1 and acc[j] >= acc[i] and cost[j] <= cost[i] for j in range(n))


def test_pick_takes_whole_fronts_then_the_most_accurate_of_the_next():
    acc = np.array([0.9, 0.5, 0.8, 0.7, 0.6, 0.95])
    cost = np.array([10, 1, 9, 2, 3, 20])
    # front 0: (0.5, 1), (0.7, 2), (0.8, 9), (0.9, 10), (0.95, 20); front 1: (0.6, 3)
    assert sorted(pick(acc, cost, 5).tolist()) == [0, 1, 2, 3, 5]
    assert pick(acc, cost, 2).tolist() == [5, 0]  # the last partial front: by accuracy
    assert pick(acc, cost, 10).tolist()[-1] == 4
