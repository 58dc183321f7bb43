"""Multi-fidelity search under faults, for real: `pnas search --fidelity asha` processes with
real local worker processes (instant trainer, learning curves): a controller SIGKILLed right
after a promotion and a worker SIGKILLed while it trains a promoted child both resume with
nothing lost, nothing counted twice and no rung trained twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from shared.store import Store
from tests.asha_checks import check_finished
from tests.conftest import ROOT
from tests.fakes import fake_search_env

CONFIG = """
ops = ["sep3x3", "max3x3", "identity"]
blocks = 2
beam = 8
predictor = "mlp"
ensemble = 2
predictor_epochs = 10
seed = 3
[train]
dataset = "digits"
validation_size = 0.2
"""
ASHA = ["--fidelity", "asha", "--min-epochs", "1", "--reduction-factor", "2", "--epochs", "4"]


def _start(tmp_path: Path, env: dict, i: int) -> subprocess.Popen:
    cfg = tmp_path / "search.toml"
    cfg.write_text(CONFIG)
    log = open(tmp_path / f"controller{i}.log", "w")  # its local workers inherit it: never a full pipe
    return subprocess.Popen([sys.executable, "-m", "pnas.cli", "search", "--config", str(cfg), "--name", "t", "--workers", "2", *ASHA],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip


def test_a_controller_killed_right_after_a_promotion_resumes(sqlite_url: str, tmp_path: Path) -> None:
    env = fake_search_env(sqlite_url, PNAS_FAKE_LOG=tmp_path / "trained.log", PNAS_FAKE_SLEEP="0.4",
                          PNAS_CHECKPOINT_URL=tmp_path / "ck", PNAS_CONTROLLER_HOOK="tests.fakes:kill_at",
                          PNAS_KILL_AT="promoted:1")  # fmt: skip
    first = _start(tmp_path, env, 0)
    assert first.wait(timeout=300) == -signal.SIGKILL, (tmp_path / "controller0.log").read_text()[-2000:]
    store = Store(sqlite_url)
    run = store.require_run("t")
    assert sum(j.rung for j in store.jobs(run.id)) >= 1, "killed after a promotion"
    env.pop("PNAS_KILL_AT")
    second = _start(tmp_path, env, 1)
    assert second.wait(timeout=300) == 0, (tmp_path / "controller1.log").read_text()[-3000:]
    check_finished(store, tmp_path)
    store.dispose()


def test_a_worker_killed_while_training_a_promoted_child_resumes_from_its_rung(sqlite_url: str, tmp_path: Path) -> None:
    env = fake_search_env(sqlite_url, PNAS_FAKE_LOG=tmp_path / "trained.log", PNAS_FAKE_SLEEP="2",
                          PNAS_CHECKPOINT_URL=tmp_path / "ck")  # fmt: skip
    store = Store(sqlite_url)
    store.ensure_schema()
    proc = _start(tmp_path, env, 0)
    try:
        deadline, victim = time.monotonic() + 240, None
        while victim is None:
            assert time.monotonic() < deadline and proc.poll() is None, "no promoted child ever ran"
            run = store.get_run("t")
            running = [j for j in store.jobs(run.id, states=["running"])] if run else []
            victim = next((j for j in running if j.rung >= 1 and j.worker), None)
            time.sleep(0.05)
        os.kill(int(victim.worker.rsplit("-", 1)[1]), signal.SIGKILL)
        assert proc.wait(timeout=300) == 0, (tmp_path / "controller0.log").read_text()[-3000:]
    finally:
        proc.kill()
    j = store.job(victim.id)
    later = j.rung - victim.rung  # promoted again since
    assert j.attempts == victim.attempts + 1 + later, "the lost attempt counts once"
    assert j.max_attempts == victim.max_attempts + later, "promotions use no attempts"
    rung_start = (1, 2, 4)[victim.rung - 1]
    redone = [e["epoch"] for e in store.epochs(j.id) if e["attempt"] == victim.attempts + 1]
    assert redone and min(redone) > rung_start, "the next attempt continued from the rung's checkpoint"
    check_finished(store, tmp_path)
    store.dispose()
