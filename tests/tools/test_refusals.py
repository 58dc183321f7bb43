"""Commands that must refuse in one line, before they do anything: a worker whose database role
cannot write, a dashboard or a schema command pointed at a database that is not there."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from shared.store import pg_url
from tests.conftest import PG_URL, REDIS_URL, ROOT, fresh_pg_database
from tests.fakes import fake_search_env


def pnas(env: dict, *args: str, cwd: Path | str = ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pnas.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def one_line_error(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    return lines[0]


@pytest.fixture
def readonly_url():
    """A fresh PostgreSQL database with the pnas schema, and the URL of a role that may only read it."""
    url = fresh_pg_database()
    env = fake_search_env(url)
    assert pnas(env, "db", "upgrade").returncode == 0
    role = f"pnas_ro_{uuid.uuid4().hex[:8]}"
    assert pnas(env, "db", "grant-readonly", role).returncode == 0
    host, db = url.split("@", 1)[1].rsplit("/", 1)
    yield f"postgresql://{role}@{host}/{db}"
    engine = create_engine(pg_url(url))
    with engine.connect() as c:  # roles outlive databases: drop it
        c.execute(text(f"DROP OWNED BY {role}"))
        c.execute(text(f"DROP ROLE {role}"))
        c.commit()
    engine.dispose()


def test_a_worker_whose_role_cannot_write_refuses_to_start(readonly_url):
    env = fake_search_env(readonly_url, PNAS_BROKER_URL=REDIS_URL)
    line = one_line_error(pnas(env, "worker", "--gpu", "none", timeout=90))
    role = readonly_url.split("//", 1)[1].split("@", 1)[0]
    assert f"the database role {role!r} cannot write what a worker records" in line
    assert "UPDATE on jobs" in line and "INSERT on epochs" in line and f"TO {role}" in line


def test_a_missing_postgresql_database_is_one_line_saying_how_to_create_it():
    name = f"pnas_absent_{uuid.uuid4().hex[:8]}"
    env = fake_search_env(PG_URL.rsplit("/", 1)[0] + "/" + name)
    for cmd in (("db", "upgrade"), ("db", "current")):
        line = one_line_error(pnas(env, *cmd))
        assert f"the PostgreSQL database {name!r} does not exist" in line
        assert f"createdb -h 127.0.0.1 -p 5432 -U postgres {name}`" in line and f'CREATE DATABASE "{name}"' in line


def test_the_dashboard_refuses_a_database_that_is_not_there(tmp_path):
    """As `pnas status` and the other commands that only look: exit 1, one line, nothing made."""
    for extra in ({}, {"PNAS_DASHBOARD_DATABASE_URL": f"sqlite:///{tmp_path / 'reader.db'}"}):
        env = fake_search_env(f"sqlite:///{tmp_path / 'pnas.db'}", **extra)
        p = pnas(env, "dashboard", "--port", "18399", cwd=tmp_path, timeout=60)
        assert p.returncode == 1 and p.stderr.count("\n") == 1, (p.returncode, p.stderr)
        assert p.stderr.startswith(f"no database at {tmp_path / ('reader.db' if extra else 'pnas.db')}"), p.stderr
        assert os.listdir(tmp_path) == [], "nothing was created"


def test_a_broker_that_does_not_answer_leaves_no_run_behind(tmp_path):
    url = f"sqlite:///{tmp_path / 'pnas.db'}"
    env = fake_search_env(url, PNAS_BROKER_URL="redis://127.0.0.1:1/0")
    line = one_line_error(pnas(env, "search", "--preset", "quick", "--dataset", "digits", "--name", "b", cwd=tmp_path))
    # the first to ask the broker is the dataset check a worker answers (issue 22), before any run exists
    assert "cannot reach the broker at redis://127.0.0.1:1" in line
    from shared.store import Store

    store = Store(url)
    assert store.list_runs() == [], "no empty run behind"
    store.dispose()


@pytest.mark.parametrize("args, expect", [
    (("show", "abc"), "Invalid value for 'ID'"),
    (("show",), "Missing argument 'ID'"),
    (("runs", "--bogus"), "No such option: --bogus"),
    (("db", "nosuch"), "No such command 'nosuch'"),
])  # fmt: skip
def test_a_bad_argument_or_flag_is_one_line(args, expect, tmp_path):
    line = one_line_error(pnas(fake_search_env(f"sqlite:///{tmp_path / 'pnas.db'}"), *args, cwd=tmp_path))
    assert expect in line and f"`pnas {' '.join(args[:-1] if args[0] == 'db' else args[:1])} --help`" in line
