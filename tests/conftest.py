"""Fixtures shared by every test: databases (SQLite and the real PostgreSQL) and settings."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("PNAS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/pnas_test")
REDIS_URL = os.environ.get("PNAS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _pg_admin_url() -> str:
    from shared.store import pg_url

    return pg_url(PG_URL.rsplit("/", 1)[0] + "/postgres")


def fresh_pg_database() -> str:
    """A new, empty PostgreSQL database for one test; dropped at the end of the session."""
    name = f"pnas_t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # a clear failure, never a silent skip
        pytest.fail(
            f"PostgreSQL is needed at {PG_URL} (set PNAS_TEST_PG_URL); scripts/services.sh starts it: {exc}",
            pytrace=False,
        )
    finally:
        admin.dispose()
    _CREATED.append(name)
    return PG_URL.rsplit("/", 1)[0] + "/" + name


_CREATED: list[str] = []


def pytest_sessionfinish(session, exitstatus):
    if not _CREATED:
        return
    admin = create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        for name in _CREATED:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'pnas.db'}"


@pytest.fixture
def pg_url() -> str:
    return fresh_pg_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """Run the test once on SQLite and once on PostgreSQL: one contract, two backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pnas.db'}"
    return fresh_pg_database()


@pytest.fixture
def store(db_url):
    from shared.store import Store

    s = Store(db_url)
    s.ensure_schema(auto_upgrade=True)
    yield s
    s.dispose()
