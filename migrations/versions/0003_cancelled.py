"""Cancelled children: the `cancelled` state counted in the views, and `jobs.stop_requested`.

`pnas cancel` (and an aborted run) ends queued children as ``cancelled`` and asks the
workers of running ones to stop them (``stop_requested``, seen at the next heartbeat). The
views are recreated from 0002's definitions with a ``cancelled`` column in level_summary and
``stop_requested`` in job_status.

Revision ID: 0003_cancelled
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0003_cancelled"
down_revision = "0002"
branch_labels = None
depends_on = None

_spec = importlib.util.spec_from_file_location("pnas_migration_0002", Path(__file__).with_name("0002_views_and_roles.py"))
assert _spec is not None and _spec.loader is not None
_v2 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_v2)
VIEWS = _v2.VIEWS


def view_sql(dialect: str) -> dict[str, str]:
    """0002's views, with cancelled children counted and the stop request shown."""
    views = dict(_v2.view_sql(dialect))
    lost = "SUM(CASE WHEN j.state = 'lost' THEN 1 ELSE 0 END) AS lost,"
    assert lost in views["level_summary"]
    views["level_summary"] = views["level_summary"].replace(
        lost, lost + "\n                   SUM(CASE WHEN j.state = 'cancelled' THEN 1 ELSE 0 END) AS cancelled,"
    )
    views["job_status"] = views["job_status"].replace("j.wall_seconds, j.device", "j.wall_seconds, j.device, j.stop_requested")
    assert "j.stop_requested" in views["job_status"]
    return views


def _drop_views() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")


def upgrade() -> None:
    _drop_views()
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("stop_requested", sa.Boolean, nullable=False, server_default=sa.false()))
    for name, sql in view_sql(op.get_bind().dialect.name).items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def downgrade() -> None:
    _drop_views()
    op.execute("UPDATE jobs SET state = 'failed' WHERE state = 'cancelled'")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("stop_requested")
    for name, sql in _v2.view_sql(op.get_bind().dialect.name).items():
        op.execute(f"CREATE VIEW {name} AS {sql}")
