"""Initial schema: runs, levels, predictions, jobs, epochs, workers.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("lock_owner", sa.String(200)),
        sa.Column("lock_until", sa.DateTime),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
    )
    op.create_index("ix_runs_state", "runs", ["state"])
    op.create_table(
        "levels",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("b", sa.Integer, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("candidates", sa.Integer, nullable=False),
        sa.Column("spearman_extrapolation", sa.Float),
        sa.Column("spearman_insample", sa.Float),
        sa.Column("predictor", sa.LargeBinary),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.UniqueConstraint("run_id", "b", name="uq_levels_run_b"),
    )
    op.create_index("ix_levels_run_id", "levels", ["run_id"])
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("level_id", sa.Integer, sa.ForeignKey("levels.id", ondelete="CASCADE"), nullable=False),
        sa.Column("arch_id", sa.String(32), nullable=False),
        sa.Column("cell", sa.JSON, nullable=False),
        sa.Column("predicted", sa.Float, nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
    )
    op.create_index("ix_predictions_level_id", "predictions", ["level_id"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("key", sa.String(80), nullable=False),
        sa.Column("arch_id", sa.String(32), nullable=False),
        sa.Column("cell", sa.JSON, nullable=False),
        sa.Column("train", sa.JSON, nullable=False),
        sa.Column("predicted", sa.Float),
        sa.Column("rank", sa.Integer),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("worker", sa.String(200)),
        sa.Column("lease_until", sa.DateTime),
        sa.Column("queued_at", sa.DateTime),
        sa.Column("started_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("reward", sa.Float),
        sa.Column("reward_epoch", sa.Integer),
        sa.Column("params", sa.Integer),
        sa.Column("wall_seconds", sa.Float),
        sa.Column("device", sa.String(200)),
        sa.Column("error_class", sa.String(100)),
        sa.Column("error_message", sa.Text),
        sa.Column("log_tail", sa.Text),
        sa.UniqueConstraint("run_id", "key", name="uq_jobs_run_key"),
    )
    op.create_index("ix_jobs_run_id", "jobs", ["run_id"])
    op.create_index("ix_jobs_arch_id", "jobs", ["arch_id"])
    op.create_index("ix_jobs_run_state", "jobs", ["run_id", "state"])
    op.create_index("ix_jobs_run_level", "jobs", ["run_id", "level"])
    op.create_table(
        "epochs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("loss", sa.Float),
        sa.Column("accuracy", sa.Float),
        sa.Column("val_loss", sa.Float),
        sa.Column("val_accuracy", sa.Float),
        sa.Column("seconds", sa.Float),
        sa.UniqueConstraint("job_id", "attempt", "epoch", name="uq_epochs_job_attempt_epoch"),
    )
    op.create_index("ix_epochs_job_id", "epochs", ["job_id"])
    op.create_table(
        "workers",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("hostname", sa.String(200)),
        sa.Column("device", sa.String(200)),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("last_seen", sa.DateTime, nullable=False),
        sa.Column("job_id", sa.Integer),
    )


def downgrade() -> None:
    for table in ("workers", "epochs", "jobs", "predictions", "levels", "runs"):
        op.drop_table(table)
