"""jobs.flops: the multiply-adds of a child's network, stored at insert with its params.

Both come from the cell alone (`shared.space.cost`), before training: a budgeted search
(``max_params``, ``max_flops``) never trains a child over budget, and `pnas top`, `pnas
pareto` and the views show the costs of every child, queued ones included. The views that
show ``params`` (leaderboard, job_status) carry ``flops`` beside it; they are recreated
from 0005's definitions (the newest) with the column added.

Revision ID: 0011_costs
Revises: 0010_truthful_status
Create Date: 2026-12-06
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0011_costs"
down_revision = "0010_truthful_status"
branch_labels = None
depends_on = None


def _previous():
    """0005's module (its file name is no Python identifier): the views as they stand."""
    spec = importlib.util.spec_from_file_location("pnas_migration_0005", Path(__file__).with_name("0005_test_accuracy.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def view_sql(dialect: str) -> dict[str, str]:
    """Every view as it stands from here on: 0005's, with flops after params where shown."""
    views = dict(_previous().view_sql(dialect))
    for name in ("leaderboard", "job_status"):
        assert "j.params" in views[name], name
        views[name] = views[name].replace("j.params", "j.params, j.flops", 1)
    return views


def _alter_jobs(change, views: dict[str, str]) -> None:
    # all views dropped: SQLite rebuilds the table to drop a column, and no view may read it meanwhile
    for name in view_sql(op.get_bind().dialect.name):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    with op.batch_alter_table("jobs") as batch:
        change(batch)
    for name, sql in views.items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    _alter_jobs(lambda batch: batch.add_column(sa.Column("flops", sa.BigInteger(), nullable=True)), view_sql(dialect))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    _alter_jobs(lambda batch: batch.drop_column("flops"), _previous().view_sql(dialect))
