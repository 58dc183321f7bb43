"""Fixtures for tests against real PostgreSQL, Redis and `celery worker` processes."""

from __future__ import annotations

import pytest

from tests.conftest import REDIS_URL
from tests.integration.cluster import PrivatePostgres, PrivateRedis, Workers, base_env, redis_or_fail


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def redis_url() -> str:
    """The shared Redis, in its own database number, emptied first."""
    client = redis_or_fail(REDIS_URL)
    try:
        client.flushdb()
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
