"""The store's contract, run on SQLite and on PostgreSQL alike (the `store` fixture)."""

from __future__ import annotations

import threading
import time

import pytest

from shared.errors import UserError
from shared.jobs import EpochMetrics, TrainResult
from shared.logtails import sections
from shared.space import SearchSpace

RESULT = TrainResult(reward=0.9, reward_epoch=2, history=[], params=123, wall_seconds=1.5, device="cpu")


def _run(store, name="r"):
    run, created = store.create_run(name=name, config={"seed": 0}, seed=0)
    return run


_ONE_BLOCK = SearchSpace().one_block_cells()


def _cell(i):
    """The i-th one-block cell: a different network for every i (a run holds each once)."""
    return _ONE_BLOCK.cell(i).to_list()


def _jobs(store, run, n=3, level=1, max_attempts=3, first=0):
    """n queued children, the one-block cells first..first+n-1 (distinct `first`s: distinct networks)."""
    return store.add_jobs(
        run.id, level=level, children=[(f"{level}-{i:04x}", _cell(first + i), 0.5, i + 1) for i in range(n)],
        max_attempts=max_attempts,
    )


def test_runs_are_created_once(store):
    a, created_a = store.create_run(name="x", config={"k": 1}, seed=3)
    b, created_b = store.create_run(name="x", config={"k": 2}, seed=4)
    assert created_a and not created_b and a.id == b.id and b.config == {"k": 1}
    assert store.get_run("x").seed == 3 and store.get_run(a.id).name == "x"
    assert store.get_run().name == "x" and store.get_run("nope") is None
    with pytest.raises(UserError, match="no run named"):
        store.require_run("nope")


def test_add_jobs_is_idempotent(store):
    run = _run(store)
    ids = _jobs(store, run, 3)
    again = _jobs(store, run, 5)
    assert again[:3] == ids and len(set(again)) == 5
    assert len(store.job_ids(run.id)) == 5
    assert store.state_counts(run.id) == {1: {"queued": 5, "running": 0, "succeeded": 0, "failed": 0, "lost": 0, "cancelled": 0}}


def test_claim_is_exclusive_even_when_racing(store):
    run = _run(store)
    (job,) = _jobs(store, run, 1)
    results = []
    barrier = threading.Barrier(4)

    def worker(i):
        barrier.wait()
        results.append(store.claim(job, worker=f"w{i}", lease_seconds=60))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=lambda x: x is None) == [1, None, None, None]


def test_claim_next_hands_out_each_job_once(store):
    run = _run(store)
    ids = _jobs(store, run, 4)
    got = []
    while (c := store.claim_next(worker="w", lease_seconds=60, run_id=run.id)) is not None:
        got.append(c)
    assert sorted(j for j, _ in got) == ids and all(a == 1 for _, a in got)


def test_fenced_writes_reject_a_stale_attempt(store):
    run = _run(store)
    (job,) = _jobs(store, run, 1)
    assert store.claim(job, worker="old", lease_seconds=0.2) == 1
    time.sleep(0.5)
    assert store.sweep_expired(run.id) == [job]
    assert store.requeue_lost(run.id) == [job]
    assert store.claim(job, worker="new", lease_seconds=60) == 2
    # the old worker comes back: every write it tries is refused
    m = EpochMetrics(epoch=1, loss=1.0, accuracy=0.5, val_loss=1.0, val_accuracy=0.5, seconds=1.0)
    assert store.heartbeat(job, attempt=1, worker="old", lease_seconds=60) is False
    assert store.add_epoch(job, attempt=1, metrics=m) is False
    assert store.finish(job, attempt=1, result=RESULT) is False
    assert store.fail(job, attempt=1, error_class="x", message="y") is False
    # the new one succeeds, once
    assert store.add_epoch(job, attempt=2, metrics=m) is True
    assert store.finish(job, attempt=2, result=RESULT) is True
    assert store.finish(job, attempt=2, result=RESULT) is False
    j = store.job(job)
    assert (j.state, j.attempts, j.reward, j.params, j.worker) == ("succeeded", 2, 0.9, 123, "new")
    assert [e["attempt"] for e in store.epochs(job)] == [2]
    assert j.test_accuracy is None  # not measured


