"""A child cancelled while its worker still imports the trainer (TensorFlow: seconds) stops at
once, not after the import."""

from __future__ import annotations

import threading
import time

from shared.settings import Settings
from tests.worker.test_checkpoint_owners import database_with_one_child
from worker.runner import run_job

IMPORT_SECONDS = 30.0


def test_a_cancel_during_the_trainers_import_stops_the_child_at_once(sqlite_url, monkeypatch):
    monkeypatch.setenv("PNAS_TEST_IMPORT_SECONDS", str(IMPORT_SECONDS))
    store, run_id, job_id = database_with_one_child(sqlite_url)
    settings = Settings(database_url=sqlite_url, trainer="tests.slow_import_trainer:train", heartbeat_seconds=0.2)
    outcome = []
    t0 = time.monotonic()
    worker = threading.Thread(target=lambda: outcome.append(run_job(store, job_id, settings=settings)), daemon=True)
    worker.start()
    deadline = time.monotonic() + 60
    while store.job(job_id).state != "running":
        assert time.monotonic() < deadline, "the child was never claimed"
        time.sleep(0.05)
    assert store.cancel(run_id).stopping == [job_id]
    worker.join(IMPORT_SECONDS - 5)
    assert outcome and outcome[0].state == "cancelled", outcome
    assert time.monotonic() - t0 < IMPORT_SECONDS - 5, "stopped before the import ended"
    assert store.job(job_id).state == "cancelled"
    store.dispose()
