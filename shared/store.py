"""The store: every read and write of runs, levels and child jobs, on SQLite or PostgreSQL.

Contract:
- one helper (`_tx`) owns every transaction; nothing else commits;
- it hands out immutable views (`RunView`, `LevelView`, `JobView`), never ORM objects;
- expected races return a value instead of raising: `claim` gives the attempt number or
  None, fenced writes (`heartbeat`, `add_epoch`, `finish`, `fail`) give True or False;
- times that decide liveness (leases, run locks) come from the database clock.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import fields, replace
from datetime import datetime
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from sqlalchemy import (
    and_,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from shared.db.models import ChildJob, EpochRow, Level, Prediction, Run, WorkerRow
from shared.errors import UserError
from shared.jobs import (
    ALL_STATES,
    EpochMetrics,
    JobState,
    JobView,
    LevelView,
    RunState,
    RunView,
    TrainResult,
)

Q, R, S, F, L = (s.value for s in JobState)  # queued, running, succeeded, failed, lost


def _pg_url(url: str) -> str:
    """Normalise a PostgreSQL URL to the psycopg2 driver (SQLAlchemy 2.1 defaults to psycopg 3)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def make_engine(url: str, *, pool_size: int = 2, null_pool: bool = False) -> Engine:
    """An engine with the settings this project needs on each backend.

    SQLite: WAL and a busy timeout so that several local worker processes can share the
    file, and ``BEGIN IMMEDIATE`` so that a writer never fails half-way through upgrading
    a read lock. PostgreSQL: a small pool with pre-ping (workers hold few connections and
    survive a database restart).
    """
    url = _pg_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _rec):  # noqa: ANN001
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):  # noqa: ANN001
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs: dict = {"pool_pre_ping": True}
    if null_pool:
        kwargs["poolclass"] = NullPool
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size)
    return create_engine(url, **kwargs)


