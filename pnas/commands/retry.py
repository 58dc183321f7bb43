"""`pnas retry`: put failed or lost children back in the queue, their identity kept."""

from __future__ import annotations

from typing import List

import typer

from shared.errors import UserError
from shared.jobs import JobState, RunState
from shared.settings import get_settings


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
        ids = store.retry(r.id, level=level, job_ids=job or None, states=states, dry_run=dry_run)
        if not ids:
            print(f"run {r.name!r}: no {' or '.join(states)} children match; nothing to retry")
            return
        shown = ", ".join(str(i) for i in ids[:50]) + (" ..." if len(ids) > 50 else "")
        if dry_run:
            print(f"run {r.name!r}: would requeue {len(ids)} child(ren): {shown}")
            return
        print(f"run {r.name!r}: requeued {len(ids)} child(ren): {shown}")
        if settings.broker_url:
            # Send them now: a running controller waits only on its current level's messages.
            from controller.celery_executor import CeleryExecutor

            ex = CeleryExecutor(settings)
            ex.submit(ids)
            ex.stop()
            if ex.unsent:
                print("  the broker did not answer; `pnas search` will send them when it resumes")
        if r.state == RunState.running.value:
            print("  the run's controller is running (state running): it picks them up")
        else:
            if r.state == RunState.finished.value:
                store.set_run_state(r.id, RunState.stopped, message="children retried; run `pnas search` to resume")
            print(f"  the run is {r.state}: run `pnas search` again with the same arguments (--name {r.name}) to resume it")
