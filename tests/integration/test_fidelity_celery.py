"""The README's multi-fidelity search on Celery workers, under a fault: `pnas search --executor
celery --fidelity asha --min-epochs 1 --reduction-factor 2 --epochs 4` over two real `pnas
worker` processes (instant trainer with learning curves, PostgreSQL, Redis); the worker that
trains a promoted child (rung >= 1) is SIGKILLed mid-rung, the other finishes the run, and
every rung of every child is trained and counted once (`tests.asha_checks`)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.store import Store
from tests.asha_checks import check_finished
from tests.conftest import ROOT
from tests.integration.cluster import base_env

pytestmark = pytest.mark.integration
ASHA = ["--fidelity", "asha", "--min-epochs", "1", "--reduction-factor", "2", "--epochs", "4"]
# random: the faults are the executor's and the promoter's, not the predictor's (no TensorFlow start)
SMALL = ["--strategy", "random", "--ops", "sep3x3,max3x3", "--blocks", "2", "--beam", "4", "--dataset", "digits"]


def test_a_celery_worker_killed_while_training_a_promoted_child_loses_nothing(pg_url, redis_url, make_workers, tmp_path: Path) -> None:  # fmt: skip
    store = Store(pg_url)
    store.ensure_schema(auto_upgrade=True)
    ck = str(tmp_path / "ck")
    # 2 s a child at 4 epochs: 0.5 s an epoch, so a promoted rung runs long enough to be caught
    workers = make_workers(pg_url, redis_url, PNAS_FAKE_SLEEP="2", PNAS_CHECKPOINT_URL=ck)
    names = workers.start(2, wait_store=store)
    env = base_env(db_url=pg_url, broker_url=redis_url, tmp=tmp_path, PNAS_CHECKPOINT_URL=ck)
    log = tmp_path / "search.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pnas.cli", "search", "--executor", "celery", "--name", "t", *SMALL, *ASHA],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline, victim = time.monotonic() + 120, None
        while victim is None:  # poll the store: which worker trains which child is up to them
            assert time.monotonic() < deadline, "no promoted child started on a worker"
            assert proc.poll() is None, log.read_text()[-3000:]
            run, now = store.get_run("t"), store.db_now()
            for j in store.jobs(run.id, states=["running"]) if run else []:
                # just claimed (a rung trains >= 0.5 s): the kill lands before it can finish
                if j.rung >= 1 and j.worker in names and j.started_at and (now - j.started_at).total_seconds() < 0.3:
                    victim = j
            time.sleep(0.02)
        workers.kill(victim.worker)  # the whole worker: its main process and its pool child
        survivor = next(n for n in names if n != victim.worker)
        assert proc.wait(timeout=180) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "lost child(ren)" in text, text[-3000:]  # the controller saw the lease run out and requeued it
    j = store.job(victim.id)
    assert f"=== attempt {victim.attempts}: lost" in (j.log_tail or ""), j.log_tail  # killed mid-rung, not after it
    later = j.rung - victim.rung  # promoted again since
    assert j.attempts == victim.attempts + 1 + later, "the lost attempt counts once"
    assert j.worker == survivor
    # the next attempt continued from the checkpoint of the rung the child had completed
    rung_start = (1, 2, 4)[victim.rung - 1]
    redone = [e["epoch"] for e in store.epochs(j.id) if e["attempt"] == victim.attempts + 1]
    assert redone and min(redone) > rung_start, redone
    check_finished(store, tmp_path)
    store.dispose()
