"""Accuracy against cost (parameters or FLOPs) of a run's trained children, with the
non-dominated front of each cost marked, for the run page's chart.

As `pnas pareto`: only children trained to the run's full epochs can be on a front (a
multi-fidelity run's early-stopped children have a short training's accuracy); the front is
`shared.pareto.fronts`' first one over the children that have that cost stored.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shared.pareto import fronts

COSTS = ("params", "flops")


def front_ids(points: list[dict], cost: str) -> list[int]:
    """Ids of the children on the (accuracy, ``cost``) front, cheapest first."""
    eligible = [p for p in points if p["full"] and p[cost] is not None]
    if not eligible:
        return []
    rank = fronts(
        np.array([p["accuracy"] for p in eligible]),
        np.array([p[cost] for p in eligible]),
    )
    on = [p for p, f in zip(eligible, rank) if f == 0]
    return [
        p["id"] for p in sorted(on, key=lambda p: (p[cost], -p["accuracy"], p["id"]))
    ]


def cost_data(store: Any, run_id: int) -> dict:
    """{full_epochs, points: [{id, level, accuracy, params, flops, epochs, full}], front:
    {params: [ids], flops: [ids]}, note: why there is nothing to draw, or None}."""
    full, points = store.cost_points(run_id)
    note = None
    if not points:
        note = (
            "no trained child yet: each one is drawn here once it has finished training"
        )
    return {
        "full_epochs": full,
        "points": points,
        "front": {cost: front_ids(points, cost) for cost in COSTS},
        "note": note,
    }
