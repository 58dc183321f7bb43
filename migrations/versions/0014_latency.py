"""jobs.latency_ms: a child's predicted batch-1 latency on the device of the run's latency table.

Set at insert with params and flops when the run has a latency table (``latency_table``,
`shared.latency`), so a latency budget (``max_latency_ms``) and `pnas top` / `pnas pareto
--cost latency` read it. The job_status view gains ``latency_ms`` after ``flops``; the views
are dropped around the change and recreated from the previous revision's definitions (its
``view_sql()``, read from ``down_revision``'s file; SQLite rebuilds the table to drop a column).

Revision ID: 0014_latency
Revises: 0013_leaderboard_fidelity
Create Date: 2026-12-06
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0014_latency"
down_revision = "0013_leaderboard_fidelity"
branch_labels = None
depends_on = None


def _previous():
    """The previous revision's module (``down_revision``'s file; its name is no Python
    identifier): the views as they stand, from its ``view_sql()``."""
    spec = importlib.util.spec_from_file_location("pnas_migration_previous", Path(__file__).with_name(f"{down_revision}.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def view_sql() -> dict[str, str]:
    """Every view as it stands from here on: the previous revision's, with the latency after flops in job_status."""
    views = _previous().view_sql()
    after = "j.flops"
    assert after in views["job_status"]
    views["job_status"] = views["job_status"].replace(after, after + ", j.latency_ms", 1)
    return views


def _alter_jobs(change, views: dict[str, str]) -> None:
    for name in views:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    with op.batch_alter_table("jobs") as batch:
        change(batch)
    for name, sql in views.items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def upgrade() -> None:
    _alter_jobs(lambda batch: batch.add_column(sa.Column("latency_ms", sa.Float, nullable=True)), view_sql())


def downgrade() -> None:
    _alter_jobs(lambda batch: batch.drop_column("latency_ms"), _previous().view_sql())
