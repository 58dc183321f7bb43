"""`pnas runs [--json]`: every run in the database with its state, level, children and best.

Exit status 1 (nothing to show yet) when the database holds no run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from pnas.render import console, dumps, iso, num, open_store
from shared.errors import NothingToShow

if TYPE_CHECKING:
    from shared.store import Store


def _level_count(cfg: dict) -> int | None:
    """B, or an evolution run's generations (`controller.evolution`)."""
    if cfg.get("strategy") != "evolution":
        return cfg.get("blocks")
    from controller import evolution
    from shared.config import SearchConfig

    return evolution.level_count(SearchConfig.from_json(cfg))


def collect(store: Store) -> list[dict]:
    out = []
    for row in store.run_summaries():
        run, jobs = row["run"], row["jobs"]
        cfg = run.config or {}
        out.append(
            {
                "id": run.id,
                "name": run.name,
                "state": run.state,
                "strategy": cfg.get("strategy"),
                "dataset": (cfg.get("train") or {}).get("dataset"),
                "level": run.level,
                "blocks": cfg.get("blocks"),
                "level_count": _level_count(cfg),
                "children_done": jobs["succeeded"] + jobs["failed"] + jobs["lost"],
                "children_total": sum(jobs.values()),
                "jobs": jobs,
                "best": row["best"],
                "created_at": iso(run.created_at),
                "updated_at": iso(run.updated_at),
                "finished_at": iso(run.finished_at),
                "message": run.message,
            }
        )
    return out


def register(app: typer.Typer) -> None:
    @app.command()
    def runs(as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
        """The runs in the database: state, level, children done, best accuracy."""
        store = open_store()
        rows = collect(store)
        if as_json:
            print(dumps(rows))
        if not rows:
            raise NothingToShow(f"no runs in {store.safe_url} yet; start one with `pnas search`")
        if as_json:
            return
        from rich.table import Table

        t = Table(title=f"runs in {store.safe_url}")
        for col in ("id", "name", "strategy", "dataset", "state", "level", "done", "failed", "cancelled", "best", "updated"):
            t.add_column(col, justify="right" if col in ("id", "level", "done", "failed", "cancelled", "best") else "left")
        for r in rows:
            t.add_row(
                str(r["id"]), r["name"], r["strategy"] or "-", r["dataset"] or "-", r["state"],
                f"{r['level']}/{r['level_count'] or '?'}", f"{r['children_done']}/{r['children_total']}",
                str(r["jobs"]["failed"] + r["jobs"]["lost"]), str(r["jobs"]["cancelled"]), num(r["best"]),
                (r["updated_at"] or "-")[:19].replace("T", " "),
            )  # fmt: skip
        console().print(t)
