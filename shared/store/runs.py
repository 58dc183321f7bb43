"""Runs, their controller lock, levels and the predictions kept for them: the controller's bookkeeping."""

from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy import delete, insert, or_, select, update

from shared.db.models import Level, Prediction, Run
from shared.errors import UserError
from shared.jobs import LevelState, LevelView, RunState, RunView
from shared.store.engine import StoreBase
from shared.store.rows import level_view, run_view


class Runs(StoreBase):
    # --- runs ----------------------------------------------------------------------------
    def create_run(self, *, name: str, config: dict, seed: int) -> tuple[RunView, bool]:
        """The run of that name, created if missing. Returns (run, created)."""
        with self._tx() as s:
            row = s.scalar(select(Run).where(Run.name == name))
            if row is not None:
                return run_view(row), False
            now = self._db_now(s)
            row = Run(
                name=name,
                config=config,
                seed=seed,
                state=RunState.created.value,
                level=0,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            s.flush()
            return run_view(row), True

    def get_run(self, ref: str | int | None = None) -> RunView | None:
        """A run by name or id; with no ref, the most recently updated run."""
        with self._tx() as s:
            if ref is None:
                row = s.scalar(select(Run).order_by(Run.updated_at.desc(), Run.id.desc()).limit(1))
            elif isinstance(ref, int) or str(ref).isdigit():
                row = s.scalar(select(Run).where(Run.name == str(ref))) or s.get(Run, int(ref))
            else:
                row = s.scalar(select(Run).where(Run.name == ref))
            return run_view(row) if row else None

    def require_run(self, ref: str | int | None = None) -> RunView:
        run = self.get_run(ref)
        if run is None:
            if ref is None:
                raise UserError(f"no runs in {self.safe_url}; start one with `pnas search`")
            raise UserError(f"no run named {ref!r} in {self.safe_url}; `pnas runs` lists them")
        return run

    def list_runs(self) -> list[RunView]:
        with self._tx() as s:
            return [run_view(r) for r in s.scalars(select(Run).order_by(Run.id))]

    def run_config(self, run_id: int) -> dict:
        with self._tx() as s:
            return s.scalar(select(Run.config).where(Run.id == run_id)) or {}

    def set_run_state(self, run_id: int, state: RunState, *, level: int | None = None, message: str | None = None) -> None:
        values: dict[str, Any] = {"state": RunState(state).value, "updated_at": self._now()}
        if level is not None:
            values["level"] = level
        if message is not None:
            values["message"] = message
        if state in (RunState.finished, RunState.aborted):
            values["finished_at"] = self._now()
        with self._tx() as s:
            s.execute(update(Run).where(Run.id == run_id).values(**values))

    def acquire_run_lock(self, run_id: int, *, owner: str, ttl_seconds: float) -> str | None:
        """Take (or renew) the run's controller lock. Returns None on success, else the holder."""
        with self._tx() as s:
            res = s.execute(
                update(Run)
                .where(
                    Run.id == run_id,
                    or_(Run.lock_owner.is_(None), Run.lock_owner == owner, Run.lock_until < self._now()),
                )
                .values(lock_owner=owner, lock_until=self._now(ttl_seconds))
            )
            if res.rowcount == 1:  # type: ignore[attr-defined]
                return None
            return s.scalar(select(Run.lock_owner).where(Run.id == run_id)) or "?"

    def release_run_lock(self, run_id: int, *, owner: str) -> None:
        with self._tx() as s:
            s.execute(
                update(Run).where(Run.id == run_id, Run.lock_owner == owner).values(lock_owner=None, lock_until=None)
            )

    # --- levels --------------------------------------------------------------------------
    def start_level(self, run_id: int, b: int, *, candidates: int, distinct: int | None = None) -> LevelView:
        """The level row, created if missing (idempotent). ``candidates``: the expansion;
        ``distinct``: of those, the networks new to the run (what was scored)."""
        with self._tx() as s:
            row = s.scalar(select(Level).where(Level.run_id == run_id, Level.b == b))
            if row is None:
                row = Level(
                    run_id=run_id,
                    b=b,
                    state=LevelState.training.value,
                    candidates=candidates,
                    distinct_candidates=distinct,
                    started_at=self._db_now(s),
                )
                s.add(row)
                s.flush()
            s.execute(update(Run).where(Run.id == run_id).values(level=b, updated_at=self._now()))
            return level_view(row)

    def levels(self, run_id: int) -> list[LevelView]:
        with self._tx() as s:
            return [level_view(r) for r in s.scalars(select(Level).where(Level.run_id == run_id).order_by(Level.b))]

    def get_level(self, run_id: int, b: int) -> LevelView | None:
        with self._tx() as s:
            row = s.scalar(select(Level).where(Level.run_id == run_id, Level.b == b))
            return level_view(row) if row else None

    def finish_level(
        self,
        run_id: int,
        b: int,
        *,
        predictor: bytes | None,
        spearman_extrapolation: float | None,
        spearman_insample: float | None,
    ) -> None:
        with self._tx() as s:
            s.execute(
                update(Level)
                .where(Level.run_id == run_id, Level.b == b)
                .values(
                    state=LevelState.done.value,
                    predictor=predictor,
                    spearman_extrapolation=spearman_extrapolation,
                    spearman_insample=spearman_insample,
                    finished_at=self._now(),
                )
            )

    def latest_predictor(self, run_id: int) -> tuple[int, bytes] | None:
        """(b, ensemble bytes) of the newest level that stored a predictor."""
        with self._tx() as s:
            row = s.execute(
                select(Level.b, Level.predictor)
                .where(Level.run_id == run_id, Level.predictor.is_not(None))
                .order_by(Level.b.desc())
                .limit(1)
            ).first()
            return (row[0], row[1]) if row and row[1] is not None else None

    # --- predictions ---------------------------------------------------------------------
    def save_predictions(self, run_id: int, b: int, rows: Sequence[tuple[str, list, float, int]]) -> None:
        """Keep the top-N scored candidates of a level: (arch_id, cell, predicted, rank)."""
        with self._tx() as s:
            level_id = s.scalar(select(Level.id).where(Level.run_id == run_id, Level.b == b))
            s.execute(delete(Prediction).where(Prediction.level_id == level_id))
            if rows:
                s.execute(
                    insert(Prediction),
                    [dict(level_id=level_id, arch_id=a, cell=c, predicted=p, rank=r) for a, c, p, r in rows],
                )

    def predictions(self, run_id: int, b: int) -> list[dict]:
        with self._tx() as s:
            q = (
                select(Prediction.arch_id, Prediction.cell, Prediction.predicted, Prediction.rank)
                .join(Level, Level.id == Prediction.level_id)
                .where(Level.run_id == run_id, Level.b == b)
                .order_by(Prediction.rank)
            )
            return [dict(arch_id=a, cell=c, predicted=p, rank=r) for a, c, p, r in s.execute(q)]
