"""jobs.resumed_epoch: the epoch whose checkpoint the current attempt continued from.

Revision ID: 0006_checkpoints
Revises: 0005_test_accuracy
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_checkpoints"
down_revision = "0005_test_accuracy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("resumed_epoch", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("resumed_epoch")
