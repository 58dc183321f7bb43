"""Multi-fidelity search (issue 24): a child's rung, the epochs it was trained to, its reward per rung.

- ``jobs.rung``: the rung a search child trains to (0 = the first; the controller raises it
  when it promotes the child); its epochs are the run's ``SearchConfig.rungs()[rung]``;
- ``jobs.epochs_trained``: the epochs of the training its reward is from;
- ``jobs.rung_rewards``: {epochs: reward} of every rung it completed (the promotion decisions).

The job_status view gains ``rung`` and ``epochs_trained``; the views are dropped around the
change and recreated from 0011's definitions (the newest; SQLite rebuilds the table to drop a
column).

Revision ID: 0012_fidelity
Revises: 0011_costs
Create Date: 2026-12-06
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0012_fidelity"
down_revision = "0011_costs"
branch_labels = None
depends_on = None


def _previous_views() -> dict[str, str]:
    """0011's view definitions (its file name is no Python identifier), for this dialect."""
    spec = importlib.util.spec_from_file_location("pnas_migration_0011", Path(__file__).with_name("0011_costs.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.view_sql(op.get_bind().dialect.name)


def view_sql() -> dict[str, str]:
    """Every view as it stands from here on: 0011's, with the rung and epochs in job_status."""
    views = _previous_views()
    after = "j.test_accuracy"
    assert after in views["job_status"]
    views["job_status"] = views["job_status"].replace(after, after + ", j.rung, j.epochs_trained", 1)
    return views


def _alter_jobs(change, views: dict[str, str]) -> None:
    for name in views:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    with op.batch_alter_table("jobs") as batch:
        change(batch)
    for name, sql in views.items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def upgrade() -> None:
    def add(batch) -> None:
        batch.add_column(sa.Column("rung", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("epochs_trained", sa.Integer, nullable=True))
        batch.add_column(sa.Column("rung_rewards", sa.JSON, nullable=True))

    _alter_jobs(add, view_sql())


def downgrade() -> None:
    def drop(batch) -> None:
        for name in ("rung_rewards", "epochs_trained", "rung"):
            batch.drop_column(name)

    _alter_jobs(drop, _previous_views())
