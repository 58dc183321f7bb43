"""The progressive loop, end to end with the real store, real local worker processes and an
instant deterministic trainer (tests/fakes.py): it finds the planted best cell, resumes after
SIGKILL at any step without duplicates and reaches the same result, and locks its run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from shared.space import SearchSpace
from shared.store import Store
from tests.conftest import ROOT
from tests.fakes import fake_search_env, planted_best

CONFIG = """
ops = ["sep3x3", "max3x3", "identity"]
blocks = 3
beam = 8
predictor = "mlp"  # the loop under test, not the LSTM (tests/controller/test_predictor.py): 2x faster
ensemble = 3
predictor_epochs = 30
seed = 7
[train]
dataset = "digits"
validation_size = 0.2
epochs = 1
"""


def _env(db_url: str, tmp_path: Path, **extra) -> dict:
    return fake_search_env(db_url, PNAS_FAKE_LOG=tmp_path / "trained.log", **extra)


def _search(tmp_path: Path, env: dict, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    cfg = tmp_path / "search.toml"
    cfg.write_text(CONFIG)
    p = subprocess.run(
        [sys.executable, "-m", "pnas.cli", "search", "--config", str(cfg), "--name", "t", "--workers", "2", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )
    if check:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


def _result(db_url: str):
    s = Store(db_url)
    run = s.require_run("t")
    jobs = s.jobs(run.id)
    top = [(j.arch_id, round(j.reward, 6)) for j in s.top(run.id, k=5)]
    levels = [(lv.b, lv.state) for lv in s.levels(run.id)]
    s.dispose()
    return run, jobs, top, levels


def test_finds_the_planted_best_cell(db_url, tmp_path):
    if db_url.startswith("postgresql"):  # the controller refuses a PostgreSQL schema that is not current
        refused = _search(tmp_path, _env(db_url, tmp_path), check=False)
        assert refused.returncode == 2 and "run `pnas db upgrade` first" in refused.stderr
        subprocess.run([sys.executable, "-m", "pnas.cli", "db", "upgrade"], cwd=ROOT, env=_env(db_url, tmp_path), check=True)
    first = _search(tmp_path, _env(db_url, tmp_path))
    # the predictor fit after each level reports its members and epochs, like the training
    for b in (1, 2):
        assert f"level {b} predictor: 3 members, epoch 30/30 on " in first.stderr, first.stderr[-3000:]
    run, jobs, top, levels = _result(db_url)
    space = SearchSpace(ops=("sep3x3", "max3x3", "identity"), blocks=3)
    assert run.state == "finished"
    assert levels == [(1, "done"), (2, "done"), (3, "done")]
    assert Counter(j.level for j in jobs) == {1: 21, 2: 8, 3: 8}
    assert all(j.state == "succeeded" and j.attempts == 1 for j in jobs)
    assert top[0][0] == planted_best(space).arch_id
    # every child trained exactly once
    trained = Counter(line.split()[0] for line in (tmp_path / "trained.log").read_text().splitlines())
    assert len(trained) == 37 and set(trained.values()) == {1}
    # a second run of the same command reports the finished run instead of searching again
    again = _search(tmp_path, _env(db_url, tmp_path))
    assert "already finished" in again.stderr
    assert len((tmp_path / "trained.log").read_text().splitlines()) == 37


def test_a_search_that_finetunes_the_predictor(sqlite_url, tmp_path):
    """Levels 2 and 3 start from the previous level's predictor, on every child so far."""
    p = _search(tmp_path, _env(sqlite_url, tmp_path), "--predictor-update", "finetune")
    for b in (2, 3):
        assert f"level {b}: fine-tuning level {b - 1}'s mlp predictor ensemble on " in p.stderr, p.stderr[-3000:]
        assert f"level {b} predictor: 3 members, epoch 8/8 on " in p.stderr  # a quarter of 30 epochs
    assert "level 1 predictor: 3 members, epoch 30/30 on 21 children" in p.stderr
    import sqlite3

    from controller.predictor import Ensemble

    run, _, _, levels = _result(sqlite_url)
    assert run.state == "finished" and run.config["predictor_update"] == "finetune"
    assert levels == [(1, "done"), (2, "done"), (3, "done")]
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as db:  # every level's predictor, not only the latest
        blobs = [blob for (blob,) in db.execute("SELECT predictor FROM levels ORDER BY b")]
    fitted = [Ensemble.from_bytes(blob).info for blob in blobs]
    assert [i["rows"] for i in fitted] == [21, 29, 37]
    assert "finetuned_from_rows" not in fitted[0] and [i["finetuned_from_rows"] for i in fitted[1:]] == [21, 29]
    s = Store(sqlite_url)
    assert all(lv.spearman_extrapolation is not None for lv in s.levels(run.id)[1:])
    s.dispose()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run with the same seed: what every resumed run must reproduce."""
    d = tmp_path_factory.mktemp("ref")
    ref_db = f"sqlite:///{d / 'ref.db'}"
    _search(d, _env(ref_db, d))
    _, jobs, top, _ = _result(ref_db)
    return jobs, top


@pytest.mark.parametrize("kill_at", ["chosen:2", "scored:3", "trained:2", "refit:1"])
def test_resume_after_sigkill_reaches_the_same_result(kill_at, reference, sqlite_url, tmp_path):
    ref_jobs, ref_top = reference

    env = _env(sqlite_url, tmp_path, PNAS_CONTROLLER_HOOK="tests.fakes:kill_at", PNAS_KILL_AT=kill_at)
    killed = _search(tmp_path, env, check=False)
    assert killed.returncode == -signal.SIGKILL
    env.pop("PNAS_KILL_AT")
    _search(tmp_path, env)
    run, jobs, top, _ = _result(sqlite_url)
    assert run.state == "finished"
    assert top == ref_top
    assert sorted((j.level, j.arch_id) for j in jobs) == sorted((j.level, j.arch_id) for j in ref_jobs)
    assert all(j.state == "succeeded" for j in jobs)
    trained = Counter(line.split()[0] for line in (tmp_path / "trained.log").read_text().splitlines())
    assert set(trained.values()) == {1}, "a finished child was trained again"


def test_resume_after_sigkill_while_children_train(sqlite_url, tmp_path):
    env = _env(sqlite_url, tmp_path, PNAS_FAKE_SLEEP="0.6")
    cfg = tmp_path / "search.toml"
    cfg.write_text(CONFIG)
    cmd = [sys.executable, "-m", "pnas.cli", "search", "--config", str(cfg), "--name", "t", "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    s = Store(sqlite_url)
    s.ensure_schema()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = s.get_run("t")
        if run and s.level_progress(run.id, 1)["counts"]["succeeded"] >= 5:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)  # the workers notice their parent died and hand their children back
    _search(tmp_path, env)
    run, jobs, top, _ = _result(sqlite_url)
    assert run.state == "finished" and all(j.state == "succeeded" for j in jobs)
    assert len(jobs) == 37
    trained = Counter(line.split()[0] for line in (tmp_path / "trained.log").read_text().splitlines())
    assert len(trained) == 37 and set(trained.values()) == {1}
    s.dispose()


def test_a_second_controller_is_refused(sqlite_url, tmp_path):
    env = _env(sqlite_url, tmp_path, PNAS_FAKE_SLEEP="1")
    cfg = tmp_path / "search.toml"
    cfg.write_text(CONFIG)
    cmd = [sys.executable, "-m", "pnas.cli", "search", "--config", str(cfg), "--name", "t", "--workers", "1"]
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        s = Store(sqlite_url)
        s.ensure_schema()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            run = s.get_run("t")
            if run and run.state == "running":
                break
            time.sleep(0.1)
        second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert "already being searched by another controller" in second.stderr
        assert "Traceback" not in second.stderr
        s.dispose()
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=60)
    # Ctrl-C stopped it cleanly: the run says so, and the same command resumes it
    run, *_ = _result(sqlite_url)
    assert run.state == "stopped"


def test_failed_children_are_recorded_and_the_level_goes_on(sqlite_url, tmp_path):
    space = SearchSpace(ops=("sep3x3", "max3x3", "identity"), blocks=3)
    bad = space.one_block_cells().ids()[:2]
    _search(tmp_path, _env(sqlite_url, tmp_path, PNAS_FAKE_FAIL=",".join(bad)))
    run, jobs, *_ = _result(sqlite_url)
    failed = [j for j in jobs if j.state == "failed"]
    assert run.state == "finished"
    assert sorted(j.arch_id for j in failed) == sorted(bad)
    assert all("planted failure" in j.error_message and "planted failure" in j.log_tail for j in failed)


def test_consecutive_failures_abort_the_search(sqlite_url, tmp_path):
    p = _search(tmp_path, _env(sqlite_url, tmp_path, PNAS_FAKE_FAIL_ALL="1", PNAS_MAX_CONSECUTIVE_FAILURES="4"), check=False)
    assert p.returncode == 3
    assert "failed in a row" in p.stderr and "Traceback" not in p.stderr
    assert "planted failure for" in p.stderr  # the last error is in the message
    run, jobs, *_ = _result(sqlite_url)
    assert run.state == "aborted"


def test_changed_settings_for_an_existing_run_are_refused(sqlite_url, tmp_path):
    env = _env(sqlite_url, tmp_path)
    _search(tmp_path, env)
    p = _search(tmp_path, env, "--beam", "3", check=False)
    assert p.returncode == 2 and "already exists with different settings (beam: stored 8, given 3)" in p.stderr


def test_a_dataset_that_cannot_be_loaded_stops_the_search_before_any_child(sqlite_url, tmp_path):
    env = fake_search_env(sqlite_url, PNAS_DATA_DIR=tmp_path / "empty-cache", PNAS_OFFLINE="1")
    p = subprocess.run([sys.executable, "-m", "pnas.cli", "search", "--preset", "paper"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "cifar10" in last and str(tmp_path / "empty-cache") in last
    s = Store(sqlite_url)
    s.ensure_schema()
    assert s.list_runs() == []  # nothing was stored
    s.dispose()
