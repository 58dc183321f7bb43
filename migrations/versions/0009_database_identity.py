"""The database's identity: one row with a random id, made when the schema is created.

Checkpoints are stored under it (``ROOT/db-ID/run-R/job-J``), so two databases that both
count runs and jobs from 1 never share a checkpoint directory, and `pnas gc` in one never
removes another's.

Revision ID: 0009_database_identity
Revises: 0008_hot_indexes
Create Date: 2026-12-06
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0009_database_identity"
down_revision = "0008_hot_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "database_identity",
        sa.Column("one", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("identity", sa.String(32), nullable=False),
        sa.CheckConstraint("one = 1", name="ck_database_identity_one_row"),
    )
    op.bulk_insert(table, [{"one": 1, "identity": uuid.uuid4().hex}])


def downgrade() -> None:
    op.drop_table("database_identity")
