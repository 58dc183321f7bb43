"""`pnas search` with Celery asks a worker to load the dataset before a new run's first child
is sent: a dataset no worker has stops the search in one line, exit 2, nothing stored or
queued; with no worker up it says it is waiting, and goes on once one answers.

Real `pnas search` and `pnas worker` processes, real PostgreSQL and Redis.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis

from shared.store import Store
from tests.conftest import ROOT
from tests.integration.cluster import base_env, wait_for
from tests.integration.test_celery import cli

pytestmark = pytest.mark.integration

SEARCH = ["search", "--executor", "celery", "--strategy", "random", "--ops", "sep3x3,max3x3", "--blocks", "1",
          "--beam", "2", "--epochs", "1"]  # fmt: skip


def queued(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return client.llen("pnas") + client.hlen("unacked")
    finally:
        client.close()


def test_a_dataset_the_worker_lacks_stops_the_search_before_anything_is_queued(pg_url, redis_url, make_workers, tmp_path):
    store = Store(pg_url)
    store.ensure_schema(auto_upgrade=True)
    empty = tmp_path / "empty-cache"
    workers = make_workers(pg_url, redis_url, PNAS_OFFLINE="1", PNAS_DATA_DIR=str(empty))
    (name,) = workers.start(1, wait_store=store)
    env = base_env(db_url=pg_url, broker_url=redis_url, tmp=tmp_path, PNAS_OFFLINE="1", PNAS_DATA_DIR=str(empty))
    missing = tmp_path / "only-on-a-laptop.npz"
    for dataset, says in ((f"npz:{missing}", f"npz file {missing} does not exist"), ("cifar10", str(empty))):
        res = cli([*SEARCH, "--dataset", dataset, "--name", "probe"], env, timeout=180)
        assert res.returncode == 2, res.stdout + res.stderr
        last = res.stderr.strip().splitlines()[-1]
        assert says in last and f"worker {name} on host" in last and "nothing was queued" in last, res.stderr
        assert "Traceback" not in res.stderr
        assert store.get_run("probe") is None and queued(redis_url) == 0
    assert workers.procs[name].poll() is None


def test_with_no_worker_the_search_waits_visibly_then_a_worker_checks_and_it_runs(pg_url, redis_url, make_workers, tmp_path):
    store = Store(pg_url)
    store.ensure_schema(auto_upgrade=True)
    env = base_env(db_url=pg_url, broker_url=redis_url, tmp=tmp_path, PNAS_DATASET_CHECK_SECONDS="1")
    log = open(tmp_path / "search.log", "w")
    search = subprocess.Popen(
        [sys.executable, "-m", "pnas.cli", *SEARCH, "--dataset", "digits", "--name", "waits"],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        out = lambda: (tmp_path / "search.log").read_text()  # noqa: E731
        wait_for(lambda: "waiting for a worker to check dataset digits" in out(), timeout=120, what="the waiting line")
        assert store.get_run("waits") is None, "no run before a worker checked the dataset"
        workers = make_workers(pg_url, redis_url)
        (name,) = workers.start(1)
        assert search.wait(timeout=240) == 0, out()
        assert f"dataset digits checked by worker {name} on host" in out()
        assert store.require_run("waits").state == "finished"
    finally:
        if search.poll() is None:
            search.kill()
            search.wait(timeout=30)
