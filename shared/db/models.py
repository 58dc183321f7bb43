"""SQLAlchemy models. Only `shared.store` touches them; everyone else gets immutable views.

The schema itself is created by the Alembic migrations in `migrations/`, which mirror this
file; `tests/shared/test_store.py` checks that they agree.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    config: Mapped[dict] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20), index=True)
    level: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str | None] = mapped_column(Text)
    lock_owner: Mapped[str | None] = mapped_column(String(200))
    lock_until: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class Level(Base):
    __tablename__ = "levels"
    __table_args__ = (UniqueConstraint("run_id", "b", name="uq_levels_run_b"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    b: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))
    candidates: Mapped[int] = mapped_column(Integer, default=0)  # the expansion, as the paper counts it
    distinct_candidates: Mapped[int | None] = mapped_column(Integer)  # of those, networks new to the run
    spearman_extrapolation: Mapped[float | None] = mapped_column(Float)
    spearman_insample: Mapped[float | None] = mapped_column(Float)
    predictor: Mapped[bytes | None] = mapped_column(LargeBinary)  # the ensemble fitted after it
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class Prediction(Base):
    """The top-N scored candidates of a level, kept only when the run asks for them."""

    __tablename__ = "predictions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    level_id: Mapped[int] = mapped_column(ForeignKey("levels.id", ondelete="CASCADE"), index=True)
    arch_id: Mapped[str] = mapped_column(String(32))
    cell: Mapped[list] = mapped_column(JSON)
    predicted: Mapped[float] = mapped_column(Float)
    rank: Mapped[int] = mapped_column(Integer)


SEARCH_ORIGINAL = "kind = 'search' AND duplicate_of IS NULL"  # where a network is unique per run


class ChildJob(Base):
    """One child network to train: the unit of work, its state and its result."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("run_id", "key", name="uq_jobs_run_key"),
        Index("ix_jobs_run_state", "run_id", "state"),
        Index("ix_jobs_run_level", "run_id", "level"),
        Index("ix_jobs_run_finished", "run_id", "finished_at"),  # the dashboard's charts
        Index("ix_jobs_run_reward", "run_id", "reward"),  # the dashboard's table by accuracy
        # One search child per network and run. Runs made before network ids may hold a
        # network twice; the migration marks the later ones `duplicate_of` the first.
        Index(
            "uq_jobs_run_network",
            "run_id",
            "network_id",
            unique=True,
            postgresql_where=text(SEARCH_ORIGINAL),
            sqlite_where=text(SEARCH_ORIGINAL),
        ),
        # claim_next: the run's queued children in claim order (level desc, id), read from the
        # head of a partial index instead of sorted per claim (migration 0008_hot_indexes).
        # PostgreSQL only: SQLite serves few local workers, and cannot reflect a DESC key.
        Index(
            "ix_jobs_queued", "run_id", text("level DESC"), "id", postgresql_where=text("state = 'queued'")
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    level: Mapped[int] = mapped_column(Integer)  # b; 0 for final training
    kind: Mapped[str] = mapped_column(String(20))  # search | final
    key: Mapped[str] = mapped_column(String(80))  # kind:arch_id[:settings], unique per run
    arch_id: Mapped[str] = mapped_column(String(32), index=True)
    network_id: Mapped[str | None] = mapped_column(String(16), index=True)  # same network, same id
    duplicate_of: Mapped[int | None] = mapped_column(Integer)  # only in runs made before network ids
    cell: Mapped[list] = mapped_column(JSON)
    train: Mapped[dict] = mapped_column(JSON)  # TrainConfig overrides ({} = the run's)
    predicted: Mapped[float | None] = mapped_column(Float)
    rank: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    reward: Mapped[float | None] = mapped_column(Float)
    reward_epoch: Mapped[int | None] = mapped_column(Integer)
    # on the dataset's test split, when measured; shown, never used to choose cells
    test_accuracy: Mapped[float | None] = mapped_column(Float)
    params: Mapped[int | None] = mapped_column(Integer)  # at insert from the cell; the worker's count after training
    flops: Mapped[int | None] = mapped_column(BigInteger)  # multiply-adds of one image, at insert (0011_costs)
    latency_ms: Mapped[float | None] = mapped_column(Float)  # predicted from the run's latency table, at insert (0014_latency)
    wall_seconds: Mapped[float | None] = mapped_column(Float)
    device: Mapped[str | None] = mapped_column(String(200))
    error_class: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    log_tail: Mapped[str | None] = mapped_column(Text)
    # Set by `pnas cancel` on a running child: its worker stops it at the next heartbeat.
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    resumed_epoch: Mapped[int | None] = mapped_column(Integer)  # this attempt resumed after this epoch
    # Multi-fidelity (SearchConfig.fidelity): the rung it trains to (its epochs: the run's
    # rungs()[rung]), the epochs its reward is from, and {epochs: reward} of each rung it completed
    rung: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    epochs_trained: Mapped[int | None] = mapped_column(Integer)
    rung_rewards: Mapped[dict | None] = mapped_column(JSON)


class EpochRow(Base):
    __tablename__ = "epochs"
    __table_args__ = (UniqueConstraint("job_id", "attempt", "epoch", name="uq_epochs_job_attempt_epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    loss: Mapped[float | None] = mapped_column(Float)
    accuracy: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    val_accuracy: Mapped[float | None] = mapped_column(Float)
    seconds: Mapped[float | None] = mapped_column(Float)


class WorkerRow(Base):
    """A worker process seen by the store, with its last heartbeat."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    hostname: Mapped[str | None] = mapped_column(String(200))
    device: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(DateTime)
    last_seen: Mapped[datetime] = mapped_column(DateTime)
    job_id: Mapped[int | None] = mapped_column(Integer, index=True)  # the child it trains now, if any
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime)  # it exited (None: running, or died unheard)


class DatabaseIdentity(Base):
    """One row: a random id made with the schema; checkpoints are stored under it."""

    __tablename__ = "database_identity"
    __table_args__ = (CheckConstraint("one = 1", name="ck_database_identity_one_row"),)

    one: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    identity: Mapped[str] = mapped_column(String(32))
