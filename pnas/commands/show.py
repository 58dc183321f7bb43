"""`pnas show ID [--json] [--log-lines N] [--equivalent]`: one child: its cell, network id,
per-epoch history, attempts, errors and the tail of its log; with ``--equivalent``, every
cell of the run's search space that is the same network (blocks in another order)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from pnas.render import cell_of, console, dumps, duration, iso, job_dict, num, open_store
from shared.errors import UserError
from shared.logtails import sections

if TYPE_CHECKING:
    from shared.store import Store

def equivalent(cell: list, run_config: dict) -> list[dict]:
    """The cells of the run's space that are the same network as ``cell``, arch-id order."""
    from shared.config import SearchConfig
    from shared.errors import UserError
    from shared.space.network import equivalent_cells

    space = SearchConfig.from_json(run_config).space()
    out = []
    for c in equivalent_cells(cell_of(cell)):
        try:
            c = space.validate(c)
        except UserError:  # a block order the space's input limits rule out
            continue
        out.append({"arch_id": c.arch_id, "cell": c.readable(), "cell_json": c.to_list()})
    return out


def where(store: Store, worker: str | None, device: str | None, state: str) -> str:
    """Which worker, on which device, trains or trained a child, as far as the store knows
    (a child's device is recorded when it succeeds; before, the worker's own is shown)."""
    if not worker:
        return "not taken by a worker yet" if state == "queued" else "no worker recorded"
    device = device or next((w["device"] for w in store.workers() if w["name"] == worker), None)
    return f"{worker} on {device}" if device else f"{worker} (device not reported)"


def collect(store: Store, job_id: int, *, with_equivalent: bool = False) -> dict:
    j = store.job(job_id)
    if j is None:
        raise UserError(f"no child job with id {job_id}; `pnas top` and `pnas status` show job ids")
    run = store.require_run(j.run_id)
    seconds = None
    if j.started_at and j.finished_at:
        seconds = (j.finished_at - j.started_at).total_seconds()
    level = next((lv for lv in store.levels(run.id) if lv.b == j.level), None)
    return {
        **job_dict(j),
        "run": run.name,
        "run_id": run.id,
        "blocks": cell_of(j.cell).readable().split(" | "),  # the cell's own form, one block each
        "predicted_rank": j.rank,  # among the level's candidates, by the predictor fitted on level - 1
        "candidates": level.candidates if level else None,
        "predictor_level": j.level - 1 if j.rank is not None else None,
        "attempts": j.attempts,
        "max_attempts": j.max_attempts,
        "worker": j.worker,
        "device": j.device,
        "where": where(store, j.worker, j.device, str(j.state)),
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
        # each attempt's tail under its own label, oldest first (`shared.logtails`)
        "logs": [{"attempt": a.attempt, "label": a.label, "text": a.text} for a in sections(j.log_tail)],
        "epochs": store.epochs(j.id),
        "duplicate_of": j.duplicate_of,
        **({"equivalent": equivalent(j.cell, run.config)} if with_equivalent else {}),
    }


def register(app: typer.Typer) -> None:
    @app.command()
    def show(
        job_id: int = typer.Argument(..., metavar="ID", help="Child job id (from `pnas top` or `pnas status`)."),
        log_lines: int = typer.Option(20, "--log-lines", help="Lines of the log tail to print (0 = none)."),
        as_json: bool = typer.Option(False, "--json", help="One JSON object."),
        with_equivalent: bool = typer.Option(
            False, "--equivalent", help="Also list the cells of the space that are the same network (blocks reordered)."
        ),
    ) -> None:
        """One child: cell, network id, per-epoch history, attempts, errors and log tail."""
        d = collect(open_store(), job_id, with_equivalent=with_equivalent)
        if as_json:
            print(dumps(d))
            return
        from rich.table import Table

        c = console()
        pred = ""
        if d["predicted"] is not None:
            of = f" of {d['candidates']:,} candidates" if d["candidates"] else ""
            pred = (f", predicted {num(d['predicted'])} (rank {d['predicted_rank']}{of}, "
                    f"by the predictor fitted at level {d['predictor_level']})")  # fmt: skip
        test = f", test accuracy {num(d['test_accuracy'])} (reported only)" if d["test_accuracy"] is not None else ""
        what = "final training" if d["kind"] == "final" else f"{d['kind']} child, level {d['level']}"
        c.print(f"[bold]job {d['id']}[/bold] of run {d['run']!r}: {what}, "
                f"[bold]{d['state']}[/bold], accuracy {num(d['accuracy'])}{test}{pred}", highlight=False)  # fmt: skip
        c.print(f"  cell {d['arch_id']}: {d['cell']}", highlight=False)
        dup = f"; trained before as job {d['duplicate_of']} (a run made before network ids)" if d["duplicate_of"] else ""
        c.print(f"  network {d['network_id'] or '-'}{dup}", highlight=False)
        for b in d["blocks"]:
            c.print(f"    {b}", highlight=False)
        c.print(f"  attempts {d['attempts']} of {d['max_attempts']}; {'worker ' if d['worker'] else ''}{d['where']}; "
                f"params {d['params'] or '-'}; {duration(d['elapsed_seconds'])} (training {num(d['wall_seconds'], '.1f')}s)",
                highlight=False)  # fmt: skip
        c.print(f"  queued {d['queued_at'] or '-'}, started {d['started_at'] or '-'}, finished {d['finished_at'] or '-'}",
                highlight=False)  # fmt: skip
        if d["resumed_epoch"]:
            c.print(f"  attempt {d['attempts']} resumed from the checkpoint of epoch {d['resumed_epoch']}", highlight=False)
        if d["train"]:
            c.print(f"  training overrides: {dumps(d['train'])}", highlight=False)
        if with_equivalent:
            eq = d["equivalent"]
            c.print(f"  stands for {len(eq)} equivalent cell{'s' if len(eq) != 1 else ''} of the space "
                    "(the same network, blocks in another order):", highlight=False)  # fmt: skip
            for e in eq:
                c.print(f"    {e['arch_id']}: {e['cell']}", highlight=False)
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
        for a in d["logs"] if log_lines > 0 else []:
            c.print(f"  log tail of {a['label']} (last {log_lines} lines):", highlight=False, markup=False)
            for line in a["text"].splitlines()[-log_lines:]:
                c.print(f"    {line}", highlight=False, markup=False)
