"""`pnas status [RUN] [--json]`: children by state per level, and the workers seen.

One aggregate query for the counts, one per level for its best reward; ``--json`` prints one
object for scripts (its keys only grow).
"""

from __future__ import annotations

import json
from datetime import datetime

import typer

from shared.jobs import ALL_STATES
from shared.settings import get_settings


def collect(store, ref: str | None) -> dict:  # noqa: ANN001
    """The status of a run as one JSON-ready dict (UserError if there is no such run)."""
    run = store.require_run(ref)
    counts = store.state_counts(run.id)
    levels = {lv.b: lv for lv in store.levels(run.id)}
    out_levels = []
    for b in sorted(set(counts) | set(levels)):
        lv = levels.get(b)
        jobs = counts.get(b, {st: 0 for st in ALL_STATES})
        best = store.top(run.id, k=1, level=b)
        out_levels.append(
            {
                "b": b,
                "state": lv.state if lv else "training",
                "candidates": lv.candidates if lv else None,
                "jobs": jobs,
                "best": best[0].reward if best else None,
                "spearman_extrapolation": lv.spearman_extrapolation if lv else None,
                "spearman_insample": lv.spearman_insample if lv else None,
            }
        )
    top = store.top(run.id, k=1)
    workers = [
        {
            "name": w["name"],
            "hostname": w["hostname"],
            "device": w["device"],
            "job_id": w["job_id"],
            "last_seen": _iso(w["last_seen"]),
            "seconds_ago": round(w["seconds_ago"], 1),
        }
        for w in store.workers()
    ]
    totals = {st: sum(lv["jobs"][st] for lv in out_levels) for st in ALL_STATES}
    return {
        "run": run.name,
        "id": run.id,
        "state": run.state,
        "level": run.level,
        "message": run.message,
        "created_at": _iso(run.created_at),
        "updated_at": _iso(run.updated_at),
        "finished_at": _iso(run.finished_at),
        "jobs": totals,
        "levels": out_levels,
        "best": None if not top else {"job": top[0].id, "level": top[0].level, "arch_id": top[0].arch_id, "reward": top[0].reward},
        "workers": workers,
    }


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def _f(x: float | None, fmt: str = ".4f") -> str:
    return "-" if x is None else format(x, fmt)


def render(st: dict) -> str:
    lines = [f"run {st['run']!r} (id {st['id']}): {st['state']}, level {st['level']}"]
    if st["message"]:
        lines.append(f"  {st['message']}")
    head = f"  {'level':>5} {'state':<9}" + "".join(f" {s:>9}" for s in ALL_STATES) + f" {'best':>7} {'spearman':>8}"
    lines.append(head)
    for lv in st["levels"]:
        lines.append(
            f"  {lv['b']:>5} {lv['state']:<9}"
            + "".join(f" {lv['jobs'][s]:>9}" for s in ALL_STATES)
            + f" {_f(lv['best']):>7} {_f(lv['spearman_extrapolation'], '.3f'):>8}"
        )
    if st["best"]:
        b = st["best"]
        lines.append(f"  best: job {b['job']} (level {b['level']}, {b['arch_id']}) accuracy {b['reward']:.4f}")
    lines.append(f"workers seen ({len(st['workers'])}):")
    for w in st["workers"]:
        job = f"training job {w['job_id']}" if w["job_id"] else "idle"
        lines.append(f"  {w['name']:<40} {w['device'] or '?':<28} last heartbeat {w['seconds_ago']:.0f}s ago, {job}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command()
    def status(
        run: str = typer.Argument(None, help="Run name or id (default: the most recently updated run)."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Children by state per level, and the workers with their last heartbeat."""
        from shared.store import Store

        store = Store.from_settings(get_settings())
        store.ensure_schema()
        st = collect(store, run)
        print(json.dumps(st) if as_json else render(st))
