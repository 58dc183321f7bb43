"""A lost child resumes where it stopped: a real `pnas worker` (Celery, PostgreSQL, Redis, the
real trainer on digits) is SIGKILLed mid-child; the next attempt starts after the last
checkpoint, on a directory and on an S3 server (moto's server mode, started here)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import s3fs

from controller.celery_executor import CeleryExecutor
from shared.config import build_config
from shared.jobs import TrainResult
from shared.space import Cell
from shared.store import Store
from tests.integration.cluster import base_env, free_port, wait_for
from tests.integration.test_celery import settings_for
from worker.checkpoints import CheckpointStore

pytestmark = pytest.mark.integration
EPOCHS = 5


def _one_child(store: Store, name: str) -> tuple[int, int]:
    cfg, _ = build_config(preset="quick", overrides={"train": {"epochs": EPOCHS, "checkpoint_every": 1,
                                                               "cells_per_stage": 1, "filters": 8}})  # fmt: skip
    run, _ = store.create_run(name=name, config=cfg.model_dump(mode="json"), seed=0)
    cell = Cell.of([[-1, "sep3x3", -2, "max3x3"]], cfg.ops)
    (job_id,) = store.add_jobs(run.id, level=1, children=[(cell.arch_id, cell.to_list(), None, None)], max_attempts=3)
    return run.id, job_id


@pytest.fixture
def s3_env(tmp_path):
    port = free_port()
    log = open(tmp_path / "moto.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}  # fmt: skip
    try:
        import urllib.request

        import boto3

        wait_for(lambda: urllib.request.urlopen(env["AWS_ENDPOINT_URL"], timeout=1), timeout=30, what="moto server")
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                     aws_access_key_id="test", aws_secret_access_key="test").create_bucket(Bucket="pnas-kill")  # fmt: skip
        yield env
    finally:
        proc.kill()
        proc.wait(timeout=10)
        # fsspec keeps one S3FileSystem per set of arguments, bound to this server's endpoint:
        # a later test's server must not be reached through it
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.mark.parametrize("where", ["dir", "s3"])
def test_a_killed_child_resumes_after_its_last_checkpoint(where, pg_url, redis_url, make_workers, tmp_path, request, monkeypatch):
    extra = {"PNAS_TRAINER": "worker.training:train_child", "PNAS_DETERMINISTIC": "1", "PNAS_LEASE_SECONDS": "4"}
    if where == "s3":
        env = request.getfixturevalue("s3_env")
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        extra.update(env, PNAS_CHECKPOINT_URL="s3://pnas-kill/pnas")
    else:
        extra["PNAS_CHECKPOINT_URL"] = str(tmp_path / "ck")
    store = Store(pg_url)
    store.ensure_schema(auto_upgrade=True)
    ck = CheckpointStore(extra["PNAS_CHECKPOINT_URL"], database=store.database_identity())
    run_id, job_id = _one_child(store, f"ck-{where}")
    ex = CeleryExecutor(settings_for(pg_url, redis_url))
    workers = make_workers(pg_url, redis_url, **extra)
    (w1,) = workers.start(1, wait_store=store)
    ex.submit([job_id])
    # wait for the checkpoint of epoch 2, then kill the worker with its pool
    wait_for(lambda: any(e >= 2 for _a, e, _p in ck.checkpoints(run_id, job_id)), timeout=240, what="checkpoint of epoch 2")
    workers.kill(w1)
    done = max(e for a, e, _p in ck.checkpoints(run_id, job_id) if a == 1)
    assert done < EPOCHS, "killed before the end"
    wait_for(lambda: store.sweep_expired(run_id) or store.job(job_id).state == "lost", timeout=30, what="the lease to expire")
    assert store.requeue_lost(run_id) == [job_id]
    workers.start(1, wait_store=store)
    ex.submit([job_id])
    wait_for(lambda: store.job(job_id).state in ("succeeded", "failed"), timeout=240, what="the second attempt")
    j = store.job(job_id)
    assert j.state == "succeeded", (j.error_class, j.error_message, j.log_tail)
    assert j.attempts == 2 and j.resumed_epoch == done
    rows = store.epochs(job_id)
    second = sorted(r["epoch"] for r in rows if r["attempt"] == 2)
    assert second == list(range(done + 1, EPOCHS + 1)), "the second attempt trains only the epochs after the checkpoint"
    assert {r["epoch"] for r in rows if r["attempt"] == 1} >= set(range(1, done + 1)), "both attempts' rows are kept"
    best = max([r for r in rows if r["attempt"] == 2] + [r for r in rows if r["attempt"] == 1 and r["epoch"] <= done],
               key=lambda r: r["val_accuracy"])  # fmt: skip
    assert j.reward == pytest.approx(best["val_accuracy"]), "the reward is the best epoch over the resumed history"
    # The worker removes them right after it records the success, not before (a success it
    # cannot record leaves them to the attempt that owns the job): wait for it, briefly.
    wait_for(lambda: ck.checkpoints(run_id, job_id) == [], timeout=30, what="the checkpoints of both attempts to go")

    # The same child, same seed, trained without interruption through the same worker path
    # (CPU, deterministic ops): the resumed child trained exactly as it did.
    _ref_run, ref_id = _one_child(store, f"ck-{where}-uninterrupted")
    ex.submit([ref_id])
    wait_for(lambda: store.job(ref_id).state in ("succeeded", "failed"), timeout=240, what="the uninterrupted child")
    ex.stop()
    ref = store.job(ref_id)
    assert ref.state == "succeeded" and ref.attempts == 1 and ref.resumed_epoch is None, ref.error_message
    metrics = ("loss", "accuracy", "val_loss", "val_accuracy")
    resumed = [tuple(r[k] for k in metrics) for r in rows if r["attempt"] == 2 or (r["attempt"] == 1 and r["epoch"] <= done)]
    uninterrupted = [tuple(r[k] for k in metrics) for r in store.epochs(ref_id)]
    assert resumed == uninterrupted, "every epoch's metrics equal those of the uninterrupted training"
    assert j.reward == ref.reward


def test_a_killed_final_training_resumes_when_asked_again(pg_url, tmp_path):
    """`pnas final RUN --run-now` SIGKILLed after a checkpoint; the same command again (once the
    lease ran out) trains the same job from the epoch after that checkpoint."""
    store = Store(pg_url)
    store.ensure_schema(auto_upgrade=True)
    run_id, search_id = _one_child(store, "ck-final")
    attempt = store.claim(search_id, worker="test", lease_seconds=60)
    assert attempt and store.finish(search_id, attempt=attempt, result=TrainResult(
        reward=0.5, reward_epoch=1, history=[], params=1, wall_seconds=1.0, device="cpu"))  # fmt: skip
    url = str(tmp_path / "ck")
    env = base_env(db_url=pg_url, broker_url="", tmp=tmp_path, PNAS_TRAINER="worker.training:train_child",
                   PNAS_DETERMINISTIC="1", PNAS_CHECKPOINT_URL=url)  # fmt: skip
    env.pop("PNAS_BROKER_URL")  # the embedded default: --run-now trains in the command's process
    cmd = [sys.executable, "-m", "pnas.cli", "final", "ck-final", "--run-now", "--epochs", "6", "--n", "1",
           "--filters", "8", "--json"]  # fmt: skip

    def start(i: int) -> subprocess.Popen:
        log = open(tmp_path / f"final{i}.log", "w")
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip

    ck = CheckpointStore(url, database=store.database_identity())
    first = start(1)
    try:
        fid = wait_for(lambda: store.job_ids(run_id, kind="final"), timeout=120, what="the final job")[0]
        wait_for(lambda: ck.checkpoints(run_id, fid), timeout=240, what="a checkpoint of the final training")
        os.killpg(first.pid, signal.SIGKILL)
    finally:
        first.kill()
        first.wait(timeout=30)
    done = max(e for _a, e, _p in ck.checkpoints(run_id, fid))
    assert done < 6 and store.job(fid).state == "running", "killed before the end, while it held the job"
    wait_for(lambda: store.job(fid).lease_until < store.db_now(), timeout=30, what="the killed training's lease to run out")
    second = start(2)
    try:
        assert second.wait(timeout=300) == 0, (tmp_path / "final2.log").read_text()
    finally:
        second.kill()
    said = (tmp_path / "final2.log").read_text()
    path = f"{ck.job_dir(run_id, fid)}/a1-e{done:05d}.ckpt"
    assert f"training it again from its checkpoint of epoch {done} ({path})" in said, said
    assert f"resumed from the checkpoint of epoch {done} ({path})" in said, said
    j = store.job(fid)
    assert (j.state, j.kind, j.attempts, j.resumed_epoch) == ("succeeded", "final", 2, done)
    rows = store.epochs(fid)
    assert [r["epoch"] for r in rows if r["attempt"] == 2] == list(range(done + 1, 7)), "only the epochs after it"
    assert ck.checkpoints(run_id, fid) == [] and ck.fs.exists(f"{ck.job_dir(run_id, fid)}/final.ckpt")
