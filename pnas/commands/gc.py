"""`pnas gc RUN`: remove the checkpoints a run no longer needs.

Kept: those of children that may still resume (queued, running, lost; a multi-fidelity child
stopped at a rung of a level still training, which may be promoted) and the weights of
final trainings (``final.ckpt``). Removed: every other child's checkpoints, and those of jobs
the database no longer knows. Only this database's own (``ROOT/db-D/run-R``): another
database's runs, with the same ids, are never touched, nor directories of the layout before
database identities (``ROOT/run-R``), which no database owns (removed by hand).
"""

from __future__ import annotations

import typer

from pnas.render import dumps, open_store


def register(app: typer.Typer) -> None:
    @app.command()
    def gc(
        run: str = typer.Argument(..., help="Run name or id."),
        as_json: bool = typer.Option(False, "--json", help="One JSON object."),
    ) -> None:
        """Remove the checkpoints of RUN's children that no longer need them."""
        from shared.settings import get_settings
        from worker.checkpoints import CheckpointStore, gc_run

        store = open_store()
        r = store.require_run(run)
        cs = CheckpointStore.from_settings(get_settings(), database=store.database_identity())
        states = {j.id: (j.state.value, j.kind) for j in store.jobs(r.id, kind=None)}
        # a multi-fidelity child stopped at a rung of a level still training may be promoted yet
        full = int(r.config.get("train", {}).get("epochs", 0))
        open_levels = {lv.b for lv in store.levels(r.id) if lv.state != "done"}
        for j in store.jobs(r.id, states=["succeeded"], kind="search"):
            if j.level in open_levels and j.epochs_trained is not None and j.epochs_trained < full:
                states[j.id] = ("paused", j.kind)
        removed, freed = gc_run(cs, r.id, states)
        left = cs.size(cs.run_dir(r.id))
        unowned = cs.unowned_run_dir(r.id)
        unowned_bytes = cs.size(unowned)
        doc = {"run": r.name, "removed": removed, "freed_bytes": freed, "left_bytes": left, "where": cs.run_dir(r.id),
               "unowned_bytes": unowned_bytes}  # fmt: skip
        if as_json:
            print(dumps(doc))
            return
        print(f"run {r.name!r}: removed {removed} checkpoints ({freed / 1e6:.1f} MB); "
              f"{left / 1e6:.1f} MB left in {cs.run_dir(r.id)}")  # fmt: skip
        if unowned_bytes:
            print(f"  {unowned_bytes / 1e6:.1f} MB in {unowned} (the layout before database identities: a run {r.id} "
                  "of any database) left alone; remove it by hand once no training there needs it")  # fmt: skip