def test_test_accuracy_is_stored_with_the_result_and_shown_by_the_views(store):
    from sqlalchemy import text

    run = _run(store)
    a, b = _jobs(store, run, 2)
    for job, test in ((a, 0.875), (b, None)):
        att = store.claim(job, worker="w", lease_seconds=60)
        result = TrainResult(reward=0.9, reward_epoch=1, history=[], params=1, wall_seconds=1.0, device="cpu",
                             test_accuracy=test)
        assert store.finish(job, attempt=att, result=result)
    assert (store.job(a).test_accuracy, store.job(b).test_accuracy) == (0.875, None)
    with store.engine.connect() as c:
        board = dict(c.execute(text("SELECT job_id, test_accuracy FROM leaderboard")).all())
        status = dict(c.execute(text("SELECT job_id, test_accuracy FROM job_status")).all())
    assert board == status == {a: 0.875, b: None}


def test_retryable_failures_requeue_until_attempts_run_out(store):
    run = _run(store)
    (job,) = _jobs(store, run, 1, max_attempts=2)
    a = store.claim(job, worker="w", lease_seconds=60)
    assert store.fail(job, attempt=a, error_class="retryable", message="oom", retryable=True)
    assert store.job(job).state == "queued"
    a = store.claim(job, worker="w", lease_seconds=60)
    assert a == 2
    assert store.fail(job, attempt=a, error_class="retryable", message="oom again", retryable=True)
    j = store.job(job)
    assert (j.state, j.error_message) == ("failed", "oom again")
    assert store.claim(job, worker="w", lease_seconds=60) is None


def test_lost_jobs_stay_lost_when_out_of_attempts(store):
    run = _run(store)
    (job,) = _jobs(store, run, 1, max_attempts=1)
    store.claim(job, worker="w", lease_seconds=0.1)
    time.sleep(0.3)
    assert store.sweep_expired() == [job]
    assert store.requeue_lost() == []
    p = store.level_progress(run.id, 1)
    assert p["counts"]["lost"] == 1 and p["requeueable"] == 0


def test_a_lost_attempt_is_labelled_in_the_log_tail(store):
    run = _run(store)
    (job,) = _jobs(store, run, 1, max_attempts=2)
    store.claim(job, worker="w-gone", lease_seconds=0.1)
    time.sleep(0.3)
    assert store.sweep_expired() == [job] and store.requeue_lost() == [job]
    a = store.claim(job, worker="w", lease_seconds=60)
    result = TrainResult(reward=0.5, reward_epoch=1, history=[], params=1, wall_seconds=1.0, device="cpu")
    assert store.finish(job, attempt=a, result=result, log_tail="fine")
    got = [(s.label, s.text) for s in sections(store.job(job).log_tail)]
    assert got == [("attempt 1: lost (worker w-gone stopped renewing its lease)", ""),
                   ("attempt 2: succeeded (accuracy 0.5000)", "fine")]  # fmt: skip


def test_final_failure_keeps_error_and_log(store):
    run = _run(store)
    (job,) = _jobs(store, run, 1)
    a = store.claim(job, worker="w", lease_seconds=60)
    assert store.fail(job, attempt=a, error_class="final", message="NaN loss", log_tail="x" * 10)
    j = store.job(job)
    assert (j.state, j.error_class, j.error_message) == ("failed", "final", "NaN loss")
    assert [(s.label, s.text) for s in sections(j.log_tail)] == [("attempt 1: failed (final: NaN loss)", "x" * 10)]
    assert store.consecutive_failures(run.id) == 1


def test_each_attempt_keeps_its_own_log_tail_labelled(store):
    """A child that failed and then succeeded shows both tails, each under its attempt, the
    successful one last (not attempt 1's traceback as if it were the child's log)."""
    run = _run(store)
    (job,) = _jobs(store, run, 1, max_attempts=3)
    a = store.claim(job, worker="w", lease_seconds=60)
    assert store.fail(job, attempt=a, error_class="retryable", message="OOM", log_tail="Traceback: OOM", retryable=True)
    a = store.claim(job, worker="w", lease_seconds=60)
    result = TrainResult(reward=0.91, reward_epoch=1, history=[], params=1, wall_seconds=1.0, device="cpu")
    assert store.finish(job, attempt=a, result=result, log_tail="epoch 1: val 0.91")
    got = [(s.attempt, s.label, s.text) for s in sections(store.job(job).log_tail)]
    assert got == [(1, "attempt 1: failed, to be retried (retryable: OOM)", "Traceback: OOM"),
                   (2, "attempt 2: succeeded (accuracy 0.9100)", "epoch 1: val 0.91")]  # fmt: skip


