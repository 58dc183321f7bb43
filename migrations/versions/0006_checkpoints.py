"""jobs.resumed_epoch: the epoch whose checkpoint the current attempt continued from.

The views are dropped around the change and recreated from 0005's definitions (unchanged):
SQLite rebuilds the jobs table to drop a column, and no view may read it meanwhile.

Revision ID: 0006_checkpoints
Revises: 0005_test_accuracy
Create Date: 2026-12-01
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0006_checkpoints"
down_revision = "0005_test_accuracy"
branch_labels = None
depends_on = None


def _views() -> dict[str, str]:
    """0005's view definitions (its file name is no Python identifier), for this dialect."""
    spec = importlib.util.spec_from_file_location("pnas_migration_0005", Path(__file__).with_name("0005_test_accuracy.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.view_sql(op.get_bind().dialect.name)


def _alter_jobs(change) -> None:
    views = _views()
    for name in views:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    with op.batch_alter_table("jobs") as batch:
        change(batch)
    for name, sql in views.items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def upgrade() -> None:
    _alter_jobs(lambda batch: batch.add_column(sa.Column("resumed_epoch", sa.Integer, nullable=True)))


def downgrade() -> None:
    _alter_jobs(lambda batch: batch.drop_column("resumed_epoch"))
