"""`pnas cancel`: stop spending on a run's children: cancel queued ones, stop running ones."""

from __future__ import annotations

from typing import Any, List, Sequence

import typer

from shared.errors import UserError
from shared.jobs import RunState, RunView
from shared.settings import Settings, get_settings


def _ids(ids: list[int]) -> str:
    return ", ".join(str(i) for i in ids[:50]) + (" ..." if len(ids) > 50 else "")


def _why_nothing(store: Any, run: RunView, job_ids: Sequence[int]) -> list[str]:
    """Why nothing was cancelled: each asked-for job that does not exist (UserError), is
    another run's, or is in a state that cannot be cancelled."""
    jobs = {i: store.job(i) for i in job_ids}
    missing = [str(i) for i, j in jobs.items() if j is None]
    if missing:
        raise UserError(f"job {', '.join(missing)} does not exist; `pnas top {run.name}` or the dashboard lists the run's children")
    lines = []
    for i, j in jobs.items():
        if j.run_id != run.id:
            lines.append(f"job {i} is not a child of run {run.name!r} (it belongs to run id {j.run_id}); nothing to cancel")
        else:
            lines.append(f"job {i} is {j.state}: only queued or running children can be cancelled; nothing to cancel")
    return lines or [f"run {run.name!r}: no queued or running children match; nothing to cancel"]


def cancel_children(
    store: Any,
    settings: Settings,
    run: RunView,
    *,
    level: int | None = None,
    job_ids: Sequence[int] | None = None,
    dry_run: bool = False,
) -> tuple[Any, list[str]]:
    """What `pnas cancel` does, for the command and the dashboard alike: `Store.cancel` on the
    matching children. Returns (the store's `Cancelled`, lines to show)."""
    done = store.cancel(run.id, level=level, job_ids=job_ids or None, dry_run=dry_run)
    if not done.cancelled and not done.stopping:
        return done, _why_nothing(store, run, job_ids or [])
    verb = ("would cancel", "would ask") if dry_run else ("cancelled", "asked")
    lines = []
    if done.cancelled:
        lines.append(f"run {run.name!r}: {verb[0]} {len(done.cancelled)} queued child(ren): {_ids(done.cancelled)}")
    if done.stopping:
        lines.append(
            f"run {run.name!r}: {verb[1]} the workers of {len(done.stopping)} running child(ren) to stop them "
            f"(within {settings.heartbeat_seconds:g} s, their heartbeat): {_ids(done.stopping)}"
        )
    if dry_run:
        return done, lines
    if run.state == RunState.running.value:  # it marks the run cancelled when it stops
        lines.append("  the run's controller stops once its level has nothing left to train")
    elif run.state in (RunState.created.value, RunState.stopped.value):
        store.set_run_state(run.id, RunState.cancelled, message="children cancelled by `pnas cancel`")
    lines.append(f"  to resume: run `pnas search` again with the same arguments (--name {run.name}); it requeues them")
    return done, lines


def register(app: typer.Typer) -> None:
    @app.command()
    def cancel(
        run: str = typer.Argument(..., help="Run name or id."),
        level: int = typer.Option(None, "--level", "-b", help="Only children of this level."),
        job: List[int] = typer.Option(None, "--job", help="Only these job ids (repeatable)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be cancelled; change nothing."),
    ) -> None:
        """Cancel queued children and ask running ones to stop (their workers stop them within
        a heartbeat). The same `pnas search` later resumes the run and requeues them."""
        from shared.store import Store

        if level is not None and level < 1:
            raise UserError(f"--level must be 1 or more, got {level}")
        settings = get_settings()
        store = Store.from_settings(settings)
        store.ensure_schema()
        r = store.require_run(run)
        _, lines = cancel_children(store, settings, r, level=level, job_ids=job or None, dry_run=dry_run)
        for line in lines:
            print(line)
