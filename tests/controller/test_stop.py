"""Stopping a local search for real: SIGTERM does what Ctrl-C does, a SIGKILLed controller's
zombie holds no lock, Ctrl-C prints no traceback, and a cancelled run resumes (real
`pnas search` processes, real local worker processes, the instant trainer)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import text

from controller.run_lock import _stale_here, new_owner
from shared.store import Store
from tests.conftest import ROOT
from tests.controller.test_search import CONFIG
from tests.fakes import fake_search_env

SEARCH = [sys.executable, "-m", "pnas.cli", "search", "--name", "t", "--workers", "2"]


def _start(tmp_path: Path, env: dict, log: Path | None = None) -> subprocess.Popen:
    """`pnas search` on CONFIG; its output to pipes, or to ``log`` for a controller whose pipes
    nobody will read (its local workers inherit them: a full pipe would block a worker, perhaps
    inside a database transaction, and lock SQLite for everyone)."""
    cfg = tmp_path / "search.toml"
    cfg.write_text(CONFIG)
    out = subprocess.PIPE if log is None else open(log, "w")
    return subprocess.Popen(
        [*SEARCH, "--config", str(cfg)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT if log else subprocess.PIPE, text=True
    )


def _wait_trained(store: Store, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = store.get_run("t")
        if run and sum(c["succeeded"] for c in store.state_counts(run.id).values()) >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {n} children trained in {timeout}s")


def _lock_owner(store: Store) -> str | None:
    with store.engine.connect() as conn:
        return conn.execute(text("SELECT lock_owner FROM runs WHERE name = 't'")).scalar()


def _finish(tmp_path: Path, env: dict) -> subprocess.CompletedProcess:
    p = _start(tmp_path, env)
    out, err = p.communicate(timeout=300)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def _trained_once(tmp_path: Path) -> Counter:
    trained = Counter(line.split()[0] for line in (tmp_path / "trained.log").read_text().splitlines())
    assert len(trained) == 37 and set(trained.values()) == {1}, "a child was trained twice, or one never"
    return trained


def test_sigterm_stops_the_search_as_ctrl_c_does(sqlite_url: str, tmp_path: Path) -> None:
    env = fake_search_env(sqlite_url, PNAS_FAKE_LOG=tmp_path / "trained.log", PNAS_FAKE_SLEEP="0.6")
    store = Store(sqlite_url)
    store.ensure_schema()
    proc = _start(tmp_path, env)
    _wait_trained(store, 4)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "stopped; run the same command to resume" in err and "Traceback" not in err
    run = store.require_run("t")
    assert run.state == "stopped" and _lock_owner(store) is None
    assert all(j.state != "running" for j in store.jobs(run.id)), "running children were handed back"
    # the next start resumes at once (the lock was released) and finishes
    t0 = time.monotonic()
    done = _finish(tmp_path, env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "already being searched" not in done.stderr
    assert store.require_run("t").state == "finished" and time.monotonic() - t0 < 240
    _trained_once(tmp_path)
    store.dispose()


INTERRUPTED_CLOSE = """
import logging, sys
import sqlalchemy
from pnas.cli import _no_interrupted_close_tracebacks
_no_interrupted_close_tracebacks()
engine = sqlalchemy.create_engine("sqlite://")
with engine.connect() as conn:
    conn.exec_driver_sql("select 1")
def interrupted(_connection):
    raise KeyboardInterrupt  # a Ctrl-C that lands while the pool closes the connection
engine.dialect.do_close = interrupted
try:
    engine.dispose()
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
logging.getLogger("sqlalchemy.pool").error("a real pool error")
"""


def test_a_ctrl_c_while_the_pool_closes_a_connection_prints_no_traceback() -> None:
    """The race seen once in `test_ctrl_c_prints_no_traceback`: SQLAlchemy logs the interrupted
    close with its traceback; the CLI drops that record and keeps SQLAlchemy's other errors."""
    p = subprocess.run([sys.executable, "-c", INTERRUPTED_CLOSE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "interrupted" in p.stderr and "a real pool error" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and "Exception closing connection" not in p.stderr, p.stderr


def test_ctrl_c_prints_no_traceback(sqlite_url: str, tmp_path: Path) -> None:
    """With the real trainer (TensorFlow runs Python code in __del__ methods and callbacks,
    where an exception raised by a signal handler is only printed as "Exception ignored")."""
    env = fake_search_env(sqlite_url, PNAS_TRAINER="worker.training:train_child")
    store = Store(sqlite_url)
    store.ensure_schema()
    cfg = tmp_path / "search.toml"
    # [train] is CONFIG's last table; 3 epochs, so that the first one recorded is mid-training
    cfg.write_text(CONFIG.replace("epochs = 1", "epochs = 3") + "filters = 8\ncells_per_stage = 1\nmax_train_samples = 300\n")
    proc = subprocess.Popen(  # one worker process: TensorFlow is slow to start on a busy CPU
        [*SEARCH[:-1], "1", "--config", str(cfg)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while not ((run := store.get_run("t")) and any(store.epochs(j.id) for j in store.jobs(run.id, states=["running"]))):
        assert time.monotonic() < deadline and proc.poll() is None, "no child got through an epoch"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "Exception ignored" not in err, err[-3000:]
    assert err.rstrip().endswith("run the same command to resume run 't'"), err[-500:]
    run = store.require_run("t")
    assert run.state == "stopped" and not store.jobs(run.id, states=["running"])
    store.dispose()


def test_a_zombie_holder_is_not_a_holder() -> None:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        holder = new_owner().replace(f":{__import__('os').getpid()}:", f":{proc.pid}:", 1)
        assert not _stale_here(holder), "a live process holds its lock"
        proc.kill()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{proc.pid}/stat").read_text().split(")")[-1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert _stale_here(holder), "a killed, unreaped process (a zombie) is not a holder"
    finally:
        proc.kill()
        proc.wait()


def test_restart_right_after_sigkill_is_not_refused(sqlite_url: str, tmp_path: Path) -> None:
    env = fake_search_env(sqlite_url, PNAS_FAKE_LOG=tmp_path / "trained.log", PNAS_FAKE_SLEEP="0.3")
    store = Store(sqlite_url)
    store.ensure_schema()
    proc = _start(tmp_path, env, log=tmp_path / "controller0.log")
    for i in range(3):
        _wait_trained(store, 3 * (i + 1))
        proc.send_signal(signal.SIGKILL)  # not reaped yet: a zombie while the next one starts
        log = tmp_path / f"controller{i + 1}.log"
        nxt = _start(tmp_path, env, log=log)
        try:
            deadline = time.monotonic() + 90
            while nxt.poll() is None and (_lock_owner(store) or "::").split(":")[1] != str(nxt.pid):
                assert time.monotonic() < deadline, "the restarted controller never took the lock"
                time.sleep(0.05)
            assert nxt.poll() is None, f"restart {i + 1} was refused: {log.read_text()[-1000:]}"
        finally:
            proc.wait()
        proc = nxt
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode == 130, log.read_text()[-2000:]
    trained = Counter(line.split()[0] for line in (tmp_path / "trained.log").read_text().splitlines())
    assert set(trained.values()) == {1}, "a child was trained twice"
    store.dispose()
