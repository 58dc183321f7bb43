"""The hypervolume of a trained accuracy/params front, and the reference point it is taken from.

Two objectives: accuracy (higher is better) and a cost (lower is better). The hypervolume of a
set of points against the reference point (accuracy ``ref_accuracy``, cost ``ref_cost``) is
the area of the region they dominate inside it: the union of the rectangles
[cost, ref_cost] x [ref_accuracy, accuracy]. Points at or beyond the reference in either
objective add nothing; dominated points add nothing either, so the whole trained set can be
passed (the front is `shared.pareto.fronts(...) == 0`).
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np


def hypervolume_2d(
    accuracy: Sequence[float], cost: Sequence[float], *, ref_cost: float, ref_accuracy: float = 0.0
) -> float:
    """Area dominated by the points inside the reference box (accuracy x cost units)."""
    pts = sorted((float(c), float(a)) for a, c in zip(accuracy, cost) if c < ref_cost and a > ref_accuracy)
    area, best = 0.0, ref_accuracy
    for i, (c, a) in enumerate(pts):
        best = max(best, a)  # cost ascending: the best accuracy at this cost or less
        nxt = pts[i + 1][0] if i + 1 < len(pts) else ref_cost
        area += (nxt - c) * (best - ref_accuracy)
    return area


def space_max_params(ops: Sequence[str], blocks: int, spec, *, lookback: int = 2) -> tuple[int, bool]:
    """(params, exact) of the search space's largest network of ``blocks`` blocks: exact by
    enumerating every cell up to 2 blocks (147,456 cells at 8 operators, lookback 2), otherwise
    an upper bound (the costliest read pattern's fixed part plus 2B times the costliest operator)."""
    from shared.space.cost import cost_tables, network_costs

    if blocks <= 2:
        per_block = []
        for j in range(blocks):
            ins = range(2 - lookback, 2 + j)  # input codes: 0 = H[c-2], 1 = H[c-1], 2 + i = block i
            per_block.append(list(itertools.product(ins, ins, range(len(ops)), range(len(ops)))))
        rows = [sum(combo, ()) for combo in itertools.product(*per_block)]
        params, _ = network_costs(np.array(rows, dtype=np.int16), tuple(ops), spec)
        return int(params.max()), True
    tab = cost_tables(spec, blocks, tuple(ops))
    return int(tab.fixed[:, 0].max() + 2 * blocks * tab.per_op[..., 0].max()), False
