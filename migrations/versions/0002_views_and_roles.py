"""Views for people at a SQL prompt: leaderboard, level_summary, job_status, failed_jobs.

The same four views, with the same columns, on PostgreSQL and SQLite. Only the expression
that turns a cell's JSON into its readable line (``b1=sep3x3(c-1)+max3x3(c-2) | ...``, as
`shared.space.Cell.readable` prints it) differs: each backend has its own JSON functions.
The read-only role for analysts is not created here (roles belong to the whole PostgreSQL
cluster and need CREATEROLE): `pnas db grant-readonly ROLE` does it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

VIEWS = ("failed_jobs", "job_status", "level_summary", "leaderboard")


def _input_pg(expr: str) -> str:
    return f"CASE {expr} WHEN '-2' THEN 'c-2' WHEN '-1' THEN 'c-1' ELSE 'b' || (({expr})::int + 1) END"


def _input_sqlite(expr: str) -> str:
    return f"CASE {expr} WHEN -2 THEN 'c-2' WHEN -1 THEN 'c-1' ELSE 'b' || ({expr} + 1) END"


def readable_cell(dialect: str, column: str = "j.cell") -> str:
    """SQL for a cell's one-line form, e.g. ``b1=sep3x3(c-1)+max3x3(c-2) | b2=...``."""
    if dialect == "postgresql":
        part = (
            "'b' || t.n || '=' || (t.blk->>1) || '(' || " + _input_pg("t.blk->>0") + " || ')+' || "
            "(t.blk->>3) || '(' || " + _input_pg("t.blk->>2") + " || ')'"
        )
        return (
            f"(SELECT string_agg({part}, ' | ' ORDER BY t.n) "
            f"FROM json_array_elements({column}) WITH ORDINALITY AS t(blk, n))"
        )
    part = (
        "'b' || (e.key + 1) || '=' || json_extract(e.value, '$[1]') || '(' || "
        + _input_sqlite("json_extract(e.value, '$[0]')")
        + " || ')+' || json_extract(e.value, '$[3]') || '(' || "
        + _input_sqlite("json_extract(e.value, '$[2]')")
        + " || ')'"
    )
    # group_concat keeps the order of its (ordered) subquery on every SQLite we support.
    return (
        f"(SELECT group_concat(p, ' | ') FROM "
        f"(SELECT {part} AS p FROM json_each({column}) AS e ORDER BY e.key))"
    )


def view_sql(dialect: str) -> dict[str, str]:
    cell = readable_cell(dialect)
    return {
        # Succeeded search children, best first within each run; rank 1 = `pnas top`'s first.
        "leaderboard": f"""
            SELECT j.run_id, r.name AS run,
                   row_number() OVER (PARTITION BY j.run_id ORDER BY j.reward DESC, j.id) AS rank,
                   j.id AS job_id, j.level, j.arch_id, j.reward AS accuracy, j.predicted,
                   j.params, j.wall_seconds, {cell} AS cell, CAST(j.cell AS TEXT) AS cell_json,
                   j.finished_at
            FROM jobs j JOIN runs r ON r.id = j.run_id
            WHERE j.kind = 'search' AND j.state = 'succeeded'""",
        # One row per level of each run: what `pnas status` shows.
        "level_summary": """
            SELECT l.run_id, r.name AS run, l.b AS level, l.state, l.candidates,
                   COUNT(j.id) AS children,
                   SUM(CASE WHEN j.state = 'queued' THEN 1 ELSE 0 END) AS queued,
                   SUM(CASE WHEN j.state = 'running' THEN 1 ELSE 0 END) AS running,
                   SUM(CASE WHEN j.state = 'succeeded' THEN 1 ELSE 0 END) AS succeeded,
                   SUM(CASE WHEN j.state = 'failed' THEN 1 ELSE 0 END) AS failed,
                   SUM(CASE WHEN j.state = 'lost' THEN 1 ELSE 0 END) AS lost,
                   MAX(CASE WHEN j.state = 'succeeded' THEN j.reward END) AS best,
                   AVG(CASE WHEN j.state = 'succeeded' THEN j.reward END) AS mean,
                   l.spearman_extrapolation, l.spearman_insample, l.started_at, l.finished_at
            FROM levels l
            JOIN runs r ON r.id = l.run_id
            LEFT JOIN jobs j ON j.run_id = l.run_id AND j.level = l.b AND j.kind = 'search'
            GROUP BY l.id, l.run_id, r.name, l.b, l.state, l.candidates, l.spearman_extrapolation,
                     l.spearman_insample, l.started_at, l.finished_at""",
        # Every child job (search and final) with its state, attempts, worker and times.
        "job_status": """
            SELECT j.id AS job_id, j.run_id, r.name AS run, j.kind, j.level, j.arch_id, j.state,
                   j.attempts, j.max_attempts, j.worker, j.reward AS accuracy, j.params,
                   j.queued_at, j.started_at, j.finished_at, j.lease_until, j.wall_seconds, j.device
            FROM jobs j JOIN runs r ON r.id = j.run_id""",
        # Children that ended failed or lost, with the error class and message.
        "failed_jobs": f"""
            SELECT j.id AS job_id, j.run_id, r.name AS run, j.kind, j.level, j.arch_id, j.state,
                   j.attempts, j.max_attempts, j.error_class, j.error_message, j.worker,
                   j.finished_at, {cell} AS cell
            FROM jobs j JOIN runs r ON r.id = j.run_id
            WHERE j.state IN ('failed', 'lost')""",
    }


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name, sql in view_sql(dialect).items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def downgrade() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
