"""Indexes for the queries 1,000 workers run all the time (bench/store_load.py measures them).

- ix_jobs_queued: the queued children of a run in claim order (level desc, id), partial
  (state = 'queued'), so `claim_next` reads the head of a small index instead of sorting every
  queued row of the run per claim; it stays as small as the queue.
- ix_workers_job_id: `finish`/`fail`/`hand_back` free the worker that held the child by job id.

Revision ID: 0008_hot_indexes
Revises: 0007_dashboard_indexes
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_hot_indexes"
down_revision = "0007_dashboard_indexes"
branch_labels = None
depends_on = None

QUEUED = sa.text("state = 'queued'")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # SQLite: a few local workers, nothing to gain
        op.create_index("ix_jobs_queued", "jobs", ["run_id", sa.text("level DESC"), "id"], postgresql_where=QUEUED)
    op.create_index("ix_workers_job_id", "workers", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_workers_job_id", table_name="workers")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_jobs_queued", table_name="jobs")
