"""`pnas worker`'s log is the worker's own: without --verbose it carries neither TensorFlow's
CUDA probing lines (printed by every pool child that imports TensorFlow) nor Celery's warning
about running as root (as containers do); with --verbose both are there."""

from __future__ import annotations

import json
import os
import signal

import pytest

from shared.store import Store
from tests.integration.cluster import base_env, wait_for
from tests.integration.test_celery import cli

pytestmark = pytest.mark.integration


def test_worker_log_is_quiet_unless_verbose(pg_url, redis_url, make_workers, tmp_path):
    store = Store(pg_url)
    store.ensure_schema(auto_upgrade=True)
    workers = make_workers(pg_url, redis_url, PNAS_FAKE_NOISE="1")
    env = base_env(db_url=pg_url, broker_url=redis_url, tmp=tmp_path)
    (quiet,) = workers.start(1, wait_store=store)
    res = cli(["search", "--executor", "celery", "--name", "noise", "--strategy", "random", "--ops", "sep3x3,max3x3",
               "--blocks", "1", "--beam", "2", "--epochs", "1", "--dataset", "digits"], env, timeout=240)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    run = store.require_run("noise")
    assert {j.worker for j in store.jobs(run.id)} == {quiet}
    workers.kill(quiet, signal.SIGTERM)
    wait_for(lambda: workers.procs[quiet].poll() is not None, timeout=60, what="the quiet worker to stop")
    log = workers.log(quiet)
    assert "ready." in log and "succeeded" in log, log[-3000:]  # its own lines pass
    assert "cuInit" not in log and "gpu_device.cc" not in log, log[-3000:]
    assert "superuser" not in log, log[-3000:]

    (loud,) = workers.start(1, wait_store=store, args=("--verbose",))
    fin = cli(["final", "noise", "--rank", "1", "--epochs", "1", "--n", "1", "--filters", "8", "--json"], env)
    assert fin.returncode == 0, fin.stderr
    job_id = json.loads(fin.stdout)["id"]
    wait_for(lambda: store.job(job_id).state == "succeeded", timeout=120, what="the final training")
    wait_for(lambda: "cuInit" in workers.log(loud), timeout=30, what="the TensorFlow lines in the verbose log")
    if os.geteuid() == 0:
        assert "superuser" in workers.log(loud)
    store.dispose()
