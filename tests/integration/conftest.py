"""Fixtures for tests against real PostgreSQL, Redis and `celery worker` processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REDIS_URL, ROOT
from tests.integration.cluster import PrivatePostgres, PrivateRedis, Workers, base_env, redis_or_fail


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


OWNER_KEY = "pnas-tests:checkout"  # which checkout's tests use this Redis database


@pytest.fixture
def redis_url() -> str:
    """The shared Redis, in this checkout's own database number, emptied first; a database
    another checkout's tests hold (a hash collision) is a clear failure, never emptied."""
    client = redis_or_fail(REDIS_URL)
    try:
        owner = client.get(OWNER_KEY)
        # held by another checkout's tests; one whose folder is gone (a removed clone) holds nothing
        if owner is not None and owner.decode() != str(ROOT) and Path(owner.decode()).exists():
            pytest.fail(f"{REDIS_URL} is in use by the tests of {owner.decode()}; set PNAS_TEST_REDIS_URL to "
                        "another database number", pytrace=False)  # fmt: skip
        client.flushdb()
        client.set(OWNER_KEY, str(ROOT), ex=3600)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def private_redis(tmp_path):
    r = PrivateRedis(tmp_path)
    r.start()
    yield r
    r.stop()


@pytest.fixture
def private_pg():
    pg = PrivatePostgres()
    try:
        pg.init()
    except Exception as exc:
        pg.destroy()
        pytest.fail(f"could not start a private PostgreSQL: {exc}", pytrace=False)
    yield pg
    pg.destroy()


@pytest.fixture
def make_workers(tmp_path):
    """make_workers(db_url, broker_url, **env) -> Workers; every process is killed at teardown."""
    made: list[Workers] = []

    def make(db_url: str, broker_url: str, **env: str) -> Workers:
        w = Workers(base_env(db_url=db_url, broker_url=broker_url, tmp=tmp_path, **env), tmp_path)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop_all()
