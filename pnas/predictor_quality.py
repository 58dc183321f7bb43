"""The predictor's Spearman correlation in words: what a value means with this many children.

A level's Spearman compares the predictor's ranking of the K children it chose with their
measured accuracies. With few children a predictor that guesses reaches a high value by luck
often: below the critical value (one-sided, 5 %) a Spearman cannot be told from chance.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

ALPHA = 0.05  # one-sided: does the predictor rank better than a guess?
EXACT_UP_TO = 9  # 9! = 362,880 orderings: enumerated; above, Student's t approximation


@lru_cache(maxsize=256)
def spearman_critical(n: int, alpha: float = ALPHA) -> float | None:
    """The smallest Spearman that ``n`` children give by chance with probability at most
    ``alpha`` when predictions and accuracies are unrelated (None below 3 children).

    Exact for n <= 9 (every ordering of n ranks, as the published tables are made); above,
    the usual t approximation r = t / sqrt(n - 2 + t^2), t at 1 - alpha with n - 2 degrees of
    freedom (within 0.02 of the exact value from n = 10)."""
    if n < 3:
        return None
    if n <= EXACT_UP_TO:
        import numpy as np

        ranks = np.arange(n)
        perms = np.array(list(itertools.permutations(range(n))), dtype=np.int64)
        rho = 1 - 6 * ((perms - ranks) ** 2).sum(axis=1) / (n * (n * n - 1))
        values, counts = np.unique(np.round(rho, 9), return_counts=True)
        tail = np.cumsum(counts[::-1])[::-1] / len(perms)  # P(rho >= value)
        ok = values[tail <= alpha + 1e-12]
        return float(ok.min()) if len(ok) else None
    from scipy.stats import t as student_t

    t = float(student_t.ppf(1 - alpha, n - 2))
    return t / math.sqrt(n - 2 + t * t)


def spearman_words(rho: float | None, n: int) -> str:
    """One clause: the value, the children it is on, and whether it beats chance."""
    crit = spearman_critical(n)
    if rho is None:
        return f"no Spearman ({n} children with a prediction and an accuracy)"
    if crit is None:
        return f"Spearman {rho:.2f} on {n} children: too few children to tell it from chance"
    if rho >= crit:
        return f"Spearman {rho:.2f} on {n} children: better than chance (above {crit:.2f}, the 5 % level for {n})"
    return (
        f"Spearman {rho:.2f} on {n} children: not distinguishable from chance "
        f"(with {n} children a guess reaches {crit:.2f} one time in 20)"
    )
