"""A Celery worker that exits says so at once (issue 23): after SIGTERM it is offline in the
store, not "live, idle" until its heartbeat is a lease old."""

from __future__ import annotations

import signal

from shared.store import Store
from shared.store.registry import worker_state
from tests.integration.cluster import wait_for


def test_a_celery_worker_stopped_with_sigterm_is_offline_at_once(pg_url, redis_url, make_workers) -> None:
    store = Store(pg_url)
    store.ensure_schema(auto_upgrade=True)
    workers = make_workers(pg_url, redis_url, PNAS_LEASE_SECONDS="600")  # only the exit can make it offline
    (name,) = workers.start(1, wait_store=store)

    def state() -> str:
        (w,) = [w for w in store.workers() if w["name"] == name]
        return worker_state(w, lease=600)

    assert state() == "idle"
    workers.kill(name, signal.SIGTERM)
    assert workers.procs[name].wait(timeout=60) == 0
    wait_for(lambda: state() == "offline", timeout=5, what="the exited worker to be offline")
    store.dispose()
