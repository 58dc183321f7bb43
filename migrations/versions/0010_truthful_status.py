"""workers.stopped_at: a worker that exits says so at once, instead of looking live and idle
until its heartbeat is older than a lease.

Revision ID: 0010_truthful_status
Revises: 0009_database_identity
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_truthful_status"
down_revision = "0009_database_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workers", sa.Column("stopped_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("stopped_at")
