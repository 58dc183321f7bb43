"""level_summary's best is of the children trained to the run's full epochs, as `pnas status`'s.

A multi-fidelity run (issue 24) stops some children after a rung: their accuracy is a short
training's. ``level_summary.best`` was the highest reward of any succeeded child; it is now that
of the children trained to the run's full epochs (or with no epochs recorded: runs made before
0012), NULL while the level has none, as `pnas status`, the live line and the dashboard give a
level's best. New columns after ``mean``: ``best_any_rung`` (the highest reward of any child with
one, a child training further after a rung included: `pnas status` shows it, labelled with its
epochs, until a child reaches the full epochs) and ``full_epochs`` (the run's ``train.epochs``).
No table changes: the views are dropped and recreated from 0014's definitions, and a downgrade
restores them.

Revision ID: 0015_level_best_fidelity
Revises: 0014_latency
Create Date: 2026-12-06
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0015_level_best_fidelity"
down_revision = "0014_latency"
branch_labels = None
depends_on = None

OLD_BEST = "MAX(CASE WHEN j.state = 'succeeded' THEN j.reward END) AS best,"
MEAN = "AVG(CASE WHEN j.state = 'succeeded' THEN j.reward END) AS mean,"


def _load(name: str):
    """A migration module by file name (no Python identifier)."""
    spec = importlib.util.spec_from_file_location(f"pnas_migration_{name}", Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def view_sql() -> dict[str, str]:
    """Every view as it stands from here on: the previous revision's, with level_summary's best of
    the children trained to the full epochs."""
    views = _load(down_revision).view_sql()
    full = _load("0013_leaderboard_fidelity").full_epochs_sql(op.get_bind().dialect.name)
    summary = views["level_summary"]
    assert OLD_BEST in summary and MEAN in summary
    at_full = f"j.epochs_trained IS NULL OR j.epochs_trained >= {full}"
    summary = summary.replace(OLD_BEST, f"MAX(CASE WHEN {at_full} THEN j.reward END) AS best,", 1)
    summary = summary.replace(MEAN, f"{MEAN} MAX(j.reward) AS best_any_rung, MAX({full}) AS full_epochs,", 1)
    views["level_summary"] = summary
    return views


def _recreate(views: dict[str, str]) -> None:
    """Drop every view and create it anew (0013's way)."""
    _load("0013_leaderboard_fidelity")._recreate(views)


def upgrade() -> None:
    _recreate(view_sql())


def downgrade() -> None:
    _recreate(_load(down_revision).view_sql())
