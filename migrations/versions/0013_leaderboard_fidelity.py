"""The leaderboard ranks children trained to their run's full epochs first, and shows their epochs.

A multi-fidelity run (issue 24) stops some children after a rung or two: their accuracy is a
short training's, not comparable with a child trained to the full epochs (the run's
``train.epochs``). The ``leaderboard`` view now ranks as `pnas top` does: children trained to
the full epochs (or with no epochs recorded: runs made before 0012) first, then by accuracy,
then by id; it gains ``epochs_trained``, ``rung`` and ``full_epochs`` (the run's
``train.epochs``, read from its config) after ``test_accuracy``. No table changes: the views
are dropped and recreated from 0012's definitions (the newest), and a downgrade restores 0012's.

Revision ID: 0013_leaderboard_fidelity
Revises: 0012_fidelity
Create Date: 2026-12-06
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0013_leaderboard_fidelity"
down_revision = "0012_fidelity"
branch_labels = None
depends_on = None

OLD_RANK = "ORDER BY j.reward DESC, j.id) AS rank"


def _previous_views() -> dict[str, str]:
    """0012's view definitions (its file name is no Python identifier), for this dialect."""
    spec = importlib.util.spec_from_file_location(
        "pnas_migration_0012", Path(__file__).with_name("0012_fidelity.py")
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.view_sql()


def full_epochs_sql(dialect: str) -> str:
    """SQL for the run's full epochs (``runs.config`` → train.epochs; 0 when not set, as `pnas top`)."""
    if dialect == "postgresql":
        return "COALESCE(CAST(r.config->'train'->>'epochs' AS INTEGER), 0)"
    return "COALESCE(CAST(json_extract(r.config, '$.train.epochs') AS INTEGER), 0)"


def view_sql() -> dict[str, str]:
    """Every view as it stands from here on: 0012's, with the leaderboard ranked full epochs first."""
    views = _previous_views()
    full = full_epochs_sql(op.get_bind().dialect.name)
    board = views["leaderboard"]
    assert OLD_RANK in board and "j.test_accuracy" in board
    at_full = f"CASE WHEN j.epochs_trained IS NULL OR j.epochs_trained >= {full} THEN 0 ELSE 1 END"
    board = board.replace(
        OLD_RANK, f"ORDER BY {at_full}, j.reward DESC, j.id) AS rank", 1
    )
    board = board.replace(
        "j.test_accuracy",
        f"j.test_accuracy, j.epochs_trained, j.rung, {full} AS full_epochs",
        1,
    )
    views["leaderboard"] = board
    return views


def _recreate(views: dict[str, str]) -> None:
    for name in views:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for name, sql in views.items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def upgrade() -> None:
    _recreate(view_sql())


def downgrade() -> None:
    _recreate(_previous_views())