class Store:
    """Runs, levels and child jobs in one relational database (see module docstring)."""

    def __init__(self, url: str, *, pool_size: int = 2, null_pool: bool = False) -> None:
        self.url = _pg_url(url)
        self.engine = make_engine(self.url, pool_size=pool_size, null_pool=null_pool)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._pid = os.getpid()

    @classmethod
    def from_settings(cls, settings=None, **kw) -> "Store":  # noqa: ANN001
        from shared.settings import get_settings

        s = settings or get_settings()
        return cls(s.database_url, pool_size=s.db_pool_size, **kw)

    def dispose(self) -> None:
        self.engine.dispose()

    # --- transactions and clock ----------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[Session]:
        """The one place that commits or rolls back."""
        if os.getpid() != self._pid:  # forked: never reuse the parent's connections
            self.engine.dispose(close=False)
            self._pid = os.getpid()
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def _now(self, plus_seconds: float = 0.0):  # noqa: ANN202
        """The database's clock (UTC), optionally shifted; an SQL expression."""
        if self.is_sqlite:
            return func.strftime("%Y-%m-%d %H:%M:%f", "now", f"{plus_seconds:+.3f} seconds")
        now = literal_column("(now() at time zone 'utc')")
        if plus_seconds:
            return now + literal_column(f"interval '{float(plus_seconds):.3f} seconds'")
        return now

    def _db_now(self, s: Session) -> datetime:
        return _dt(s.execute(select(self._now())).scalar_one())

    def db_now(self) -> datetime:
        with self._tx() as s:
            return self._db_now(s)

    # --- schema --------------------------------------------------------------------------
    def _alembic_config(self):  # noqa: ANN202
        from alembic.config import Config

        cfg = Config()
        # `migrations` is installed beside `shared` (source tree, editable or wheel alike).
        cfg.set_main_option("script_location", str(Path(__file__).resolve().parents[1] / "migrations"))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        cfg.attributes["engine"] = self.engine
        return cfg

    def schema_revision(self) -> tuple[str | None, str]:
        """(current revision in the database, head revision of the code)."""
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        with self.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
        return current, head

    def upgrade(self) -> tuple[str | None, str]:
        """Apply every migration (``alembic upgrade head``); returns (before, after)."""
        from alembic import command

        before, head = self.schema_revision()
        command.upgrade(self._alembic_config(), "head")
        return before, head

    def ensure_schema(self, *, auto_upgrade: bool | None = None) -> None:
        """SQLite: create or upgrade the file. PostgreSQL: refuse a schema that is not current."""
        if auto_upgrade is None:
            auto_upgrade = self.is_sqlite
        try:
            current, head = self.schema_revision()
        except OperationalError as exc:
            raise UserError(f"cannot reach the database at {self.safe_url}: {_first_line(exc)}") from None
        if current == head:
            return
        if auto_upgrade:
            self.upgrade()
            return
        state = "has no pnas tables" if current is None else f"is at revision {current}, the code needs {head}"
        raise UserError(f"the database {self.safe_url} {state}; run `pnas db upgrade` first")

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    # --- runs ----------------------------------------------------------------------------
    def create_run(self, *, name: str, config: dict, seed: int) -> tuple[RunView, bool]:
        """The run of that name, created if missing. Returns (run, created)."""
        with self._tx() as s:
            row = s.scalar(select(Run).where(Run.name == name))
            if row is not None:
                return _run_view(row), False
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
            return _run_view(row), True

    def get_run(self, ref: str | int | None = None) -> RunView | None:
        """A run by name or id; with no ref, the most recently updated run."""
        with self._tx() as s:
            q = select(Run)
            if ref is None:
                q = q.order_by(Run.updated_at.desc(), Run.id.desc()).limit(1)
            elif isinstance(ref, int) or str(ref).isdigit():
                row = s.scalar(select(Run).where(Run.name == str(ref))) or s.get(Run, int(ref))
                return _run_view(row) if row else None
            else:
                q = q.where(Run.name == ref)
            row = s.scalar(q)
            return _run_view(row) if row else None

    def require_run(self, ref: str | int | None = None) -> RunView:
        run = self.get_run(ref)
        if run is None:
            if ref is None:
                raise UserError(f"no runs in {self.safe_url}; start one with `pnas search`")
            raise UserError(f"no run named {ref!r} in {self.safe_url}; `pnas runs` lists them")
        return run

    def list_runs(self) -> list[RunView]:
        with self._tx() as s:
            return [_run_view(r) for r in s.scalars(select(Run).order_by(Run.id))]

    def set_run_state(self, run_id: int, state: str, *, level: int | None = None, message: str | None = None) -> None:
        values: dict = {"state": str(state), "updated_at": self._now()}
        if level is not None:
            values["level"] = level
        if message is not None:
            values["message"] = message
        if str(state) in (RunState.finished.value, RunState.aborted.value):
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
            if res.rowcount == 1:
                return None
            return s.scalar(select(Run.lock_owner).where(Run.id == run_id)) or "?"

    def release_run_lock(self, run_id: int, *, owner: str) -> None:
        with self._tx() as s:
            s.execute(
                update(Run).where(Run.id == run_id, Run.lock_owner == owner).values(lock_owner=None, lock_until=None)
            )

    # --- levels --------------------------------------------------------------------------
    def start_level(self, run_id: int, b: int, *, candidates: int) -> LevelView:
        """The level row, created if missing (idempotent)."""
        with self._tx() as s:
            row = s.scalar(select(Level).where(Level.run_id == run_id, Level.b == b))
            if row is None:
                row = Level(
                    run_id=run_id,
                    b=b,
                    state="training",
                    candidates=candidates,
                    started_at=self._db_now(s),
                )
                s.add(row)
                s.flush()
            s.execute(update(Run).where(Run.id == run_id).values(level=b, updated_at=self._now()))
            return _level_view(row)

    def levels(self, run_id: int) -> list[LevelView]:
        with self._tx() as s:
            return [_level_view(r) for r in s.scalars(select(Level).where(Level.run_id == run_id).order_by(Level.b))]

    def get_level(self, run_id: int, b: int) -> LevelView | None:
        with self._tx() as s:
            row = s.scalar(select(Level).where(Level.run_id == run_id, Level.b == b))
            return _level_view(row) if row else None

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
                    state="done",
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
            return (row[0], row[1]) if row else None

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

    # --- jobs: the controller's side -----------------------------------------------------
    def add_jobs(
        self,
        run_id: int,
        *,
        level: int,
        children: Sequence[tuple[str, list, float | None, int | None]],
        max_attempts: int,
        kind: str = "search",
        train: dict | None = None,
    ) -> list[int]:
        """Insert child jobs (arch_id, cell, predicted, rank) idempotently; return their ids.

        One job per (run, kind, architecture[, settings]): inserting an existing one is a no-op,
        so a controller that crashed between insert and enqueue can simply insert again.
        """
        train = train or {}
        suffix = ""
        if train:
            suffix = ":" + hashlib.sha1(json.dumps(train, sort_keys=True).encode()).hexdigest()[:10]
        rows = [
            dict(
                run_id=run_id,
                level=level,
                kind=kind,
                key=f"{kind}:{arch}{suffix}",
                arch_id=arch,
                cell=cell,
                train=train,
                predicted=pred,
                rank=rank,
                state=Q,
                attempts=0,
                max_attempts=max_attempts,
            )
            for arch, cell, pred, rank in children
        ]
        keys = [r["key"] for r in rows]
        with self._tx() as s:
            now = self._db_now(s)
            for r in rows:
                r["queued_at"] = now
            if rows:
                if self.is_sqlite:
                    from sqlalchemy.dialects.sqlite import insert as dialect_insert
                else:
                    from sqlalchemy.dialects.postgresql import insert as dialect_insert
                for chunk in _chunks(rows, 500):
                    s.execute(dialect_insert(ChildJob).on_conflict_do_nothing(index_elements=["run_id", "key"]), chunk)
            ids: dict[str, int] = {}
            for chunk in _chunks(keys, 500):
                q = select(ChildJob.key, ChildJob.id).where(ChildJob.run_id == run_id, ChildJob.key.in_(chunk))
                ids.update((k, i) for k, i in s.execute(q))
        return [ids[k] for k in keys]

    def job_ids(self, run_id: int, *, level: int | None = None, states: Iterable[str] | None = None, kind: str | None = None) -> list[int]:
        with self._tx() as s:
            q = _jobs_where(select(ChildJob.id), run_id, level=level, states=states, kind=kind)
            return list(s.scalars(q.order_by(ChildJob.id)))

    def jobs(
        self,
        run_id: int,
        *,
        level: int | None = None,
        states: Iterable[str] | None = None,
        kind: str | None = "search",
        ids: Iterable[int] | None = None,
    ) -> list[JobView]:
        with self._tx() as s:
            q = _jobs_where(select(ChildJob), run_id, level=level, states=states, kind=kind)
            if ids is not None:
                q = q.where(ChildJob.id.in_(list(ids)))
            return [_job_view(r) for r in s.scalars(q.order_by(ChildJob.id))]

    def job(self, job_id: int) -> JobView | None:
        with self._tx() as s:
            row = s.get(ChildJob, job_id)
            return _job_view(row) if row else None

    def state_counts(self, run_id: int, *, kind: str | None = "search") -> dict[int, dict[str, int]]:
        """{level: {state: count}} for every level of a run, in one aggregate query."""
        with self._tx() as s:
            q = select(ChildJob.level, ChildJob.state, func.count()).where(ChildJob.run_id == run_id)
            if kind is not None:
                q = q.where(ChildJob.kind == kind)
            out: dict[int, dict[str, int]] = {}
            for lvl, state, n in s.execute(q.group_by(ChildJob.level, ChildJob.state)):
                out.setdefault(lvl, {st: 0 for st in ALL_STATES})[state] = n
            return out

    def level_progress(self, run_id: int, level: int, *, kind: str = "search") -> dict:
        """One aggregate: counts by state, requeueable lost ones, best reward so far."""
        with self._tx() as s:
            q = select(
                *[func.sum(case((ChildJob.state == st, 1), else_=0)) for st in ALL_STATES],
                func.sum(case((and_(ChildJob.state == L, ChildJob.attempts < ChildJob.max_attempts), 1), else_=0)),
                func.max(ChildJob.reward),
                func.count(),
            ).where(ChildJob.run_id == run_id, ChildJob.level == level, ChildJob.kind == kind)
            row = s.execute(q).one()
        counts = {st: int(row[i] or 0) for i, st in enumerate(ALL_STATES)}
        return {
            "counts": counts,
            "requeueable": int(row[len(ALL_STATES)] or 0),
            "best": row[len(ALL_STATES) + 1],
            "total": int(row[-1] or 0),
        }

    def sweep_expired(self, run_id: int | None = None) -> list[int]:
        """Running jobs whose lease ran out become lost. Returns their ids."""
        with self._tx() as s:
            q = (
                update(ChildJob)
                .where(ChildJob.state == R, ChildJob.lease_until < self._now())
                .values(state=L, error_class="lost", error_message="the worker stopped renewing its lease", finished_at=self._now())
                .returning(ChildJob.id)
            )
            if run_id is not None:
                q = q.where(ChildJob.run_id == run_id)
            return list(s.scalars(q))

    def extend_leases(self, run_id: int, *, lease_seconds: float) -> int:
        """Give every running child of a run a fresh lease (after the database was away, its
        workers could not renew theirs). Returns how many."""
        with self._tx() as s:
            res = s.execute(
                update(ChildJob)
                .where(ChildJob.run_id == run_id, ChildJob.state == R)
                .values(lease_until=self._now(lease_seconds))
            )
            return res.rowcount

    def requeue_lost(self, run_id: int | None = None) -> list[int]:
        """Lost jobs with attempts left go back to queued (their identity kept)."""
        with self._tx() as s:
            q = (
                update(ChildJob)
                .where(ChildJob.state == L, ChildJob.attempts < ChildJob.max_attempts)
                .values(state=Q, worker=None, lease_until=None, queued_at=self._now())
                .returning(ChildJob.id)
            )
            if run_id is not None:
                q = q.where(ChildJob.run_id == run_id)
            return list(s.scalars(q))

    def retry(
        self,
        run_id: int,
        *,
        level: int | None = None,
        job_ids: Sequence[int] | None = None,
        states: Sequence[str] = (F, L),
        extra_attempts: int = 1,
        dry_run: bool = False,
    ) -> list[int]:
        """Put selected failed/lost children back in the queue, identity kept; returns ids.

        Each gets ``extra_attempts`` more attempts than it has used, so a child that ran out
        of attempts can run again; its history of attempts is kept.
        """
        bad = [st for st in states if st not in (F, L)]
        if bad:
            raise UserError(f"only failed or lost children can be retried, not {bad[0]!r}")
        with self._tx() as s:
            q = select(ChildJob.id).where(ChildJob.run_id == run_id, ChildJob.state.in_(list(states)))
            if level is not None:
                q = q.where(ChildJob.level == level)
            if job_ids:
                q = q.where(ChildJob.id.in_(list(job_ids)))
            ids = list(s.scalars(q.order_by(ChildJob.id)))
            if ids and not dry_run:
                s.execute(
                    update(ChildJob)
                    .where(ChildJob.id.in_(ids), ChildJob.state.in_(list(states)))  # not one claimed meanwhile
                    .values(
                        state=Q,
                        worker=None,
                        lease_until=None,
                        queued_at=self._now(),
                        max_attempts=ChildJob.attempts + extra_attempts,
                    )
                )
                s.execute(update(Run).where(Run.id == run_id).values(updated_at=self._now()))
            return ids

    def consecutive_failures(self, run_id: int) -> int:
        """Failed children since the last success, newest first (a failed attempt counts)."""
        with self._tx() as s:
            rows = s.execute(
                select(ChildJob.state)
                .where(ChildJob.run_id == run_id, ChildJob.state.in_([S, F]), ChildJob.finished_at.is_not(None))
                .order_by(ChildJob.finished_at.desc(), ChildJob.id.desc())
                .limit(1000)
            ).scalars()
            n = 0
            for st in rows:
                if st != F:
                    break
                n += 1
            return n

    def rewards(self, run_id: int, *, max_level: int | None = None) -> list[tuple[int, list, float]]:
        """(level, cell, reward) of every succeeded search child: the predictor's data."""
        with self._tx() as s:
            q = select(ChildJob.level, ChildJob.cell, ChildJob.reward).where(
                ChildJob.run_id == run_id, ChildJob.kind == "search", ChildJob.state == S
            )
            if max_level is not None:
                q = q.where(ChildJob.level <= max_level)
            return [(lv, c, r) for lv, c, r in s.execute(q.order_by(ChildJob.level, ChildJob.id))]

    def top(self, run_id: int, *, k: int = 5, level: int | None = None, kind: str | None = "search") -> list[JobView]:
        with self._tx() as s:
            q = select(ChildJob).where(ChildJob.run_id == run_id, ChildJob.state == S)
            if level is not None:
                q = q.where(ChildJob.level == level)
            if kind is not None:
                q = q.where(ChildJob.kind == kind)
            q = q.order_by(ChildJob.reward.desc(), ChildJob.id).limit(k)
            return [_job_view(r) for r in s.scalars(q)]

    def epochs(self, job_id: int) -> list[dict]:
        with self._tx() as s:
            q = select(EpochRow).where(EpochRow.job_id == job_id).order_by(EpochRow.attempt, EpochRow.epoch)
            return [
                dict(
                    attempt=e.attempt,
                    epoch=e.epoch,
                    loss=e.loss,
                    accuracy=e.accuracy,
                    val_loss=e.val_loss,
                    val_accuracy=e.val_accuracy,
                    seconds=e.seconds,
                )
                for e in s.scalars(q)
            ]

    # --- jobs: the worker's side ---------------------------------------------------------
    def claim(self, job_id: int, *, worker: str, lease_seconds: float) -> int | None:
        """Take a queued job. Returns the attempt number, or None if someone else has it (or it
        is finished, or out of attempts)."""
        with self._tx() as s:
            res = s.execute(
                update(ChildJob)
                .where(ChildJob.id == job_id, ChildJob.state == Q, ChildJob.attempts < ChildJob.max_attempts)
                .values(
                    state=R,
                    attempts=ChildJob.attempts + 1,
                    worker=worker,
                    lease_until=self._now(lease_seconds),
                    started_at=self._now(),
                    finished_at=None,
                    error_class=None,
                    error_message=None,
                )
                .returning(ChildJob.attempts)
            ).first()
            if res is not None:
                self._touch_worker(s, worker, job_id)
            return res[0] if res else None

    def claim_next(self, *, worker: str, lease_seconds: float, run_id: int | None = None) -> tuple[int, int] | None:
        """Take the oldest queued job (of a run, or any). Returns (job id, attempt) or None."""
        for _ in range(5):
            with self._tx() as s:
                q = select(ChildJob.id).where(ChildJob.state == Q, ChildJob.attempts < ChildJob.max_attempts)
                if run_id is not None:
                    q = q.where(ChildJob.run_id == run_id)
                q = q.order_by(ChildJob.level.desc(), ChildJob.id).limit(1)
                if not self.is_sqlite:
                    q = q.with_for_update(skip_locked=True)
                job_id = s.scalar(q)
            if job_id is None:
                return None
            attempt = self.claim(job_id, worker=worker, lease_seconds=lease_seconds)
            if attempt is not None:
                return job_id, attempt
        return None

    def heartbeat(self, job_id: int, *, attempt: int, worker: str, lease_seconds: float) -> bool:
        """Renew the lease. False means the job is no longer ours: stop working on it."""
        with self._tx() as s:
            res = s.execute(
                update(ChildJob)
                .where(ChildJob.id == job_id, ChildJob.attempts == attempt, ChildJob.state == R)
                .values(lease_until=self._now(lease_seconds))
            )
            self._touch_worker(s, worker, job_id)
            return res.rowcount == 1

    def add_epoch(self, job_id: int, *, attempt: int, metrics: EpochMetrics) -> bool:
        """Record one epoch of the running attempt (fenced)."""
        with self._tx() as s:
            ok = s.scalar(
                select(func.count())
                .select_from(ChildJob)
                .where(ChildJob.id == job_id, ChildJob.attempts == attempt, ChildJob.state == R)
            )
            if not ok:
                return False
            s.execute(delete(EpochRow).where(EpochRow.job_id == job_id, EpochRow.attempt == attempt, EpochRow.epoch == metrics.epoch))
            s.add(
                EpochRow(
                    job_id=job_id,
                    attempt=attempt,
                    epoch=metrics.epoch,
                    loss=_finite(metrics.loss),
                    accuracy=_finite(metrics.accuracy),
                    val_loss=_finite(metrics.val_loss),
                    val_accuracy=_finite(metrics.val_accuracy),
                    seconds=metrics.seconds,
                )
            )
            return True

    def finish(self, job_id: int, *, attempt: int, result: TrainResult) -> bool:
        """Record success, fenced by job id, attempt and state. False: a newer attempt owns it."""
        with self._tx() as s:
            res = s.execute(
                update(ChildJob)
                .where(ChildJob.id == job_id, ChildJob.attempts == attempt, ChildJob.state == R)
                .values(
                    state=S,
                    reward=float(result.reward),
                    reward_epoch=result.reward_epoch,
                    params=int(result.params),
                    wall_seconds=float(result.wall_seconds),
                    device=result.device[:200],
                    finished_at=self._now(),
                    lease_until=None,
                    error_class=None,
                    error_message=None,
                )
            )
            if res.rowcount == 1:
                self._release_worker(s, job_id)
            return res.rowcount == 1

    def fail(
        self,
        job_id: int,
        *,
        attempt: int,
        error_class: str,
        message: str,
        log_tail: str | None = None,
        retryable: bool = False,
    ) -> bool:
        """Record a failure (fenced). A retryable one goes back to queued while attempts remain."""
        with self._tx() as s:
            row = s.execute(
                select(ChildJob.max_attempts).where(ChildJob.id == job_id, ChildJob.attempts == attempt, ChildJob.state == R)
            ).first()
            if row is None:
                return False
            again = retryable and attempt < row[0]
            values: dict = dict(
                error_class=error_class[:100],
                error_message=message,
                log_tail=log_tail,
                lease_until=None,
            )
            if again:
                values.update(state=Q, worker=None, queued_at=self._now())
            else:
                values.update(state=F, finished_at=self._now())
            res = s.execute(
                update(ChildJob)
                .where(ChildJob.id == job_id, ChildJob.attempts == attempt, ChildJob.state == R)
                .values(**values)
            )
            if res.rowcount == 1:
                self._release_worker(s, job_id)
            return res.rowcount == 1

    def hand_back(self, job_id: int, *, attempt: int) -> bool:
        """A worker shutting down returns its running child to the queue; the attempt is not
        counted (fenced, so a job that was meanwhile declared lost is left alone)."""
        with self._tx() as s:
            res = s.execute(
                update(ChildJob)
                .where(ChildJob.id == job_id, ChildJob.attempts == attempt, ChildJob.state == R)
                .values(state=Q, attempts=ChildJob.attempts - 1, worker=None, lease_until=None, queued_at=self._now())
            )
            if res.rowcount == 1:
                self._release_worker(s, job_id)
            return res.rowcount == 1

    def reject(self, job_id: int, *, error_class: str, message: str) -> bool:
        """Fail a queued job that must never run (a malformed cell or payload). Final."""
        with self._tx() as s:
            res = s.execute(
                update(ChildJob)
                .where(ChildJob.id == job_id, ChildJob.state == Q)
                .values(state=F, error_class=error_class[:100], error_message=message, finished_at=self._now())
            )
            return res.rowcount == 1

    def run_config(self, run_id: int) -> dict:
        with self._tx() as s:
            return s.scalar(select(Run.config).where(Run.id == run_id)) or {}

    # --- workers -------------------------------------------------------------------------
    def register_worker(self, name: str, *, hostname: str, device: str) -> None:
        with self._tx() as s:
            now = self._db_now(s)
            row = s.get(WorkerRow, name)
            if row is None:
                s.add(WorkerRow(name=name, hostname=hostname, device=device, started_at=now, last_seen=now))
            else:
                row.hostname, row.device, row.started_at, row.last_seen, row.job_id = hostname, device, now, now, None

    def worker_seen(self, name: str) -> None:
        with self._tx() as s:
            s.execute(update(WorkerRow).where(WorkerRow.name == name).values(last_seen=self._now()))

    def workers(self) -> list[dict]:
        with self._tx() as s:
            now = self._db_now(s)
            out = []
            for w in s.scalars(select(WorkerRow).order_by(WorkerRow.last_seen.desc())):
                out.append(
                    dict(
                        name=w.name,
                        hostname=w.hostname,
                        device=w.device,
                        started_at=w.started_at,
                        last_seen=w.last_seen,
                        seconds_ago=max(0.0, (now - w.last_seen).total_seconds()),
                        job_id=w.job_id,
                    )
                )
            return out

    def _touch_worker(self, s: Session, worker: str, job_id: int | None) -> None:
        res = s.execute(update(WorkerRow).where(WorkerRow.name == worker).values(last_seen=self._now(), job_id=job_id))
        if res.rowcount == 0:
            now = self._db_now(s)
            try:
                with s.begin_nested():
                    s.add(WorkerRow(name=worker, hostname=None, device=None, started_at=now, last_seen=now, job_id=job_id))
            except IntegrityError:
                pass

    def _release_worker(self, s: Session, job_id: int) -> None:
        s.execute(update(WorkerRow).where(WorkerRow.job_id == job_id).values(job_id=None, last_seen=self._now()))

    # --- read-only queries for the operators' tools (pnas runs/status/top/show/plot) ------
    # Added for issue 6. Nothing here writes except `grant_readonly`, which only grants.
    def run_summaries(self) -> list[dict]:
        """One dict per run (oldest first): the run's columns, its search children by state,
        their best reward and the time of the last finished child, in one aggregate query."""
        with self._tx() as s:
            agg = (
                select(
                    ChildJob.run_id.label("run_id"),
                    *[func.sum(case((ChildJob.state == st, 1), else_=0)).label(st) for st in ALL_STATES],
                    func.max(ChildJob.reward).label("best"),
                    func.max(ChildJob.finished_at).label("last_finished"),
                )
                .where(ChildJob.kind == "search")
                .group_by(ChildJob.run_id)
                .subquery()
            )
            q = select(Run, *[agg.c[st] for st in ALL_STATES], agg.c.best, agg.c.last_finished).outerjoin(
                agg, agg.c.run_id == Run.id
            )
            out = []
            for row in s.execute(q.order_by(Run.id)):
                run = _run_view(row[0])
                counts = {st: int(row[1 + i] or 0) for i, st in enumerate(ALL_STATES)}
                out.append(
                    {"run": run, "jobs": counts, "best": row[-2], "last_finished": _dt(row[-1])}
                )
            return out

    def level_timing(self, run_id: int, *, kind: str = "search") -> dict[int, dict]:
        """{level: first start, last finish, finished children, summed child seconds, mean
        reward} over a run's children, in one aggregate query (for elapsed time and ETA)."""
        with self._tx() as s:
            finished = ChildJob.state.in_([S, F, L])
            q = (
                select(
                    ChildJob.level,
                    func.min(ChildJob.started_at),
                    func.max(ChildJob.finished_at),
                    func.sum(case((finished, 1), else_=0)),
                    func.sum(ChildJob.wall_seconds),
                    func.avg(case((ChildJob.state == S, ChildJob.reward), else_=None)),
                )
                .where(ChildJob.run_id == run_id, ChildJob.kind == kind)
                .group_by(ChildJob.level)
            )
            return {
                lv: {
                    "first_started": _dt(a),
                    "last_finished": _dt(b),
                    "finished": int(n or 0),
                    "child_seconds": float(sec or 0.0),
                    "mean": m,
                }
                for lv, a, b, n, sec, m in s.execute(q)
            }

    def trained_children(self, run_id: int, *, kind: str = "search") -> list[JobView]:
        """Succeeded children in the order they finished (ties by id): history and curves."""
        with self._tx() as s:
            q = (
                select(ChildJob)
                .where(ChildJob.run_id == run_id, ChildJob.kind == kind, ChildJob.state == S)
                .order_by(ChildJob.finished_at, ChildJob.id)
            )
            return [_job_view(r) for r in s.scalars(q)]

    def grant_readonly(self, role: str, *, password: str | None = None, login: bool = True) -> list[str]:
        """PostgreSQL: create ``role`` if missing and let it SELECT every table and view of the
        current database, now and later. Idempotent. Returns the statements it ran (a
        password is shown as '***'). UserError on SQLite or a role name that is not a plain
        identifier."""
        import re

        if self.is_sqlite:
            raise UserError("roles exist only on PostgreSQL; an SQLite file is read-only with `sqlite3 -readonly FILE`")
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
            raise UserError(f"role name {role!r} must be lower-case letters, digits and _ (a plain SQL identifier)")
        shown: list[str] = []
        with self._tx() as s:
            exists = s.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
            stmts: list[tuple[str, dict, str]] = []
            if not exists:
                stmts.append((f"CREATE ROLE {role} {'LOGIN' if login else 'NOLOGIN'}", {}, ""))
            if password is not None:
                # A bind parameter cannot be used in ALTER ROLE; quote_literal on the server does it.
                quoted = s.scalar(text("SELECT quote_literal(:p)"), {"p": password})
                stmts.append((f"ALTER ROLE {role} PASSWORD {quoted}", {}, f"ALTER ROLE {role} PASSWORD '***'"))
            dbname = s.scalar(text("SELECT current_database()"))
            stmts += [
                (f'GRANT CONNECT ON DATABASE "{dbname}" TO {role}', {}, ""),
                (f"GRANT USAGE ON SCHEMA public TO {role}", {}, ""),
                (f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}", {}, ""),
                (f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {role}", {}, ""),
            ]
            for sql, params, show in stmts:
                s.execute(text(sql), params)
                shown.append(show or sql)
        return shown

    # --- maintenance ---------------------------------------------------------------------
    def ping(self) -> None:
        with self._tx() as s:
            s.execute(text("SELECT 1"))


def _jobs_where(q, run_id: int, *, level: int | None, states: Iterable[str] | None, kind: str | None):  # noqa: ANN001, ANN202
    """Narrow a query on jobs to a run and, where given, a level, states and a kind."""
    q = q.where(ChildJob.run_id == run_id)
    if level is not None:
        q = q.where(ChildJob.level == level)
    if states is not None:
        q = q.where(ChildJob.state.in_([str(x) for x in states]))
    if kind is not None:
        q = q.where(ChildJob.kind == kind)
    return q


def _chunks(rows: list, n: int) -> Iterator[list]:
    for i in range(0, len(rows), n):
        yield rows[i : i + n]


def _finite(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if x == x and abs(x) != float("inf") else None


def _first_line(exc: BaseException) -> str:
    return str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _dt(v):  # noqa: ANN001, ANN202
    if isinstance(v, str):
        return datetime.fromisoformat(v)
    return v


def _view(cls, row):  # noqa: ANN001, ANN202
    """An immutable view of an ORM row: every field of ``cls`` read from the row's attribute
    of the same name (SQLite hands some timestamps back as text)."""
    return cls(
        **{
            f.name: _dt(getattr(row, f.name)) if "datetime" in str(f.type) else getattr(row, f.name)
            for f in fields(cls)
        }
    )


def _run_view(r: Run) -> RunView:
    return _view(RunView, r)


def _level_view(r: Level) -> LevelView:
    return _view(LevelView, r)


def _job_view(r: ChildJob) -> JobView:
    view = _view(JobView, r)
    return view if view.train is not None else replace(view, train={})
