"""The SQL views return what the commands print; the README's queries run as printed; the
read-only role can read and cannot write."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import ProgrammingError

from shared.store import pg_url
from tests.conftest import ROOT

QUERIES = ROOT / "docs" / "queries.sql"


def ready_queries() -> list[tuple[str, str]]:
    """(title, SQL) of every query in docs/queries.sql (each follows a ``-- name:`` line)."""
    out = []
    for block in re.split(r"^-- name: ", QUERIES.read_text(), flags=re.M)[1:]:
        title, sql = block.split("\n", 1)
        out.append((title.strip(), sql.strip()))
    return out


def rows(url: str, sql: str, **params) -> list[dict]:
    engine = create_engine(pg_url(url))
    try:
        with engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(text(sql), params)]
    finally:
        engine.dispose()


def test_leaderboard_view_is_pnas_top(finished):
    """The real entry point (a subprocess) against the view, on both backends."""
    p = subprocess.run([sys.executable, "-m", "pnas.cli", "top", "t", "-k", "5", "--json"], cwd=ROOT,
                       env=finished.env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stderr
    top = json.loads(p.stdout)
    view = rows(finished.url, "SELECT * FROM leaderboard WHERE run = 't' ORDER BY rank LIMIT 5")
    assert [(v["rank"], v["job_id"], v["level"], v["arch_id"], v["params"], v["epochs_trained"]) for v in view] == [
        (t["rank"], t["id"], t["level"], t["arch_id"], t["params"], t["epochs"]) for t in top
    ]
    assert {v["full_epochs"] for v in view} == {2} and {v["rung"] for v in view} == {0}  # full fidelity: one rung
    assert [v["accuracy"] for v in view] == pytest.approx([t["accuracy"] for t in top])
    assert [v["cell"] for v in view] == [t["cell"] for t in top]  # the readable line, built in SQL
    assert [json.loads(v["cell_json"]) for v in view] == [t["cell_json"] for t in top]


def test_level_summary_view_is_pnas_status(cli, finished):
    st = json.loads(cli("status", "t", "--json")[1])
    view = rows(finished.url, "SELECT * FROM level_summary WHERE run = 't' ORDER BY level")
    assert [v["level"] for v in view] == [lv["b"] for lv in st["levels"]]
    for v, lv in zip(view, st["levels"]):
        assert {s: int(v[s]) for s in lv["jobs"]} == lv["jobs"]
        assert (v["state"], v["candidates"], int(v["children"])) == (lv["state"], lv["candidates"], lv["children"])
        assert v["best"] == pytest.approx(lv["best"]) and float(v["mean"]) == pytest.approx(lv["mean"])
        assert v["spearman_extrapolation"] == lv["spearman_extrapolation"]


def test_job_status_and_failed_jobs_views(cli, finished):
    from shared.store import Store

    store = Store(finished.url)
    run = store.require_run("t")
    jobs = {j.id: j for j in store.jobs(run.id, kind=None)}
    store.dispose()
    view = rows(finished.url, "SELECT * FROM job_status WHERE run = 't'")
    assert {v["job_id"]: (v["state"], v["attempts"], v["kind"]) for v in view} == {
        i: (j.state, j.attempts, j.kind) for i, j in jobs.items()
    }
    failed = rows(finished.url, "SELECT * FROM failed_jobs WHERE run = 't'")
    assert len(failed) == 1
    f = failed[0]
    shown = json.loads(cli("show", str(f["job_id"]), "--json")[1])
    assert (f["error_class"], f["error_message"], f["cell"]) == (shown["error_class"], shown["error_message"], shown["cell"])
    assert f["error_class"] == "RuntimeError" and "planted failure" in f["error_message"]


def test_the_readme_queries_run_as_printed_on_postgresql(finished_runs):
    url = finished_runs["postgresql"].url
    queries = ready_queries()
    assert len(queries) >= 5
    for title, sql in queries:
        assert sql.endswith(";") and ";" not in sql[:-1], f"{title}: one statement per query"
        try:
            result = rows(url, sql)
        except Exception as exc:  # name the query that broke
            pytest.fail(f"query {title!r} failed: {exc}")
        if title.startswith(("leaderboard", "progress per level", "every run", "failures", "operators")):
            assert result, f"query {title!r} returned nothing on a finished run"


def test_grant_readonly_role_reads_and_cannot_write(finished_runs, monkeypatch):
    f = finished_runs["postgresql"]
    role = f"pnas_ro_{uuid.uuid4().hex[:8]}"
    env = {**f.env, "PNAS_TEST_RO_PASSWORD": "s3cret'quote"}
    p = subprocess.run([sys.executable, "-m", "pnas.cli", "db", "grant-readonly", role, "--password-env",
                        "PNAS_TEST_RO_PASSWORD"], cwd=ROOT, env=env, capture_output=True, text=True)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "s3cret" not in p.stdout and f"CREATE ROLE {role} LOGIN" in p.stdout
    engine = create_engine(pg_url(f.url))
    try:
        with engine.connect() as c:
            c.execute(text(f"SET ROLE {role}"))
            assert c.execute(text("SELECT count(*) FROM leaderboard")).scalar() > 0
            assert c.execute(text("SELECT count(*) FROM jobs")).scalar() > 0
            with pytest.raises(ProgrammingError, match="permission denied"):
                c.execute(text("DELETE FROM jobs"))
            c.rollback()
        with engine.connect() as c:  # roles outlive databases: drop it
            c.execute(text(f"DROP OWNED BY {role}"))
            c.execute(text(f"DROP ROLE {role}"))
            c.commit()
    finally:
        engine.dispose()
    bad = subprocess.run([sys.executable, "-m", "pnas.cli", "db", "grant-readonly", "Robert'); DROP"], cwd=ROOT,
                         env=f.env, capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


VIEW_NAMES = ("leaderboard", "level_summary", "job_status", "failed_jobs")


def test_the_same_views_with_the_same_columns_on_both_backends(finished_runs):
    columns = {}
    for backend, f in finished_runs.items():
        engine = create_engine(pg_url(f.url))
        with engine.connect() as c:
            columns[backend] = {v: list(c.execute(text(f"SELECT * FROM {v} LIMIT 0")).keys()) for v in VIEW_NAMES}
        engine.dispose()
    assert columns["sqlite"] == columns["postgresql"]


def test_views_migration_downgrades_and_upgrades(db_url):
    from alembic import command
    from sqlalchemy import inspect

    from shared.store import Store

    s = Store(db_url)
    s.upgrade()
    assert set(VIEW_NAMES) <= set(inspect(s.engine).get_view_names())
    command.downgrade(s._alembic_config(), "0012_fidelity")  # 0013's leaderboard columns go, the view stays
    with s.engine.connect() as c:
        columns = list(c.execute(text("SELECT * FROM leaderboard LIMIT 0")).keys())
    assert "test_accuracy" in columns and not {"epochs_trained", "rung", "full_epochs"} & set(columns)
    command.downgrade(s._alembic_config(), "0001")
    assert not set(VIEW_NAMES) & set(inspect(s.engine).get_view_names())
    s.upgrade()
    assert set(VIEW_NAMES) <= set(inspect(s.engine).get_view_names())
    s.dispose()
