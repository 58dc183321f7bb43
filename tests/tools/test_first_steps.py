"""What a new user meets first: a bad dataset refused before a run exists, read-only commands
that never create a database, the README's exit codes, one line for a role without
privileges, no TensorFlow chatter, offline workers, `status --watch` in a log, `show`'s rank,
one readable form of a cell."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
from sqlalchemy import create_engine, text, update

from shared.space import Cell
from shared.tf_noise import is_noise
from tests.cli import run_cli
from tests.conftest import REDIS_URL, ROOT, fresh_pg_database
from tests.tools.conftest import OPS, Finished

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def pnas(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    """``pnas(env, *args) -> (exit status, stdout, stderr)``, in this process, with only
    ``env``'s PNAS_ settings."""
    import pnas.cli
    import tests.tools.conftest as tools
    from shared.settings import get_settings

    if not tools._registered:
        pnas.cli._register()
        tools._registered = True
    monkeypatch.setattr(pnas.cli, "_register", lambda: None)

    def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
        for k in [k for k in os.environ if k.startswith("PNAS_")]:
            monkeypatch.delenv(k)
        for k, v in env.items():
            monkeypatch.setenv(k, str(v))
        get_settings.cache_clear()
        return run_cli(capsys, *args)

    yield run
    get_settings.cache_clear()


def _copy(finished: Finished, tmp_path: Path) -> dict[str, str]:
    """The finished SQLite run's environment, on a copy of its database (free to change)."""
    shutil.copy(finished.dir / "pnas.db", tmp_path / "copy.db")
    return {**{k: v for k, v in finished.env.items() if k.startswith("PNAS_")},
            "PNAS_DATABASE_URL": f"sqlite:///{tmp_path / 'copy.db'}"}  # fmt: skip


# --- a bad dataset: one line, exit 2, nothing stored -------------------------------------
def _npz(path: Path, x: np.ndarray, y: np.ndarray) -> str:
    np.savez(path, x_train=x, y_train=y)
    return f"npz:{path}"


# With Celery, data this machine lacks may be on the workers: only what it has is checked.
@pytest.mark.parametrize(
    "case, executor",
    [("missing", "local"), ("lengths", "local"), ("labels", "local"), ("offline-cifar10", "local"),
     ("lengths", "celery"), ("labels", "celery")],
)  # fmt: skip
def test_search_refuses_a_bad_dataset_before_the_run_exists(pnas: Cli, tmp_path: Path, case: str, executor: str) -> None:
    x = np.zeros((20, 8, 8), np.float32)
    dataset, expect = {
        "missing": (f"npz:{tmp_path / 'nope.npz'}", "does not exist"),
        "lengths": (_npz(tmp_path / "l.npz", x, np.zeros(19, int)), "has 20 images but y_train has 19 labels"),
        "labels": (_npz(tmp_path / "y.npz", x, np.arange(20) - 1), "labels must be 0..K-1"),
        "offline-cifar10": ("cifar10", "is not in the cache"),
    }[case]
    db = tmp_path / "pnas.db"
    env = {"PNAS_DATABASE_URL": f"sqlite:///{db}", "PNAS_OFFLINE": "1", "PNAS_DATA_DIR": str(tmp_path / "cache")}
    if executor == "celery":
        env["PNAS_BROKER_URL"] = REDIS_URL
    code, out, err = pnas(env, "search", "--preset", "quick", "--dataset", dataset)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and expect in err, err
    assert not db.exists()  # no database, so no run row and no child


# --- read-only commands and exit codes ---------------------------------------------------
READ_ONLY = [["runs"], ["status"], ["top"], ["show", "1"], ["export", "t", "--out", "x"], ["plot", "t", "--out", "x"],
             ["history", "t", "--out", "h.csv"], ["predict", "t", "--cell", "pnasnet5"], ["retry", "t", "--dry-run"],
             ["final", "t", "--rank", "1"]]  # fmt: skip


@pytest.mark.parametrize("args", READ_ONLY, ids=lambda a: a[0])
def test_commands_that_look_never_create_a_database(pnas: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = pnas({"PNAS_DATABASE_URL": "sqlite:///pnas.db"}, *args)
    assert code == 1, err
    assert err.count("\n") == 1 and f"no database at {tmp_path / 'pnas.db'}" in err and "PNAS_DATABASE_URL" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [["runs"], ["runs", "--json"], ["status"], ["status", "--json"], ["top"]], ids=" ".join)
def test_no_runs_yet_exits_1_everywhere(pnas: Cli, tmp_path: Path, args: list[str]) -> None:
    env = {"PNAS_DATABASE_URL": f"sqlite:///{tmp_path / 'pnas.db'}"}
    assert pnas(env, "db", "upgrade")[0] == 0
    code, out, err = pnas(env, *args)
    assert code == 1 and "no runs in" in err and "pnas search" in err, (code, err)