def test_retry_puts_children_back_with_identity(store):
    run = _run(store)
    ids = _jobs(store, run, 3, max_attempts=1)
    for j in ids[:2]:
        a = store.claim(j, worker="w", lease_seconds=60)
        store.fail(j, attempt=a, error_class="final", message="boom")
    assert store.retry(run.id, dry_run=True) == ids[:2]
    assert store.job(ids[0]).state == "failed"
    assert store.retry(run.id, job_ids=[ids[1]]) == [ids[1]]
    j = store.job(ids[1])
    assert (j.state, j.arch_id, j.level, j.attempts) == ("queued", "1-0001", 1, 1)
    assert store.claim(ids[1], worker="w", lease_seconds=60) == 2
    with pytest.raises(UserError):
        store.retry(run.id, states=["succeeded"])


def test_hand_back_does_not_count_the_attempt(store):
    run = _run(store)
    (job,) = _jobs(store, run, 1)
    a = store.claim(job, worker="w", lease_seconds=60)
    assert store.hand_back(job, attempt=a) is True
    j = store.job(job)
    assert (j.state, j.attempts) == ("queued", 0)


def test_reject_fails_a_queued_job(store):
    run = _run(store)
    (job,) = _jobs(store, run, 1)
    assert store.reject(job, error_class="invalid_job", message="bad cell") is True
    assert store.job(job).state == "failed"
    assert store.claim(job, worker="w", lease_seconds=60) is None


def test_levels_and_predictor_blob(store):
    run = _run(store)
    lv = store.start_level(run.id, 1, candidates=136)
    assert store.start_level(run.id, 1, candidates=999).id == lv.id
    store.finish_level(run.id, 1, predictor=b"\x00weights", spearman_extrapolation=None, spearman_insample=0.8)
    assert store.latest_predictor(run.id) == (1, b"\x00weights")
    (got,) = store.levels(run.id)
    assert (got.state, got.candidates, got.spearman_insample) == ("done", 136, 0.8)
    assert store.get_run(run.id).level == 1
    store.save_predictions(run.id, 1, [("aa", [[1]], 0.9, 1), ("bb", [[2]], 0.8, 2)])
    assert [p["arch_id"] for p in store.predictions(run.id, 1)] == ["aa", "bb"]


def test_run_lock(store):
    run = _run(store)
    assert store.acquire_run_lock(run.id, owner="a", ttl_seconds=0.3) is None
    assert store.acquire_run_lock(run.id, owner="b", ttl_seconds=5) == "a"
    assert store.acquire_run_lock(run.id, owner="a", ttl_seconds=0.3) is None  # renew
    time.sleep(0.5)
    assert store.acquire_run_lock(run.id, owner="b", ttl_seconds=5) is None  # expired: taken over
    store.release_run_lock(run.id, owner="b")
    assert store.acquire_run_lock(run.id, owner="c", ttl_seconds=5) is None


def test_rewards_top_and_workers(store):
    run = _run(store)
    ids = _jobs(store, run, 3)
    for i, j in enumerate(ids):
        a = store.claim(j, worker=f"w{i}", lease_seconds=60)
        store.finish(j, attempt=a, result=TrainResult(0.1 * (i + 1), 1, [], 1, 1.0, "cpu"))
    assert [round(r, 2) for _, _, r in store.rewards(run.id)] == [0.1, 0.2, 0.3]
    assert [j.id for j in store.top(run.id, k=2)] == [ids[2], ids[1]]
    names = {w["name"] for w in store.workers()}
    assert {"w0", "w1", "w2"} <= names
    store.register_worker("gpu-1", hostname="h", device="GPU:0")
    w = [w for w in store.workers() if w["name"] == "gpu-1"][0]
    assert w["device"] == "GPU:0" and w["seconds_ago"] < 5


def test_postgres_refuses_an_old_schema(pg_url):
    from shared.store import Store

    s = Store(pg_url)
    with pytest.raises(UserError, match="pnas db upgrade"):
        s.ensure_schema()
    s.upgrade()
    s.ensure_schema()
    s.dispose()


def test_sqlite_is_created_automatically(sqlite_url):
    from shared.store import Store

    s = Store(sqlite_url)
    s.ensure_schema()
    assert s.schema_revision()[0] == s.schema_revision()[1]
    s.dispose()


def test_migrations_match_the_models(db_url):
    """The Alembic migrations create exactly what the ORM models describe."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from shared.db.models import Base
    from shared.store import Store

    s = Store(db_url)
    s.upgrade()
    with s.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    s.dispose()
    assert diff == []


def test_extend_leases_saves_running_children_after_an_outage(store):
    run = _run(store)
    a, b = _jobs(store, run, 2)
    store.claim(a, worker="w", lease_seconds=0.2)
    time.sleep(0.4)  # the lease ran out while the database was away
    assert store.extend_leases(run.id, lease_seconds=60) == 1
    assert store.sweep_expired(run.id) == []
    assert store.job(a).state == "running" and store.job(b).state == "queued"
