"""Test accuracy per job: ``jobs.test_accuracy``, also in the leaderboard and job_status views.

Measured on the dataset's test split for final trainings (and search children when
``evaluate_test`` is on); shown beside the reward, never used to choose cells. The two views
that show it are recreated from their newest definition (0002's, plus the column).

Revision ID: 0005_test_accuracy
Revises: 0002
Create Date: 2026-12-01
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0005_test_accuracy"
down_revision = "0002"
branch_labels = None
depends_on = None


def _views_0002():
    """0002's module (its file name is no Python identifier): the cell expression and views."""
    path = Path(__file__).with_name("0002_views_and_roles.py")
    spec = importlib.util.spec_from_file_location("pnas_migration_0002", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def view_sql(dialect: str) -> dict[str, str]:
    """The views this revision changes, as they stand from here on."""
    cell = _views_0002().readable_cell(dialect)
    return {
        "leaderboard": f"""
            SELECT j.run_id, r.name AS run,
                   row_number() OVER (PARTITION BY j.run_id ORDER BY j.reward DESC, j.id) AS rank,
                   j.id AS job_id, j.level, j.arch_id, j.reward AS accuracy, j.predicted,
                   j.params, j.wall_seconds, {cell} AS cell, CAST(j.cell AS TEXT) AS cell_json,
                   j.finished_at, j.test_accuracy
            FROM jobs j JOIN runs r ON r.id = j.run_id
            WHERE j.kind = 'search' AND j.state = 'succeeded'""",
        "job_status": """
            SELECT j.id AS job_id, j.run_id, r.name AS run, j.kind, j.level, j.arch_id, j.state,
                   j.attempts, j.max_attempts, j.worker, j.reward AS accuracy, j.params,
                   j.queued_at, j.started_at, j.finished_at, j.lease_until, j.wall_seconds, j.device,
                   j.test_accuracy
            FROM jobs j JOIN runs r ON r.id = j.run_id""",
    }


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name in view_sql(dialect):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("test_accuracy", sa.Float(), nullable=True))
    for name, sql in view_sql(dialect).items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    v0002 = _views_0002()
    for name in v0002.VIEWS:  # all of them: SQLite rebuilds the table, views must not read it
        op.execute(f"DROP VIEW IF EXISTS {name}")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("test_accuracy")
    for name, sql in v0002.view_sql(dialect).items():
        op.execute(f"CREATE VIEW {name} AS {sql}")