def test_a_role_without_privileges_gets_one_line(pnas: Cli) -> None:
    url = fresh_pg_database()
    from shared.store import Store, pg_url

    store = Store(url)
    store.upgrade()
    store.dispose()
    role = f"nopriv_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url(url), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"CREATE ROLE {role} LOGIN"))
    try:
        as_role = url.replace("postgresql://postgres@", f"postgresql://{role}@")
        for args in (["status"], ["runs"], ["search", "--preset", "quick"]):
            code, out, err = pnas({"PNAS_DATABASE_URL": as_role}, *args)
            assert code == 2 and err.count("\n") == 1, (args, err[-2000:])
            assert err.startswith(f"error: the database role '{role}' lacks a privilege") and "GRANT" in err
    finally:
        with admin.connect() as c:
            c.execute(text(f"DROP ROLE {role}"))
        admin.dispose()


# --- status ------------------------------------------------------------------------------
def test_status_lists_offline_workers_after_the_live_ones(pnas: Cli, finished_runs: dict[str, Finished], tmp_path: Path) -> None:
    from shared.db.models import WorkerRow
    from shared.store import Store

    env = _copy(finished_runs["sqlite"], tmp_path)
    store = Store(env["PNAS_DATABASE_URL"])
    store.register_worker("gone", hostname="h", device="cpu")
    store.register_worker("fresh", hostname="h", device="cpu")
    an_hour_ago = store.db_now() - timedelta(hours=1)  # before the write: SQLite has one writer
    # all but "fresh" (the run's own workers may have beaten a second ago) last beat an hour
    # ago; the lease is 5 s here
    with store.engine.begin() as c:
        c.execute(update(WorkerRow).where(WorkerRow.name != "fresh").values(last_seen=an_hour_ago))
    store.dispose()
    code, out, err = pnas(env, "status", "t", "--json")
    workers = json.loads(out)["workers"]
    assert workers[0]["name"] == "fresh" and workers[0]["state"] == "idle"
    assert {w["state"] for w in workers[1:]} == {"offline"} and "gone" in [w["name"] for w in workers]
    code, out, err = pnas(env, "status", "t")
    assert "workers seen (1 live," in out and "1h00m ago, offline" in out, out


def test_status_watch_without_a_terminal_prints_a_line_per_refresh(pnas: Cli, finished_runs: dict[str, Finished], tmp_path: Path) -> None:
    from shared.jobs import RunState
    from shared.store import Store

    env = _copy(finished_runs["sqlite"], tmp_path)
    store = Store(env["PNAS_DATABASE_URL"])
    store.set_run_state(store.require_run("t").id, RunState.running)
    store.dispose()
    code, out, err = pnas(env, "status", "t", "--watch", "--interval", "0.05", "--count", "3")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3 and all(line.startswith("run 't' (id ") for line in lines), out


# --- one readable form; show's rank ------------------------------------------------------
def test_the_search_table_prints_cells_as_top_does(finished_runs: dict[str, Finished], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from pnas.commands.search import print_top
    from pnas.render import readable
    from shared.store import Store

    monkeypatch.setenv("COLUMNS", "400")
    store = Store(finished_runs["sqlite"].url)
    run = store.require_run("t")
    jobs = store.top(run.id, k=100)
    # the run's operator order is not the paper's: re-canonicalising would print other lines
    assert any(Cell.from_json(j.cell).readable() != readable(j.cell) for j in jobs)
    capsys.readouterr()
    print_top(store, run, k=100)
    out = capsys.readouterr().out
    store.dispose()
    assert all(readable(j.cell) in out for j in jobs)
    assert all(Cell.of(j.cell, OPS).readable() == readable(j.cell) for j in jobs)  # stored = canonical in the run's space


def test_show_says_what_the_rank_ranks(pnas: Cli, finished_runs: dict[str, Finished]) -> None:
    from shared.store import Store

    f = finished_runs["sqlite"]
    store = Store(f.url)
    run = store.require_run("t")
    job = store.top(run.id, k=1, level=2)[0]
    candidates = next(lv.candidates for lv in store.levels(run.id) if lv.b == 2)
    store.dispose()
    env = {k: v for k, v in f.env.items() if k.startswith("PNAS_")}
    code, out, err = pnas(env, "show", str(job.id))
    assert code == 0, err
    assert f"(rank {job.rank} of {candidates:,} candidates, by the predictor fitted at level 1)" in out


# --- nothing from TensorFlow unless --verbose (real processes) ---------------------------
def _real(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PNAS_", "TF_"))}
    return subprocess.run([sys.executable, "-m", "pnas.cli", *args], cwd=cwd, env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_model_and_errors_print_nothing_from_tensorflow() -> None:
    p = _real("model", "--cell", "pnasnet5", "--dataset", "digits", "--n", "1", "--filters", "8", "--json")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert json.loads(p.stdout)["params"] > 0
    p = _real("train", "--cell", "pnasnet5", "--dataset", "npz:/nonexistent.npz")
    assert p.returncode == 2 and p.stderr == "error: npz file /nonexistent.npz does not exist\n", p.stderr
    loud = _real("model", "--cell", "pnasnet5", "--dataset", "digits", "--n", "1", "--filters", "8", "--verbose")
    assert loud.returncode == 0 and any(is_noise(line) for line in loud.stderr.splitlines()), loud.stderr


def test_export_prints_nothing_from_tensorflow(finished_runs: dict[str, Finished], tmp_path: Path) -> None:
    f = finished_runs["sqlite"]
    p = _real("export", "t", "--rank", "1", "--out", str(tmp_path / "best"), env={"PNAS_DATABASE_URL": f.url})
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert (tmp_path / "best" / "model.keras").is_file()
