"""Cancelling children in the store, on SQLite and PostgreSQL (the `store` fixture)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from shared.jobs import ALL_STATES, JobState, Lease, RunState
from tests.shared.test_store import RESULT, _jobs, _run


def test_cancel_ends_queued_children_and_asks_running_ones_to_stop(store) -> None:
    run = _run(store)
    a, b, c = _jobs(store, run, n=3)
    assert store.claim(a, worker="w", lease_seconds=60) == 1
    dry = store.cancel(run.id, dry_run=True)
    assert (dry.cancelled, dry.stopping) == ([b, c], [a])
    assert store.job(b).state == JobState.queued  # a dry run changes nothing

    done = store.cancel(run.id)
    assert (done.cancelled, done.stopping) == ([b, c], [a])
    assert store.job(b).state == JobState.cancelled and store.job(b).error_class == "cancelled"
    # the claim refuses a cancelled job: a worker that gets its message drops it
    assert store.claim(b, worker="w2", lease_seconds=60) is None
    assert store.claim_next(worker="w2", lease_seconds=60, run_id=run.id) is None
    # the running one is asked, at its heartbeat, to stop; then it records the cancel
    job = store.job(a)
    assert job.state == JobState.running and job.stop_requested
    assert store.renew(a, attempt=1, worker="w", lease_seconds=60) == Lease.stop
    assert store.heartbeat(a, attempt=1, worker="w", lease_seconds=60) is True  # still ours
    assert store.end_cancelled(a, attempt=1) is True
    assert store.job(a).state == JobState.cancelled
    assert store.renew(a, attempt=1, worker="w", lease_seconds=60) == Lease.gone
    assert store.finish(a, attempt=1, result=RESULT) is False  # fenced: a late result is dropped


def test_cancel_narrows_to_a_level_and_job_ids(store) -> None:
    run = _run(store)
    one = _jobs(store, run, n=2, level=1)
    two = _jobs(store, run, n=2, level=2, first=2)
    assert store.cancel(run.id, level=2).cancelled == two
    assert store.cancel(run.id, job_ids=[one[1]]).cancelled == [one[1]]
    assert store.job(one[0]).state == JobState.queued
    assert store.cancel(run.id, job_ids=[one[1]]).cancelled == []  # nothing left to cancel there


def test_cancelled_children_are_counted_everywhere(store) -> None:
    assert "cancelled" in ALL_STATES
    run = _run(store)
    ids = _jobs(store, run, n=3)
    store.cancel(run.id, job_ids=ids[:2])
    assert store.state_counts(run.id)[1]["cancelled"] == 2
    assert store.level_progress(run.id, 1)["counts"]["cancelled"] == 2
    summary = [r for r in store.run_summaries() if r["run"].id == run.id][0]
    assert summary["jobs"]["cancelled"] == 2 and summary["jobs"]["queued"] == 1
    store.start_level(run.id, 1, candidates=3)
    with store.engine.connect() as conn:
        row = conn.execute(text("SELECT cancelled, queued FROM level_summary WHERE run_id = :r"), {"r": run.id}).one()
        assert tuple(row) == (2, 1)
        flags = conn.execute(text("SELECT stop_requested FROM job_status WHERE run_id = :r"), {"r": run.id}).all()
        assert len(flags) == 3


def test_abort_cancels_the_rest_of_the_run_in_one_step(store) -> None:
    run = _run(store)
    a, b, c = _jobs(store, run, n=3)
    store.claim(a, worker="w", lease_seconds=60)
    done = store.abort_run(run.id, message="3 children failed in a row")
    assert (done.cancelled, done.stopping) == ([b, c], [a])
    r = store.require_run(run.id)
    assert r.state == RunState.aborted and r.message == "3 children failed in a row"


def test_resume_requeues_cancelled_children_with_fresh_attempts(store) -> None:
    run = _run(store)
    a, b = _jobs(store, run, n=2, max_attempts=1)
    store.claim(a, worker="w", lease_seconds=60)
    store.cancel(run.id)
    assert store.end_cancelled(a, attempt=1)
    assert store.requeue_cancelled(run.id, max_attempts=2) == [a, b]
    job = store.job(a)
    assert job.state == JobState.queued and job.max_attempts == 3 and not job.stop_requested
    assert store.claim(a, worker="w", lease_seconds=60) == 2  # the same job, a new attempt


def test_a_stopped_child_whose_worker_died_ends_cancelled_not_lost(store) -> None:
    run = _run(store)
    (a,) = _jobs(store, run, n=1)
    store.claim(a, worker="w", lease_seconds=0.01)
    store.cancel(run.id)
    import time

    time.sleep(0.05)
    assert store.sweep_expired(run.id) == []
    assert store.job(a).state == JobState.cancelled
    assert store.requeue_lost(run.id) == []


@pytest.mark.parametrize("state", ["succeeded", "failed"])
def test_cancel_leaves_ended_children_alone(store, state: str) -> None:
    run = _run(store)
    (a,) = _jobs(store, run, n=1, max_attempts=1)
    store.claim(a, worker="w", lease_seconds=60)
    if state == "succeeded":
        store.finish(a, attempt=1, result=RESULT)
    else:
        store.fail(a, attempt=1, error_class="final", message="x")
    done = store.cancel(run.id)
    assert (done.cancelled, done.stopping) == ([], [])
    assert store.job(a).state == state


@pytest.mark.parametrize("end", ["failed", "retryable", "succeeded"])
def test_a_stop_asked_of_a_child_that_ends_otherwise_is_cleared(store, end) -> None:
    run = _run(store)
    (a,) = _jobs(store, run, n=1)
    assert store.claim(a, worker="w", lease_seconds=60) == 1
    assert store.cancel(run.id).stopping == [a] and store.job(a).stop_requested
    if end == "succeeded":
        assert store.finish(a, attempt=1, result=RESULT)
    else:
        assert store.fail(a, attempt=1, error_class="x", message="boom", retryable=end == "retryable")
    job = store.job(a)
    assert job.state == ("queued" if end == "retryable" else end) and not job.stop_requested
