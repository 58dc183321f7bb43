"""`pnas runs [--json]`: every run in the database with its state, level, children and best.

The children are counted as `pnas status` and the dashboard count them (`shared.progress`):
trained (succeeded) of those the run expects, failed, cancelled. The best is that of the
children trained to the full epochs, as `pnas top` ranks them (a multi-fidelity run stops
some early); until one is, the best completed rung, labelled with its epochs.

Exit status 1 (nothing to show yet) when the database holds no run."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import typer

from pnas.render import console, dumps, iso, open_store
from shared.errors import NothingToShow
from shared.progress import Tally, best_words

if TYPE_CHECKING:
    from shared.store import Store


def _level_count(cfg: dict) -> int | None:
    """B, or an evolution run's generations (`controller.evolution`)."""
    if cfg.get("strategy") != "evolution":
        return cfg.get("blocks")
    from controller import evolution
    from shared.config import SearchConfig

    return evolution.level_count(SearchConfig.from_json(cfg))


@lru_cache(maxsize=64)
def _planned(cfg_json: str) -> tuple[int, int, int, int | None]:
    """(one-block children, K, B, evolution's budget or None) of a run's configuration."""
    import json

    from controller import evolution
    from shared.config import SearchConfig

    cfg = SearchConfig.from_json(json.loads(cfg_json))
    space = cfg.space()
    budget = evolution.budget(space, cfg.beam) if cfg.strategy == "evolution" else None
    return len(space.one_block_cells()), cfg.beam, cfg.blocks, budget


def expected_children(config: dict, level_totals: dict[int, int]) -> int | None:
    """The search children a run trains in all: the children of the levels made so far, and
    for the levels to come the one-block cells (level 1) or K each; an evolution run's budget.
    None when the configuration cannot be read (a run from another version)."""
    import json

    try:
        first, beam, blocks, budget = _planned(json.dumps(config, sort_keys=True))
    except Exception:
        return None
    if budget is not None:
        return budget
    return sum(level_totals.get(b) or (first if b == 1 else beam) for b in range(1, blocks + 1))


def collect(store: Store) -> list[dict]:
    out = []
    for row in store.run_summaries():
        run, jobs = row["run"], row["jobs"]
        cfg = run.config or {}
        tally = Tally.of(jobs, further=row["further"])
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
                "children_done": tally.done,  # trained or failed
                "children_trained": tally.trained,  # succeeded, or training further after a rung
                "children_training_further": tally.further,
                "children_failed": tally.failed,
                "children_cancelled": tally.cancelled,
                "children_expected": expected_children(cfg, row["level_totals"]),
                "children_total": tally.total,  # made so far
                "jobs": jobs,
                "best": row["best"],  # of the children trained to the full epochs (`Store.run_summaries`)
                # False: none reached them yet (a multi-fidelity run); the best so far is from best_epochs
                "best_at_full_epochs": row["best"] is None or row["best_epochs"] == row["full_epochs"],
                "best_epochs": row["best_epochs"],
                "full_epochs": row["full_epochs"],  # a search child's epochs at full fidelity
                "created_at": iso(run.created_at),
                "updated_at": iso(run.updated_at),
                "finished_at": iso(run.finished_at),
                "message": run.message,
            }
        )
    return out


def _best(r: dict) -> str:
    """The best accuracy; labelled with its epochs while no child reached the full epochs."""
    return best_words(r["best"], r["best_epochs"], r["full_epochs"])


def register(app: typer.Typer) -> None:
    @app.command()
    def runs(as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
        """The runs in the database: state, level, children trained, best accuracy."""
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
        numeric = ("id", "level", "trained", "failed", "cancelled", "best")
        for col in ("id", "name", "strategy", "dataset", "state", "level", "trained", "failed", "cancelled", "best", "updated"):
            t.add_column(col, justify="right" if col in numeric else "left")
        for r in rows:
            t.add_row(
                str(r["id"]), r["name"], r["strategy"] or "-", r["dataset"] or "-", r["state"],
                f"{r['level']}/{r['level_count'] or '?'}", f"{r['children_trained']}/{r['children_expected'] or '?'}",
                str(r["children_failed"]), str(r["children_cancelled"]), _best(r),
                (r["updated_at"] or "-")[:19].replace("T", " "),
            )  # fmt: skip
        console().print(t)
