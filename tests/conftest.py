"""Fixtures shared by every test: databases (SQLite and the real PostgreSQL) and settings."""

from __future__ import annotations

import hashlib
import os
import signal
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]


def checkout_names(root: Path) -> tuple[str, int]:
    """This checkout's own PostgreSQL database and Redis database number (1-15), from a hash
    of its path, so two checkouts on one machine do not empty each other's (scripts/services.sh
    computes the same name)."""
    tag = hashlib.sha1(str(root).encode()).hexdigest()[:8]
    return f"pnas_test_{tag}", 1 + int(tag, 16) % 15


def worker_redis_url(url: str, worker: str | None) -> str:
    """The Redis database of one pytest-xdist process (scripts/test.sh runs the tests in two):
    gwK uses the checkout's number plus K (within 1-15), so no process empties another's."""
    k = int(worker[2:]) if worker and worker.startswith("gw") and worker[2:].isdigit() else 0
    u = urlsplit(url)
    if k == 0 or not u.path.strip("/").isdigit():
        return url
    return urlunsplit(u._replace(path=f"/{1 + (int(u.path.strip('/')) - 1 + k) % 15}"))


_DB_NAME, _REDIS_DB = checkout_names(ROOT)
PG_URL = os.environ.get("PNAS_TEST_PG_URL", f"postgresql://postgres@127.0.0.1:5432/{_DB_NAME}")
REDIS_URL = worker_redis_url(os.environ.get("PNAS_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{_REDIS_DB}"),
                             os.environ.get("PYTEST_XDIST_WORKER"))  # fmt: skip

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# A test run started in the background by a non-interactive shell (`nohup ... &`) inherits
# SIGINT ignored, and so would every `pnas search` it starts: the Ctrl-C tests need it delivered.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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
