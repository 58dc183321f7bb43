"""Two databases (SQLite and PostgreSQL) on one machine and one checkpoint root: both count
runs and jobs from 1, and still neither resumes from nor removes the other's checkpoints;
neither touches the layout before database identities (``ROOT/run-R``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from shared.config import build_config
from shared.jobs import TrainResult
from shared.settings import Settings
from shared.space import Cell
from shared.store import Store
from tests.conftest import ROOT
from tests.fakes import fake_search_env
from worker.checkpoints import CheckpointStore, ChildCheckpoints, encode
from worker.runner import run_job

IDENT = {"arch_id": "owners"}


def database_with_one_child(url: str) -> tuple[Store, int, int]:
    store = Store(url)
    store.ensure_schema(auto_upgrade=True)
    cfg, _ = build_config(preset="quick", overrides={"train": {"epochs": 3, "checkpoint_every": 1}})
    run, _ = store.create_run(name="r", config=cfg.model_dump(mode="json"), seed=0)
    cell = Cell.of([[-1, "sep3x3", -2, "max3x3"]], cfg.ops)
    (job_id,) = store.add_jobs(run.id, level=1, children=[(cell.arch_id, cell.to_list(), None, None)], max_attempts=3)
    return store, run.id, job_id


def _blob(epoch: int) -> bytes:
    return encode(epoch, IDENT, [np.full(3, float(epoch))], [], [])


@pytest.fixture
def two(sqlite_url, pg_url, tmp_path):
    a, run_a, job_a = database_with_one_child(sqlite_url)
    b, run_b, job_b = database_with_one_child(pg_url)
    assert (run_a, job_a) == (run_b, job_b), "the ids collide: only the database's identity tells them apart"
    assert a.database_identity() != b.database_identity()
    root = str(tmp_path / "ck")
    yield root, (a, sqlite_url), (b, pg_url), run_a, job_a
    a.dispose()
    b.dispose()


def test_the_identity_is_made_with_the_schema_and_stays(sqlite_url):
    first = Store(sqlite_url)
    first.ensure_schema(auto_upgrade=True)
    ident = first.database_identity()
    again = Store(sqlite_url)
    again.ensure_schema(auto_upgrade=True)
    assert len(ident) == 32 and again.database_identity() == ident


def test_gc_in_one_database_leaves_the_others_checkpoints(two):
    root, (a, url_a), (b, url_b), run_id, job_id = two
    ca = CheckpointStore(root, database=a.database_identity())
    cb = CheckpointStore(root, database=b.database_identity())
    for cs in (ca, cb):
        ChildCheckpoints(cs, run_id, job_id, 1, "search", 1).save(_blob(2), 2)
    old = f"{root}/run-{run_id}/job-{job_id}/a1-e00002.ckpt"
    ca.write(old, _blob(2))
    # A's child succeeded (its checkpoints are not needed); B's is still queued (it may resume)
    attempt = a.claim(job_id, worker="t", lease_seconds=60)
    assert attempt and a.finish(job_id, attempt=attempt, result=TrainResult(
        reward=0.5, reward_epoch=1, history=[], params=1, wall_seconds=1.0, device="cpu"))  # fmt: skip

    def gc(url: str) -> dict:
        env = fake_search_env(url, PNAS_CHECKPOINT_URL=root)
        res = subprocess.run([sys.executable, "-m", "pnas.cli", "gc", "r", "--json"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    assert gc(url_b)["removed"] == 0, "B's child is queued: its checkpoint stays"
    doc = gc(url_a)
    assert doc["removed"] == 1 and doc["where"] == ca.run_dir(run_id)
    assert ca.checkpoints(run_id, job_id) == []
    assert [e for _a, e, _p in cb.checkpoints(run_id, job_id)] == [2], "the other database's checkpoint is kept"
    assert os.path.exists(old), "the old layout belongs to no database: gc leaves it"
    assert doc["unowned_bytes"] > 0


def test_a_child_resumes_only_from_its_own_databases_checkpoints(two):
    root, (a, url_a), (b, url_b), run_id, job_id = two
    cb = CheckpointStore(root, database=b.database_identity())
    ChildCheckpoints(cb, run_id, job_id, 1, "search", 1).save(_blob(2), 2)
    CheckpointStore(root).write(f"{root}/run-{run_id}/job-{job_id}/a1-e00002.ckpt", _blob(2))  # the old layout
    seen: dict[str, tuple[int | None, str | None]] = {}

    def trainer(cell, train, *, seed=0, on_epoch=None, log=None, checkpoints=None, **kw):
        ck = checkpoints.latest(IDENT)
        seen[checkpoints.store.database] = (ck.epoch if ck else None, checkpoints.resumed_from)
        return TrainResult(reward=0.5, reward_epoch=1, history=[], params=1, wall_seconds=0.1, device="cpu")

    for store, url in ((a, url_a), (b, url_b)):
        outcome = run_job(store, job_id, settings=Settings(database_url=url, checkpoint_url=root), trainer=trainer)
        assert outcome.state == "succeeded", outcome
    assert seen[a.database_identity()] == (None, None), "nothing of B's, nothing of the old layout"
    assert seen[b.database_identity()] == (2, f"{cb.job_dir(run_id, job_id)}/a1-e00002.ckpt")
