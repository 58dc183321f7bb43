"""Non-dominated fronts of (accuracy, cost): higher accuracy and lower cost are better.

``fronts`` ranks N points in O(N log F) (F fronts) for two objectives: points sorted by cost
(accuracy descending among equal costs) join the first front whose best accuracy so far
they beat; each front, in cost order, has rising accuracy. A point equal to another in both
objectives goes one front behind it.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np


def fronts(accuracy: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """(N,) int: the front of each point, 0 = not dominated by any other."""
    acc = np.asarray(accuracy, dtype=np.float64)
    order = np.lexsort((-acc, np.asarray(cost)))  # cost ascending, then accuracy descending
    rank = np.empty(len(acc), dtype=np.int64)
    neg_best: list[float] = []  # per front, minus its best accuracy so far (ascending)
    for i in order.tolist():
        f = bisect_right(neg_best, -acc[i])  # the first front whose best is below this point
        if f == len(neg_best):
            neg_best.append(-acc[i])
        else:
            neg_best[f] = -acc[i]
        rank[i] = f
    return rank


def pick(accuracy: np.ndarray, cost: np.ndarray, k: int) -> np.ndarray:
    """Rows of k points from successive fronts; in the last front that does not fit whole,
    the most accurate ones. Returned front by front, each by accuracy descending."""
    rank = fronts(accuracy, cost)
    order = np.lexsort((-np.asarray(accuracy, dtype=np.float64), rank))
    return order[: min(k, len(order))]
