"""A worker that took a child's message and died before claiming it (its host switched off):
Redis keeps the message "unacked" until the visibility timeout (hours), so the controller's
reconcile must count it as gone once it is older than a lease, and send the child again.

Real Redis; the message is delivered by Celery's own Redis transport (kombu), not faked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from controller.celery_executor import CeleryExecutor
from shared.settings import Settings
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

TAKER = """
import sys, time
from kombu import Connection
with Connection(sys.argv[1]) as conn:
    q = conn.SimpleQueue("pnas-reconcile", no_ack=False)
    m = q.get(timeout=10)
    print("took", m.payload[0], flush=True)
    time.sleep(600)
"""


def test_a_message_taken_by_a_dead_worker_is_resent_after_a_lease(redis_url) -> None:
    settings = Settings(database_url="sqlite://", broker_url=redis_url, queue="pnas-reconcile", lease_seconds=2)
    ex = CeleryExecutor(settings)
    ex.submit([41, 42])
    # A process takes the message of child 41 without acknowledging it, and is SIGKILLed.
    taker = subprocess.Popen(
        [sys.executable, "-c", TAKER, redis_url], stdout=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True
    )
    try:
        assert taker.stdout.readline().strip() == "took [41]"
    finally:
        os.killpg(taker.pid, signal.SIGKILL)
        taker.wait(timeout=30)
    # Fresh: in the unacked set, so present (a live worker may be about to claim it).
    assert ex._missing({41, 42}) == set()
    time.sleep(2.5)  # more than a lease since the delivery: its worker is gone
    assert ex._missing({41, 42}) == {41}
    sent_before = ex.resent
    ex.sent_at.clear()  # "sent long ago"
    assert ex.reconcile([41, 42]) == [41] and ex.resent == sent_before + 1
    # 42 never left the queue: it is not sent twice.
    assert ex._missing({42}) == set()


def test_a_child_that_finished_while_reconcile_looked_is_not_resent(redis_url) -> None:
    """The controller read child 43 as queued; a worker then took its message, trained it and
    acknowledged it before the broker was looked at. Only ids still queued when read again
    after the look are resent."""
    settings = Settings(database_url="sqlite://", broker_url=redis_url, queue="pnas-reconcile-race", lease_seconds=60)
    ex = CeleryExecutor(settings)
    ex.submit([43])
    from kombu import Connection

    with Connection(redis_url) as conn:  # the worker: take the message, then acknowledge it
        q = conn.SimpleQueue("pnas-reconcile-race", no_ack=False)
        m = q.get(timeout=10)
        assert m.payload[0] == [43]
        m.ack()
        q.close()
    ex.sent_at.clear()  # "sent long ago"
    stale = [43]  # what the controller read before the worker finished it
    assert ex.reconcile(stale, recheck=lambda: []) == [], "it is no longer queued: not resent"
    assert ex.resent == 0
    assert ex.reconcile(stale) == [43], "without the second read, the race resends it"
    with Connection(redis_url) as conn:  # the resent message: nobody will take it
        conn.SimpleQueue("pnas-reconcile-race").clear()
