"""A multi-fidelity run's rungs per level, for the run page: how many children completed each
rung (trained to its epochs) and how many are training toward it now.

Full-fidelity runs have one rung (the full epochs) and nothing to draw: `rungs_data` is None.
"""

from __future__ import annotations

from typing import Any

from shared.config import SearchConfig


def run_rungs(config: dict, seen: set[int] | None = None) -> list[int]:
    """The epochs of each rung of the run (`SearchConfig.rungs`); for a config this version no
    longer reads, the epochs children were seen completing."""
    try:
        return SearchConfig.from_json(config).rungs()
    except ValueError:  # pydantic's ValidationError: a config of another version
        return sorted(seen or ())


def rungs_data(store: Any, run: Any) -> dict | None:
    """{rungs: [epochs, ...], levels: [{level, children, rungs: [{epochs, completed, training}]}]}
    for an asha run (None otherwise): ``completed``, children whose training to the rung's
    epochs succeeded; ``training``, children queued or running toward it."""
    config = run.config or {}
    if config.get("fidelity") != "asha":
        return None
    progress = store.rung_progress(run.id)
    seen = {e for p in progress.values() for e in p["completed"]}
    rungs = run_rungs(config, seen)
    levels = []
    for b in sorted(progress):
        p = progress[b]
        levels.append({
            "level": b, "children": p["children"],
            "rungs": [{"epochs": e, "completed": p["completed"].get(e, 0), "training": p["pending"].get(k, 0)}
                      for k, e in enumerate(rungs)],
        })  # fmt: skip
    return {
        "rungs": rungs,
        "full_epochs": rungs[-1] if rungs else None,
        "levels": levels,
    }
