"""`pnas show ID [--json] [--log-lines N]`: one child: its cell, per-epoch history,
attempts, errors and the tail of its log."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from pnas.render import cell_of, console, dumps, duration, iso, job_dict, num, open_store
from shared.errors import UserError

if TYPE_CHECKING:
    from shared.store import Store


def collect(store: Store, job_id: int) -> dict:
    j = store.job(job_id)
    if j is None:
        raise UserError(f"no child job with id {job_id}; `pnas top` and `pnas status` show job ids")
    run = store.require_run(j.run_id)
    seconds = None
    if j.started_at and j.finished_at:
        seconds = (j.finished_at - j.started_at).total_seconds()
    return {
        **job_dict(j),
        "run": run.name,
        "run_id": run.id,
        "blocks": [b.readable() for b in cell_of(j.cell).blocks],
        "predicted_rank": j.rank,
        "attempts": j.attempts,
        "max_attempts": j.max_attempts,
        "worker": j.worker,
        "device": j.device,
        "train": j.train,
        "queued_at": iso(j.queued_at),
        "started_at": iso(j.started_at),
        "finished_at": iso(j.finished_at),
        "lease_until": iso(j.lease_until),
        "resumed_epoch": j.resumed_epoch,
        "elapsed_seconds": seconds,
        "error_class": j.error_class,
        "error_message": j.error_message,
        "log_tail": j.log_tail,
        "epochs": store.epochs(j.id),
    }


def register(app: typer.Typer) -> None:
    @app.command()
    def show(
        job_id: int = typer.Argument(..., metavar="ID", help="Child job id (from `pnas top` or `pnas status`)."),
        log_lines: int = typer.Option(20, "--log-lines", help="Lines of the log tail to print (0 = none)."),
        as_json: bool = typer.Option(False, "--json", help="One JSON object."),
    ) -> None:
        """One child: cell, per-epoch history, attempts, errors and log tail."""
        d = collect(open_store(), job_id)
        if as_json:
            print(dumps(d))
            return
        from rich.table import Table

        c = console()
        pred = f", predicted {num(d['predicted'])} (rank {d['predicted_rank']})" if d["predicted"] is not None else ""
        c.print(f"[bold]job {d['id']}[/bold] of run {d['run']!r}: {d['kind']} child, level {d['level']}, "
                f"[bold]{d['state']}[/bold], accuracy {num(d['accuracy'])}{pred}", highlight=False)  # fmt: skip
        c.print(f"  cell {d['arch_id']}: {d['cell']}", highlight=False)
        for i, b in enumerate(d["blocks"], 1):
            c.print(f"    block {i}: {b}", highlight=False)
        c.print(f"  attempts {d['attempts']} of {d['max_attempts']}; worker {d['worker'] or '-'} on {d['device'] or '-'}; "
                f"params {d['params'] or '-'}; {duration(d['elapsed_seconds'])} (training {num(d['wall_seconds'], '.1f')}s)",
                highlight=False)  # fmt: skip
        c.print(f"  queued {d['queued_at'] or '-'}, started {d['started_at'] or '-'}, finished {d['finished_at'] or '-'}",
                highlight=False)  # fmt: skip
        if d["resumed_epoch"]:
            c.print(f"  attempt {d['attempts']} resumed from the checkpoint of epoch {d['resumed_epoch']}", highlight=False)
        if d["train"]:
            c.print(f"  training overrides: {dumps(d['train'])}", highlight=False)
        if d["epochs"]:
            t = Table(title="per-epoch history")
            for col in ("attempt", "epoch", "loss", "accuracy", "val loss", "val accuracy", "seconds"):
                t.add_column(col, justify="right")
            for e in d["epochs"]:
                t.add_row(str(e["attempt"]), str(e["epoch"]), num(e["loss"]), num(e["accuracy"]), num(e["val_loss"]),
                          num(e["val_accuracy"]), num(e["seconds"], ".1f"))  # fmt: skip
            c.print(t)
        else:
            c.print("  no epochs recorded", highlight=False)
        if d["error_class"] or d["error_message"]:
            c.print(f"  [red]error[/red] ({d['error_class']}): {d['error_message']}", highlight=False)
        if d["log_tail"] and log_lines > 0:
            c.print(f"  log tail (last {log_lines} lines):", highlight=False)
            for line in d["log_tail"].splitlines()[-log_lines:]:
                c.print(f"    {line}", highlight=False, markup=False)
