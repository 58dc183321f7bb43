"""`pnas retry`: put failed or lost children back in the queue, their identity kept."""

from __future__ import annotations

from typing import Any, List, Sequence

import typer

from shared.errors import UserError
from shared.jobs import JobState, RunState, RunView
from shared.settings import Settings, get_settings


def requeue(
    store: Any,
    settings: Settings,
    run: RunView,
    *,
    level: int | None = None,
    job_ids: Sequence[int] | None = None,
    states: Sequence[str] = (JobState.failed.value, JobState.lost.value),
    dry_run: bool = False,
) -> tuple[list[int], list[str]]:
    """What `pnas retry` does, for the command and the dashboard alike: requeue the matching
    children (`Store.retry`), send them to the broker when one is configured, and mark a
    finished run stopped so that `pnas search` resumes it. Returns (job ids, lines to show)."""
    ids = store.retry(run.id, level=level, job_ids=job_ids or None, states=list(states), dry_run=dry_run)
    if not ids:
        return ids, [f"run {run.name!r}: no {' or '.join(states)} children match; nothing to retry"]
    shown = ", ".join(str(i) for i in ids[:50]) + (" ..." if len(ids) > 50 else "")
    if dry_run:
        return ids, [f"run {run.name!r}: would requeue {len(ids)} child(ren): {shown}"]
    lines = [f"run {run.name!r}: requeued {len(ids)} child(ren): {shown}"]
    if settings.broker_url:
        # Send them now: a running controller waits only on its current level's messages.
        from controller.celery_executor import CeleryExecutor

        ex = CeleryExecutor(settings)
        ex.submit(ids)
        ex.stop()
        if ex.unsent:
            lines.append("  the broker did not answer; `pnas search` will send them when it resumes")
    if run.state == RunState.running.value:
        lines.append("  the run's controller is running (state running): it picks them up")
    else:
        if run.state == RunState.finished.value:
            store.set_run_state(run.id, RunState.stopped, message="children retried; run `pnas search` to resume")
        lines.append(f"  the run is {run.state}: run `pnas search` again with the same arguments (--name {run.name}) to resume it")
    return ids, lines


def register(app: typer.Typer) -> None:
    @app.command()
    def retry(
        run: str = typer.Argument(None, help="Run name or id (default: the most recently updated run)."),
        level: int = typer.Option(None, "--level", "-b", help="Only children of this level."),
        job: List[int] = typer.Option(None, "--job", help="Only these job ids (repeatable)."),
        state: str = typer.Option(None, help="failed or lost (default: both)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be requeued; change nothing."),
    ) -> None:
        """Requeue failed/lost children (one more attempt each); a running search picks them up."""
        from shared.store import Store

        from pnas.render import require_database

        settings = get_settings()
        require_database(settings.database_url)
        store = Store.from_settings(settings)
        store.ensure_schema()
        r = store.require_run(run)
        if state is not None and state not in (JobState.failed.value, JobState.lost.value):
            raise UserError(f"--state takes failed or lost, not {state!r}")
        states = [state] if state else [JobState.failed.value, JobState.lost.value]
        _, lines = requeue(store, settings, r, level=level, job_ids=job or None, states=states, dry_run=dry_run)
        for line in lines:
            print(line)
