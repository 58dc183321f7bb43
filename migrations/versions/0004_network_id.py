"""Network ids: every job gets its cell's network id; one search child per (run, network).

Cells whose blocks differ only in their order are one network (the cell concatenates every
block). This adds ``jobs.network_id`` and computes it for every stored job, so runs made
before keep working. Those runs may have trained a network more than once: the later
children are kept (their results are real) and marked ``duplicate_of`` the first, which is
what the unique index leaves out. ``levels.distinct_candidates`` is new (NULL for levels
chosen before). The leaderboard, job_status and level_summary views are recreated with the
new columns; failed_jobs is recreated as it was.

Revision ID: 0004_network_id
Revises: 0003_cancelled
Create Date: 2026-12-01
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision = "0004_network_id"
down_revision = "0003_cancelled"
branch_labels = None
depends_on = None

SEARCH_ORIGINAL = "kind = 'search' AND duplicate_of IS NULL"


def _views_module() -> ModuleType:
    """The view definitions of revision 0002 (readable cells, unchanged views)."""
    path = Path(__file__).with_name("0002_views_and_roles.py")
    spec = importlib.util.spec_from_file_location("pnas_migration_0002", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _previous_views() -> ModuleType:
    """Revision 0003's views (cancelled counted), what a downgrade goes back to."""
    path = Path(__file__).with_name("0003_cancelled.py")
    spec = importlib.util.spec_from_file_location("pnas_migration_0003", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def view_sql(dialect: str) -> dict[str, str]:
    base = _views_module()
    cell = base.readable_cell(dialect)
    views = dict(base.view_sql(dialect))
    views["leaderboard"] = f"""
            SELECT j.run_id, r.name AS run,
                   row_number() OVER (PARTITION BY j.run_id ORDER BY j.reward DESC, j.id) AS rank,
                   j.id AS job_id, j.level, j.arch_id, j.network_id, j.reward AS accuracy, j.predicted,
                   j.params, j.wall_seconds, {cell} AS cell, CAST(j.cell AS TEXT) AS cell_json,
                   j.finished_at
            FROM jobs j JOIN runs r ON r.id = j.run_id
            WHERE j.kind = 'search' AND j.state = 'succeeded'"""
    views["level_summary"] = """
            SELECT l.run_id, r.name AS run, l.b AS level, l.state, l.candidates, l.distinct_candidates,
                   COUNT(j.id) AS children,
                   SUM(CASE WHEN j.state = 'queued' THEN 1 ELSE 0 END) AS queued,
                   SUM(CASE WHEN j.state = 'running' THEN 1 ELSE 0 END) AS running,
                   SUM(CASE WHEN j.state = 'succeeded' THEN 1 ELSE 0 END) AS succeeded,
                   SUM(CASE WHEN j.state = 'failed' THEN 1 ELSE 0 END) AS failed,
                   SUM(CASE WHEN j.state = 'lost' THEN 1 ELSE 0 END) AS lost,
                   SUM(CASE WHEN j.state = 'cancelled' THEN 1 ELSE 0 END) AS cancelled,
                   MAX(CASE WHEN j.state = 'succeeded' THEN j.reward END) AS best,
                   AVG(CASE WHEN j.state = 'succeeded' THEN j.reward END) AS mean,
                   l.spearman_extrapolation, l.spearman_insample, l.started_at, l.finished_at
            FROM levels l
            JOIN runs r ON r.id = l.run_id
            LEFT JOIN jobs j ON j.run_id = l.run_id AND j.level = l.b AND j.kind = 'search'
            GROUP BY l.id, l.run_id, r.name, l.b, l.state, l.candidates, l.distinct_candidates,
                     l.spearman_extrapolation, l.spearman_insample, l.started_at, l.finished_at"""
    views["job_status"] = """
            SELECT j.id AS job_id, j.run_id, r.name AS run, j.kind, j.level, j.arch_id, j.network_id,
                   j.state, j.attempts, j.max_attempts, j.worker, j.reward AS accuracy, j.params,
                   j.queued_at, j.started_at, j.finished_at, j.lease_until, j.wall_seconds, j.device,
                   j.stop_requested, j.duplicate_of
            FROM jobs j JOIN runs r ON r.id = j.run_id"""
    return views


def _drop_views() -> None:
    for name in _views_module().VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")


def _create_views(views: dict[str, str]) -> None:
    for name, sql in views.items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def _fill_network_ids() -> None:
    from shared.errors import UserError
    from shared.space.network import network_id_of

    bind = op.get_bind()
    jobs = sa.table(
        "jobs",
        sa.column("id", sa.Integer),
        sa.column("run_id", sa.Integer),
        sa.column("kind", sa.String),
        sa.column("cell", sa.JSON),
        sa.column("network_id", sa.String),
        sa.column("duplicate_of", sa.Integer),
    )
    first: dict[tuple[int, str], int] = {}
    updates = []
    for job_id, run_id, kind, cell in bind.execute(sa.select(jobs.c.id, jobs.c.run_id, jobs.c.kind, jobs.c.cell).order_by(jobs.c.id)):
        try:
            net: str | None = network_id_of(cell)
        except (UserError, TypeError, ValueError, KeyError):  # a malformed cell: no network
            net = None
        dup = None
        if kind == "search" and net is not None:
            dup = first.setdefault((run_id, net), job_id)
            dup = None if dup == job_id else dup
        updates.append({"jid": job_id, "net": net, "dup": dup})
    if updates:
        stmt = (
            sa.update(jobs)
            .where(jobs.c.id == sa.bindparam("jid"))
            .values(network_id=sa.bindparam("net"), duplicate_of=sa.bindparam("dup"))
        )
        bind.execute(stmt, updates)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    _drop_views()
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("network_id", sa.String(16), nullable=True))
        batch.add_column(sa.Column("duplicate_of", sa.Integer(), nullable=True))
    with op.batch_alter_table("levels") as batch:
        batch.add_column(sa.Column("distinct_candidates", sa.Integer(), nullable=True))
    _fill_network_ids()
    op.create_index("ix_jobs_network_id", "jobs", ["network_id"])
    op.create_index(
        "uq_jobs_run_network",
        "jobs",
        ["run_id", "network_id"],
        unique=True,
        postgresql_where=sa.text(SEARCH_ORIGINAL),
        sqlite_where=sa.text(SEARCH_ORIGINAL),
    )
    _create_views(view_sql(dialect))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    _drop_views()
    op.drop_index("uq_jobs_run_network", table_name="jobs")
    op.drop_index("ix_jobs_network_id", table_name="jobs")
    with op.batch_alter_table("levels") as batch:
        batch.drop_column("distinct_candidates")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("duplicate_of")
        batch.drop_column("network_id")
    _create_views(_previous_views().view_sql(dialect))
