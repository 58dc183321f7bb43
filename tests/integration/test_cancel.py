"""Stopping spends no more GPU time, against real PostgreSQL, Redis and `pnas worker`
processes (the instant trainer): an aborted run cancels its queued children, `pnas cancel`
stops running ones within a heartbeat, a dataset only the workers lack stops the run after
a few children, SIGTERM to a Celery controller stops it as Ctrl-C does; all resume."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from controller.celery_executor import CeleryExecutor
from controller.search import Controller
from shared.errors import SearchAborted, SearchCancelled
from shared.store import Store
from tests.conftest import ROOT
from tests.integration.cluster import ControllerThread, base_env, trained, wait_for
from tests.integration.test_celery import assert_each_trained_once, cli, config, settings_for

pytestmark = pytest.mark.integration

THREE_OPS = "sep3x3,max3x3,identity"  # 21 one-block cells: a level that takes a while


def _controller(db_url: str, broker_url: str, name: str, *, settings_over: dict | None = None, **over: object):
    settings = settings_for(db_url, broker_url).model_copy(update=settings_over or {})
    store = Store(db_url)
    store.ensure_schema(auto_upgrade=True)
    ctl = Controller(store=store, executor=CeleryExecutor(settings), settings=settings)
    return ctl, ctl.open_run(name=name, config=config(**over)), store


def _started_after(store: Store, run_id: int, t: object) -> list[int]:
    return [j.id for j in store.jobs(run_id) if j.started_at is not None and j.started_at > t]


def test_an_aborted_run_trains_no_more_children(pg_url, redis_url, make_workers, tmp_path) -> None:
    ctl, run, store = _controller(pg_url, redis_url, "abort", settings_over={"max_consecutive_failures": 3}, ops=THREE_OPS)
    workers = make_workers(pg_url, redis_url, PNAS_FAKE_FAIL_ALL="1")
    workers.start(2, wait_store=store)
    t = ControllerThread(ctl, run)
    t.start()
    t.join(120)
    assert isinstance(t.error, SearchAborted) and "failed in a row" in str(t.error)
    aborted = store.require_run(run.id)
    assert aborted.state == "aborted"
    time.sleep(3.0)  # the workers go on consuming the run's messages: each must be dropped
    jobs = store.jobs(run.id)
    assert not [j.id for j in jobs if j.state in ("queued", "running")]
    cancelled = [j for j in jobs if j.state == "cancelled"]
    assert len(cancelled) >= 10, "the queued children of the aborted run were cancelled"
    assert _started_after(store, run.id, aborted.finished_at) == [], "a child started after the abort"
    # never tried, or tried before the abort (a child running at that moment is stopped and cancelled too)
    assert all(j.attempts == 0 or j.started_at <= aborted.finished_at for j in cancelled)
    assert sum(j.attempts == 0 for j in cancelled) >= 9, "the queued children were cancelled untried"


def test_cancel_stops_running_children_within_a_heartbeat_and_resume_finishes(
    pg_url, redis_url, make_workers, tmp_path
) -> None:
    # a lease long enough that a loaded machine loses no child; the heartbeat stays short
    long_lease = {"lease_seconds": 15.0}
    ctl, run, store = _controller(pg_url, redis_url, "cancel", settings_over=long_lease, ops=THREE_OPS)
    slow = make_workers(pg_url, redis_url, PNAS_FAKE_SLEEP="60", PNAS_HEARTBEAT_SECONDS="0.5", PNAS_LEASE_SECONDS="15")
    names = slow.start(2, wait_store=store)
    t = ControllerThread(ctl, run)
    t.start()
    wait_for(lambda: len(store.jobs(run.id, states=["running"])) == 2, timeout=60, what="two running children")
    env = base_env(db_url=pg_url, broker_url=redis_url, tmp=tmp_path)
    one = store.job_ids(run.id, states=["queued"])[-1]
    res = cli(["cancel", "cancel", "--job", str(one)], env)
    assert res.returncode == 0 and "cancelled 1 queued child(ren): " + str(one) in res.stdout, res.stdout + res.stderr
    assert store.job(one).state == "cancelled"
    dry = cli(["cancel", "cancel", "--level", "1", "--dry-run"], env)
    assert dry.returncode == 0 and "would cancel 18 queued" in dry.stdout and "would ask" in dry.stdout, dry.stdout
    # the rest through the store (what `pnas cancel` calls), timed on the database clock
    at = store.db_now()
    done = store.cancel(run.id)
    assert len(done.cancelled) == 18 and len(done.stopping) == 2, done
    wait_for(lambda: not store.jobs(run.id, states=["running", "queued"]), timeout=30, what="every child to stop")
    t.join(60)
    assert isinstance(t.error, SearchCancelled), t.error
    assert store.require_run(run.id).state == "cancelled", "until it is resumed"
    jobs = store.jobs(run.id)
    assert all(j.state == "cancelled" for j in jobs), [(j.id, j.state) for j in jobs]
    stopped = [j for j in jobs if j.attempts == 1]
    assert len(stopped) == 2
    for j in stopped:  # ended by its worker within about one heartbeat (0.5 s) of the cancel
        assert j.finished_at - at < timedelta(seconds=4), j.finished_at - at
    assert all(w["job_id"] is None for w in store.workers() if w["name"] in names), "the workers are free"
    time.sleep(2.0)  # the cancelled children's messages reach the workers: they are dropped
    assert not trained(tmp_path), "no child trained to the end after the cancel"
    assert _started_after(store, run.id, at) == []
    assert all(j.state == "cancelled" for j in store.jobs(run.id))
    slow.stop_all()

    # the same search resumes: what was cancelled is requeued (identity kept) and trained once
    fast = make_workers(pg_url, redis_url)
    fast.start(2, wait_store=store)
    ctl2, run2, _ = _controller(pg_url, redis_url, "cancel", settings_over=long_lease, ops=THREE_OPS)
    t2 = ControllerThread(ctl2, run2)
    t2.start()
    t2.finish(180)
    assert store.require_run(run.id).state == "finished"
    assert_each_trained_once(store, run.id, tmp_path)
    assert {j.id for j in store.jobs(run.id, level=1)} == {j.id for j in jobs}


def test_a_dataset_only_the_workers_lack_stops_the_run_after_a_few_children(
    pg_url, redis_url, make_workers, tmp_path
) -> None:
    missing = tmp_path / "mounted-on-workers-only" / "data.npz"
    ctl, run, store = _controller(pg_url, redis_url, "dataset", ops=THREE_OPS, dataset=f"npz:{missing}")
    workers = make_workers(pg_url, redis_url, PNAS_FAKE_LOAD_DATASET="1")
    workers.start(2, wait_store=store)
    t = ControllerThread(ctl, run)
    t.start()
    t.join(120)
    assert isinstance(t.error, SearchAborted), t.error
    assert "could not load the dataset" in str(t.error) and str(missing) in str(t.error)
    failed = [j for j in store.jobs(run.id) if j.state == "failed"]
    assert 3 <= len(failed) < 10, "stopped after the first few (PNAS_MAX_DATASET_FAILURES=3), not ten"
    first = min(failed, key=lambda j: j.finished_at)
    assert first.error_class == "dataset" and "dataset" in first.error_message.split(":")[1], first.error_message
    time.sleep(2.0)
    assert not store.jobs(run.id, states=["queued", "running"])
    assert len(store.jobs(run.id, states=["cancelled"])) >= 10


def test_sigterm_stops_a_celery_search_as_ctrl_c_does(pg_url, redis_url, make_workers, tmp_path) -> None:
    store = Store(pg_url)
    store.ensure_schema(auto_upgrade=True)
    workers = make_workers(pg_url, redis_url, PNAS_FAKE_SLEEP="0.5")
    workers.start(2, wait_store=store)
    env = base_env(db_url=pg_url, broker_url=redis_url, tmp=tmp_path)
    args = [sys.executable, "-m", "pnas.cli", "search", "--executor", "celery", "--name", "term", "--strategy", "random",
            "--ops", "sep3x3,max3x3", "--blocks", "2", "--beam", "4", "--epochs", "1", "--dataset", "digits"]  # fmt: skip
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(
        lambda: (r := store.get_run("term")) and store.state_counts(r.id).get(1, {}).get("succeeded", 0) >= 2,
        timeout=90, what="two children",
    )  # fmt: skip
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "stopped; run the same command to resume" in err
    run = store.require_run("term")
    assert run.state == "stopped"
    with store.engine.connect() as conn:
        from sqlalchemy import text

        assert conn.execute(text("SELECT lock_owner FROM runs WHERE id = :i"), {"i": run.id}).scalar() is None
    again = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr[-2000:]
    assert_each_trained_once(store, run.id, tmp_path)
