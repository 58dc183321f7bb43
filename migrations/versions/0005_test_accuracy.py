"""Test accuracy per job: ``jobs.test_accuracy``, also in the leaderboard and job_status views.

Measured on the dataset's test split for final trainings (and search children when
``evaluate_test`` is on); shown beside the reward, never used to choose cells. The two views
that show it are recreated from their newest definition (0004's, plus the column).

Revision ID: 0005_test_accuracy
Revises: 0004_network_id
Create Date: 2026-12-01
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0005_test_accuracy"
down_revision = "0004_network_id"
branch_labels = None
depends_on = None


def _previous():
    """0004's module (its file name is no Python identifier): the views as they stood."""
    path = Path(__file__).with_name("0004_network_id.py")
    spec = importlib.util.spec_from_file_location("pnas_migration_0004", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def view_sql(dialect: str) -> dict[str, str]:
    """Every view as it stands from here on: 0004's, with test_accuracy in two of them."""
    views = dict(_previous().view_sql(dialect))
    for name, after in (("leaderboard", "j.finished_at"), ("job_status", "j.duplicate_of")):
        assert after in views[name], (name, after)
        views[name] = views[name].replace(after, after + ", j.test_accuracy", 1)
    return views


def _drop_views() -> None:
    # all of them: SQLite may rebuild the table, and no view may read it meanwhile
    for name in _previous()._views_module().VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    _drop_views()
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("test_accuracy", sa.Float(), nullable=True))
    for name, sql in view_sql(dialect).items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    _drop_views()
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("test_accuracy")
    for name, sql in _previous().view_sql(dialect).items():
        op.execute(f"CREATE VIEW {name} AS {sql}")
