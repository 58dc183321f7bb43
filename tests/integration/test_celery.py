"""The Celery path against real services: PostgreSQL, Redis and `pnas worker` processes.

Workers run the instant fake trainer (``tests.fakes``), which logs each child it trains to the
end, so "trained exactly once" is checked by counting lines.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from controller.celery_executor import CeleryExecutor
from controller.search import Controller
from shared.config import build_config
from shared.queue import TASK_NAME
from shared.settings import Settings
from shared.store import Store
from tests.conftest import ROOT
from tests.integration.cluster import SMALL, ControllerThread, base_env, trained, wait_for

pytestmark = pytest.mark.integration


def config(**over):
    o = {**SMALL, **over}
    train = {"epochs": o.pop("epochs"), "dataset": o.pop("dataset")}
    cfg, _ = build_config(preset="quick", overrides={**o, "train": train})
    return cfg


def settings_for(db_url: str, broker_url: str) -> Settings:
    return Settings(
        database_url=db_url,
        broker_url=broker_url,
        lease_seconds=3,
        heartbeat_seconds=0.5,
        reconcile_seconds=2,
        poll_seconds=0.2,
        soft_shutdown_seconds=0,
    )


def controller(db_url: str, broker_url: str, name: str, **over):
    settings = settings_for(db_url, broker_url)
    store = Store(db_url)
    store.ensure_schema(auto_upgrade=True)
    ctl = Controller(store=store, executor=CeleryExecutor(settings), settings=settings)
    run = ctl.open_run(name=name, config=config(**over))
    return ctl, run, store


def search(ctl, run, timeout: float = 120) -> None:
    t = ControllerThread(ctl, run)
    t.start()
    t.finish(timeout)


def cli(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pnas.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def assert_each_trained_once(store: Store, run_id: int, tmp) -> None:
    jobs = store.jobs(run_id)
    assert jobs and all(j.state == "succeeded" for j in jobs), [(j.id, j.state, j.error_message) for j in jobs]
    counts = trained(tmp)
    assert {j.arch_id for j in jobs} == set(counts), "every child trained, nothing else"
    assert max(counts.values()) == 1, {a: n for a, n in counts.items() if n > 1}


# --- (a) a small search over two workers ------------------------------------------------
def test_search_over_two_workers_trains_every_child_once(pg_url, redis_url, make_workers, tmp_path):
    store = Store(pg_url)
    store.ensure_schema(auto_upgrade=True)
    workers = make_workers(pg_url, redis_url)
    names = workers.start(2, wait_store=store)
    env = base_env(db_url=pg_url, broker_url=redis_url, tmp=tmp_path)
    res = cli(
        ["search", "--executor", "celery", "--name", "two", "--strategy", "random", "--ops", "sep3x3,max3x3",
         "--blocks", "2", "--beam", "4", "--epochs", "1", "--dataset", "digits"],
        env, timeout=180,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "celery executor" in res.stderr
    run = store.require_run("two")
    assert run.state == "finished"
    assert_each_trained_once(store, run.id, tmp_path)
    jobs = store.jobs(run.id)
    assert len(jobs) == 10 + 4 and all(j.attempts == 1 for j in jobs)
    assert {j.worker for j in jobs} == set(names), "both workers trained children"

    st = cli(["status", "two", "--json"], env)
    assert st.returncode == 0, st.stderr
    doc = json.loads(st.stdout)
    assert doc["run"] == "two" and doc["state"] == "finished"
    assert [lv["b"] for lv in doc["levels"]] == [1, 2]
    assert doc["levels"][0]["jobs"] == {"queued": 0, "running": 0, "succeeded": 10, "failed": 0, "lost": 0, "cancelled": 0}
    assert {w["name"] for w in doc["workers"]} == set(names)
    assert all(w["device"] == "cpu (--gpu none)" for w in doc["workers"])
    human = cli(["status", "two"], env)
    assert human.returncode == 0 and "succeeded" in human.stdout and names[0] in human.stdout
    missing = cli(["status", "nope"], env)
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0 and "nope" in missing.stderr

    # the full-size training of the best cell is a job like any other: a worker takes it
    fin = cli(["final", "two", "--rank", "1", "--epochs", "1", "--n", "1", "--filters", "8", "--json"], env)
    assert fin.returncode == 0, fin.stderr
    job_id = json.loads(fin.stdout)["id"]
    final = wait_for(lambda: (j := store.job(job_id)) and j.state == "succeeded" and j, timeout=60, what="the final job")
    assert final.kind == "final" and final.level == 0 and final.train["epochs"] == 1
    assert final.arch_id == store.top(run.id, k=1)[0].arch_id and final.worker in names


# --- (b) SIGKILL in the middle of a child --------------------------------------------------
@pytest.mark.parametrize("target", ["pool_child", "whole_worker"])
def test_killed_worker_child_is_lost_requeued_and_succeeds(pg_url, redis_url, make_workers, tmp_path, target):
    ctl, run, store = controller(pg_url, redis_url, f"kill-{target}", blocks=1)
    workers = make_workers(pg_url, redis_url, PNAS_FAKE_SLEEP="0.1")
    (victim,) = workers.start(1, wait_store=store, PNAS_FAKE_SLEEP="2")
    workers.start(1, wait_store=store)
    t = ControllerThread(ctl, run)
    t.start()
    job = wait_for(
        lambda: next((j for j in store.jobs(run.id, states=["running"]) if j.worker == victim), None),
        timeout=60, what="a child running on the victim",
    )  # fmt: skip
    time.sleep(0.3)  # in the middle of the child
    if target == "pool_child":
        (child,) = workers.pool_children(victim)
        import os

        os.kill(child, signal.SIGKILL)
    else:
        workers.kill(victim)
    t.finish(timeout=120)
    after = store.job(job.id)
    assert after.state == "succeeded" and after.attempts == 2
    assert_each_trained_once(store, run.id, tmp_path)


def test_sigterm_hands_the_running_child_back(pg_url, redis_url, make_workers, tmp_path):
    """`docker stop` sends SIGTERM to the worker's main process: the child is handed back
    (its attempt not counted) and trained by another worker, not lost after a lease."""
    import os

    ctl, run, store = controller(pg_url, redis_url, "sigterm", blocks=1)
    workers = make_workers(pg_url, redis_url, PNAS_FAKE_SLEEP="0.1")
    (victim,) = workers.start(1, wait_store=store, PNAS_FAKE_SLEEP="3")
    (other,) = workers.start(1, wait_store=store)
    t = ControllerThread(ctl, run)
    t.start()
    job = wait_for(
        lambda: next((j for j in store.jobs(run.id, states=["running"]) if j.worker == victim), None),
        timeout=60, what="a child running on the victim",
    )  # fmt: skip
    os.kill(workers.procs[victim].pid, signal.SIGTERM)
    wait_for(lambda: workers.procs[victim].poll() is not None, timeout=30, what="the worker to exit")
    # the pool process handed the child back and re-sent its message before it exited (the
    # attempt is not counted); another worker trained it
    t.finish(timeout=120)
    after = store.job(job.id)
    assert after.state == "succeeded" and after.attempts == 1 and after.worker == other
    assert_each_trained_once(store, run.id, tmp_path)


# --- (c) the same message twice ----------------------------------------------------------
def test_a_message_delivered_twice_trains_the_child_once(pg_url, redis_url, make_workers, tmp_path):
    ctl, run, store = controller(pg_url, redis_url, "dup", blocks=1)
    (job_id, *_rest) = ctl._choose(run, config(blocks=1), config(blocks=1).space(), 1)[0]
    workers = make_workers(pg_url, redis_url, PNAS_FAKE_SLEEP="1")
    names = workers.start(2, wait_store=store)
    ex = CeleryExecutor(settings_for(pg_url, redis_url))
    ex.submit([job_id])
    ex.unsent.clear()
    ex.submit([job_id])  # a second message for the same job, as a redelivery would be
    ex.submit([job_id])
    wait_for(lambda: store.job(job_id).state == "succeeded", timeout=60, what="the child to succeed")
    wait_for(
        lambda: sum(log.count(" succeeded in ") for log in map(workers.log, names)) >= 3,
        timeout=30, what="all three messages to be consumed",
    )  # fmt: skip
    assert store.job(job_id).attempts == 1
    assert trained(tmp_path)[store.job(job_id).arch_id] == 1
    logs = "".join(map(workers.log, names))
    assert logs.count(f"job {job_id}: skipped") == 2


# --- (d) Redis and PostgreSQL restarted mid-run ------------------------------------------
def test_search_survives_a_redis_restart(pg_url, private_redis, make_workers, tmp_path):
    ctl, run, store = controller(pg_url, private_redis.url, "redis-restart")
    workers = make_workers(pg_url, private_redis.url, PNAS_FAKE_SLEEP="0.3")
    workers.start(2, wait_store=store)
    t = ControllerThread(ctl, run)
    t.start()
    wait_for(lambda: store.state_counts(run.id).get(1, {}).get("succeeded", 0) >= 2, timeout=60, what="2 children")
    private_redis.stop()  # no persistence: every queued message is gone
    time.sleep(2)
    private_redis.start()
    t.finish(timeout=150)
    assert ctl.executor.resent > 0, "reconcile re-sent the lost messages"
    assert_each_trained_once(store, run.id, tmp_path)


def test_search_survives_a_postgres_restart(private_pg, redis_url, make_workers, tmp_path):
    ctl, run, store = controller(private_pg.url, redis_url, "pg-restart")
    workers = make_workers(private_pg.url, redis_url, PNAS_FAKE_SLEEP="0.3")
    workers.start(2, wait_store=store)
    t = ControllerThread(ctl, run)
    t.start()
    wait_for(lambda: store.state_counts(run.id).get(1, {}).get("succeeded", 0) >= 2, timeout=60, what="2 children")
    private_pg.stop("fast")
    time.sleep(2)
    private_pg.start()
    t.finish(timeout=150)
    jobs = store.jobs(run.id)
    assert jobs and all(j.state == "succeeded" for j in jobs), [(j.id, j.state, j.error_message) for j in jobs]
    counts = trained(tmp_path)
    # A child whose result could not be written while the database was down may be trained
    # again after its lease expired; it is recorded once.
    assert {j.arch_id for j in jobs} == set(counts)


# --- (e) a child that raises; `pnas retry` --------------------------------------------------
def test_failed_child_keeps_its_error_and_retry_brings_it_back(pg_url, redis_url, make_workers, tmp_path):
    cfg = config(blocks=1)
    bad_arch = cfg.space().one_block_cells().ids([0])[0]
    ctl, run, store = controller(pg_url, redis_url, "fail", blocks=1)
    workers = make_workers(pg_url, redis_url, PNAS_FAKE_FAIL=bad_arch)
    (name,) = workers.start(1, wait_store=store)
    search(ctl, run)  # the level ends with one failure; the search goes on
    assert store.require_run(run.id).state == "finished"
    (bad,) = store.jobs(run.id, states=["failed"])
    assert bad.arch_id == bad_arch and bad.error_class == "RuntimeError"
    assert f"planted failure for {bad_arch}" in bad.error_message and "planted failure" in bad.log_tail
    ok = store.jobs(run.id, states=["succeeded"])
    assert len(ok) == 9 and {j.worker for j in ok} == {name}, "the worker kept serving"

    workers.stop_all()
    workers.start(1, wait_store=store, PNAS_FAKE_FAIL="")
    env = base_env(db_url=pg_url, broker_url=redis_url, tmp=tmp_path)
    dry = cli(["retry", "fail", "--state", "failed", "--dry-run"], env)
    assert dry.returncode == 0 and f"would requeue 1 child(ren): {bad.id}" in dry.stdout
    assert store.job(bad.id).state == "failed"
    res = cli(["retry", "fail", "--job", str(bad.id)], env)
    assert res.returncode == 0, res.stderr
    assert f"requeued 1 child(ren): {bad.id}" in res.stdout and "pnas search" in res.stdout
    assert store.require_run(run.id).state == "stopped"

    ctl2, run2, _ = controller(pg_url, redis_url, "fail", blocks=1)  # the same command again
    search(ctl2, run2)
    again = store.job(bad.id)
    assert again.state == "succeeded" and again.attempts == 2 and again.arch_id == bad_arch
    assert store.require_run(run.id).state == "finished"
    assert_each_trained_once(store, run.id, tmp_path)


# --- (f) malformed payloads and architectures ---------------------------------------------
def test_malformed_payloads_and_architectures_are_never_executed(pg_url, redis_url, make_workers, tmp_path):
    ctl, run, store = controller(pg_url, redis_url, "malformed", blocks=1)
    ids = store.add_jobs(
        run.id,
        level=1,
        children=[
            ("bad-op", [[-1, "conv9x9", -1, "sep3x3"]], None, None),  # an operator not in the space
            ("bad-shape", [[-1, "sep3x3"]], None, None),
            ("as-string", [[-1, "sep3x3", -1, "max3x3"]], None, None),
            ("pickled", [[-2, "sep3x3", -1, "max3x3"]], None, None),
        ],
        max_attempts=3,
    )
    bad_op, bad_shape, as_string, pickled = ids
    workers = make_workers(pg_url, redis_url)
    (name,) = workers.start(1, wait_store=store)
    ex = CeleryExecutor(settings_for(pg_url, redis_url))
    ex.submit([bad_op, bad_shape])
    ex.app.send_task(TASK_NAME, args=[str(as_string)], queue="pnas")  # a string id
    ex.app.send_task(TASK_NAME, args=[], kwargs={}, queue="pnas")  # no id at all
    ex.app.send_task(TASK_NAME, args=[True], queue="pnas")  # a bool is not an id
    ex.app.send_task(TASK_NAME, args=[pickled], queue="pnas", serializer="pickle")  # refused
    wait_for(
        lambda: {store.job(i).state for i in (bad_op, bad_shape, as_string)} == {"failed"},
        timeout=60, what="the malformed jobs to fail",
    )  # fmt: skip
    wait_for(lambda: workers.log(name).count("dropped") >= 3, timeout=30, what="the bad payloads to be dropped")
    for i in (bad_op, bad_shape):
        j = store.job(i)
        assert j.error_class == "invalid_job" and j.error_message.startswith("invalid job:")
    assert "conv9x9" in store.job(bad_op).error_message
    j = store.job(as_string)
    assert j.error_class == "invalid_payload" and "job id must be a positive integer" in j.error_message
    assert j.attempts == 0
    wait_for(lambda: "pickle" in workers.log(name).lower(), timeout=30, what="the pickled message to be refused")
    assert store.job(pickled).state == "queued" and store.job(pickled).attempts == 0
    assert trained(tmp_path) == {}, "nothing malformed reached the trainer"
    # the worker is still serving
    # a network none of the above is (the run holds each network once)
    (good,) = store.add_jobs(run.id, level=1, children=[("good", [[-1, "sep3x3", -1, "sep3x3"]], None, None)], max_attempts=3)
    ex.submit([good])
    wait_for(lambda: store.job(good).state == "succeeded", timeout=60, what="a good child after the bad ones")


# --- pnas worker refuses a GPU it cannot see ----------------------------------------------
def test_worker_fails_fast_when_a_gpu_is_asked_for_and_none_is_seen(pg_url, redis_url, tmp_path):
    Store(pg_url).ensure_schema(auto_upgrade=True)
    env = base_env(db_url=pg_url, broker_url=redis_url, tmp=tmp_path)
    res = cli(["worker", "--gpu", "0"], env, timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert "a GPU was asked for" in line and "TensorFlow sees none" in line
