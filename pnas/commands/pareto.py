"""`pnas pareto [RUN] [--cost params|flops|latency] [--json]`: the trained children on the front of
(accuracy, cost): none of them is both less accurate and costlier than another child.

Costs are the stored ones: ``params`` as the worker counted them after training (the
computed count until then), ``flops`` computed from the cell at insert (`shared.space.cost`), ``latency`` predicted at insert from the run's
latency table (`shared.latency`).
Exit status 1 when the run has no succeeded child with that cost yet.
"""

from __future__ import annotations

import sys

import numpy as np
import typer

from pnas.render import console, dumps, job_dict, latency_text, num, open_store
from shared.errors import UserError
from shared.jobs import JobState


def register(app: typer.Typer) -> None:
    @app.command()
    def pareto(
        run: str = typer.Argument(None, help="Run name or id (default: the most recently updated run)."),
        cost: str = typer.Option("params", "--cost", help="params, flops or latency (a run with a latency table)."),
        as_json: bool = typer.Option(False, "--json", help="A JSON list of objects, cheapest first."),
    ) -> None:
        """The trained children on the (accuracy, cost) front of a run, cheapest first."""
        from shared.pareto import fronts

        if cost not in ("params", "flops", "latency"):
            raise UserError(f"--cost must be params, flops or latency, got {cost!r}")
        column = "latency_ms" if cost == "latency" else cost
        store = open_store()
        r = store.require_run(run)
        # a multi-fidelity run's children stopped early have a short training's accuracy: the
        # front is of the children trained to the full epochs, as `pnas top` ranks them first
        full = int(((r.config or {}).get("train") or {}).get("epochs", 0))
        jobs = [j for j in store.jobs(r.id, states=[JobState.succeeded])
                if j.reward is not None and getattr(j, column) is not None
                and (j.epochs_trained is None or j.epochs_trained >= full)]
        if not jobs:
            why = " (a run searched with --latency-table has it)" if cost == "latency" else ""
            print(f"run {r.name!r} has no succeeded child with its {cost} stored yet{why}", file=sys.stderr)
            sys.exit(1)
        acc = np.array([j.reward for j in jobs])
        costs = np.array([getattr(j, column) for j in jobs])
        front = sorted((j for j, f in zip(jobs, fronts(acc, costs)) if f == 0), key=lambda j: getattr(j, column))
        rows = [{**job_dict(j), "flops": j.flops} for j in front]
        if as_json:
            print(dumps(rows))
            return
        from rich.table import Table

        t = Table(title=f"run {r.name!r}: {len(rows)} of {len(jobs)} trained children on the (accuracy, {cost}) front")
        latency = any(row["latency_ms"] is not None for row in rows)
        for col in ("job", "level", "accuracy", "params", "flops", *(("latency ms",) if latency else ()), "cell"):
            t.add_column(col, justify="left" if col == "cell" else "right", no_wrap=col == "cell")
        for row in rows:
            t.add_row(str(row["id"]), str(row["level"]), num(row["accuracy"]),
                      f"{row['params']:,}" if row["params"] else "-", f"{row['flops']:,}" if row["flops"] else "-",
                      *((latency_text(row["latency_ms"]),) if latency else ()), row["cell"])
        console().print(t)
