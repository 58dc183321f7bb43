"""`pnas top [RUN] [-k 5] [--level B] [--json | --csv]`: the leaderboard of a run.

The original implementation's ``rank_architectures.py`` done properly: best first, each cell
in its readable one-line form, the same order as the ``leaderboard`` SQL view (accuracy
descending, then job id), except that a multi-fidelity run's children trained to the full
epochs come first (each row shows its epochs). Exit status 1 when the run has no succeeded child yet.
"""

from __future__ import annotations

import csv
import sys
from typing import TYPE_CHECKING

import typer

from pnas.render import console, dumps, job_dict, latency_text, num, open_store
from shared.errors import UserError

if TYPE_CHECKING:
    from shared.jobs import RunView
    from shared.store import Store

CSV_COLUMNS = ("rank", "id", "level", "accuracy", "params", "arch_id", "network_id", "predicted", "cell", "cell_json", "test_accuracy", "flops", "latency_ms")


def leaderboard(store: Store, run: RunView, *, k: int, level: int | None, final: bool = False) -> list[dict]:
    rows = store.top(run.id, k=k, level=level, kind="final" if final else "search")
    return [job_dict(j, rank=i) for i, j in enumerate(rows, 1)]


def register(app: typer.Typer) -> None:
    @app.command()
    def top(
        run: str = typer.Argument(None, help="Run name or id (default: the most recently updated run)."),
        k: int = typer.Option(5, "-k", "--top", help="How many children."),
        level: int = typer.Option(None, "--level", "-b", help="Only children of level B (blocks)."),
        final: bool = typer.Option(False, "--final", help="Rank the final trainings (`pnas final`) instead."),
        as_json: bool = typer.Option(False, "--json", help="A JSON list of objects."),
        as_csv: bool = typer.Option(False, "--csv", help="CSV with a header row."),
    ) -> None:
        """The best children of a run, each cell in its readable one-line form."""
        if as_json and as_csv:
            raise UserError("give --json or --csv, not both")
        if k < 1:
            raise UserError(f"-k must be at least 1, got {k}")
        store = open_store()
        r = store.require_run(run)
        rows = leaderboard(store, r, k=k, level=level, final=final)
        if as_json:
            print(dumps(rows))
        elif as_csv:
            w = csv.writer(sys.stdout, lineterminator="\n")
            w.writerow(CSV_COLUMNS)
            for row in rows:
                w.writerow([dumps(row[c]) if c == "cell_json" else ("" if row[c] is None else row[c]) for c in CSV_COLUMNS])
        elif rows:
            from rich.table import Table

            what = "final trainings" if final else "children"
            where = f", level {level}" if level is not None else ""
            t = Table(title=f"top {len(rows)} {what} of run {r.name!r}{where}")
            test = any(row["test_accuracy"] is not None for row in rows)  # a column only when measured
            latency = any(row["latency_ms"] is not None for row in rows)  # a run with a latency table
            cols = ("rank", "job", "level", "epochs", "accuracy", *(("test accuracy",) if test else ()), "predicted", "params", "flops",
                    *(("latency ms",) if latency else ()), "network", "cell")  # fmt: skip
            for col in cols:
                t.add_column(col, justify="left" if col == "cell" else "right", no_wrap=col == "cell")
            for row in rows:
                t.add_row(
                    str(row["rank"]), str(row["id"]), str(row["level"]), str(row["epochs"] or "-"), num(row["accuracy"]),
                    *((num(row["test_accuracy"]),) if test else ()),
                    num(row["predicted"]), f"{row['params']:,}" if row["params"] else "-",
                    f"{row['flops']:,}" if row["flops"] else "-", *((latency_text(row["latency_ms"]),) if latency else ()),
                    row["network_id"] or "-",
                    row["cell"],
                )  # fmt: skip
            console().print(t)
        if not rows:
            where = f" at level {level}" if level is not None else ""
            print(f"run {r.name!r} has no succeeded {'final training' if final else 'child'}{where} yet", file=sys.stderr)
            sys.exit(1)
