"""Indexes for the dashboard's queries on runs of many children (`pnas dashboard`).

- ``ix_jobs_run_finished`` (run_id, finished_at): the succeeded children in the order they
  finished (best so far, the charts) without sorting the run's children each time;
- ``ix_jobs_run_reward`` (run_id, reward): the children table sorted by accuracy, one page
  read from the index instead of sorting every child of the run.

bench/dashboard.py measures the pages with and without them.

Revision ID: 0007_dashboard_indexes
Revises: 0006_checkpoints
Create Date: 2026-12-01
"""

from alembic import op

revision = "0007_dashboard_indexes"
down_revision = "0006_checkpoints"
branch_labels = None
depends_on = None

INDEXES = {"ix_jobs_run_finished": ["run_id", "finished_at"], "ix_jobs_run_reward": ["run_id", "reward"]}


def upgrade() -> None:
    for name, cols in INDEXES.items():
        op.create_index(name, "jobs", cols)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="jobs")
