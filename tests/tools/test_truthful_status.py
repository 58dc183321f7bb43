"""`pnas status`, `pnas runs` and the dashboard say what happened (issue 23): one definition
of a level's state, progress, elapsed time and ETA (`shared.progress`), on both backends."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from shared.jobs import RunState, TrainResult
from tests.cli import run_cli

CELLS = [[[-1, "sep3x3", -2, "max3x3"]], [[-2, "identity", -1, "sep3x3"]], [[-1, "max3x3", -1, "max3x3"]],
         [[-2, "sep3x3", -2, "sep3x3"]], [[-1, "identity", -1, "identity"]]]  # fmt: skip
CONFIG = {"strategy": "pnas", "ops": ["sep3x3", "max3x3", "identity"], "blocks": 3, "beam": 4,
          "train": {"dataset": "digits"}}  # fmt: skip


@pytest.fixture
def cli(store: Any, monkeypatch, capsys):
    import pnas.cli
    from shared.settings import get_settings

    for k in [k for k in __import__("os").environ if k.startswith("PNAS_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("PNAS_DATABASE_URL", store.url)
    get_settings.cache_clear()
    pnas.cli._register()
    monkeypatch.setattr(pnas.cli, "_register", lambda: None)
    yield lambda *args: run_cli(capsys, *args)
    get_settings.cache_clear()


def _shift(store: Any, sql: str, **params: Any) -> None:
    """Move stored times (the level 'took ten minutes' without waiting ten minutes)."""
    eng = create_engine(store.url)
    with eng.begin() as c:
        c.execute(text(sql), params)
    eng.dispose()


def _level_one(store: Any, *, succeed: int, fail: int, cancel: int, queued: int = 0) -> tuple[int, list[int]]:
    run, _ = store.create_run(name="r", config=CONFIG, seed=0)
    store.set_run_state(run.id, RunState.running, level=1)
    store.start_level(run.id, 1, candidates=5)
    ids = store.add_jobs(run.id, level=1, children=[(f"a{i}", c, None, None) for i, c in enumerate(CELLS)], max_attempts=1)
    it = iter(ids)
    for _ in range(succeed):
        jid = next(it)
        a = store.claim(jid, worker="w", lease_seconds=60)
        store.finish(jid, attempt=a, result=TrainResult(reward=0.5, reward_epoch=1, history=[], params=1,
                                                        wall_seconds=1.0, device="cpu"))  # fmt: skip
    for _ in range(fail):
        jid = next(it)
        a = store.claim(jid, worker="w", lease_seconds=60)
        store.fail(jid, attempt=a, error_class="dataset", message="no data")
    store.cancel(run.id, job_ids=[next(it) for _ in range(cancel)])
    return run.id, ids


def test_an_aborted_level_with_no_success_reads_as_aborted_with_nothing_trained(store: Any, cli) -> None:
    rid, _ = _level_one(store, succeed=0, fail=4, cancel=1)
    store.set_run_state(rid, RunState.aborted, message="4 children in a row could not load the dataset")
    code, out, _ = cli("status", "r", "--json")
    st = json.loads(out)
    assert code == 0 and st["children_trained"] == 0 and st["children_failed"] == 4 and st["children_cancelled"] == 1
    (lv,) = st["levels"]
    assert lv["state"] == "aborted" and lv["eta_seconds"] is None and st["eta_seconds"] is None
    code, out, _ = cli("status", "r")
    assert "aborted, level 1/3; 0/13 children trained, 4 failed, 1 cancelled" in " ".join(out.split()), out
    assert "ETA" not in out.splitlines()[0]
    (row,) = json.loads(cli("runs", "--json")[1])
    assert (row["children_trained"], row["children_expected"], row["children_failed"]) == (0, 13, 4)
    from pnas.dashboard.data import run_data, runs_data

    (dash,) = run_data(store, rid)["levels"]
    assert dash["state"] == "aborted" and dash["progress"] == 0.0 and dash["done"] == 0
    assert runs_data(store)["runs"][0]["children_expected"] == 13


def test_a_stopped_run_has_no_eta_and_its_elapsed_covers_its_levels(store: Any, cli) -> None:
    rid, _ = _level_one(store, succeed=2, fail=1, cancel=2)
    store.set_run_state(rid, RunState.stopped, message="interrupted")
    # level 1 began ten minutes ago; the run stopped 20 s after it was made; a worker went on
    # training what it held and finished its last child two minutes ago
    _shift(store, "UPDATE runs SET created_at = created_at - interval '11 minutes'" if "postgresql" in store.url
           else "UPDATE runs SET created_at = datetime(created_at, '-11 minutes')")  # fmt: skip
    now = store.db_now()
    _shift(store, "UPDATE runs SET updated_at = :t", t=now - timedelta(minutes=10, seconds=40))
    _shift(store, "UPDATE levels SET started_at = :t", t=now - timedelta(minutes=10))
    _shift(store, "UPDATE jobs SET finished_at = :t WHERE finished_at IS NOT NULL", t=now - timedelta(minutes=2))
    st = json.loads(cli("status", "r", "--json")[1])
    (lv,) = st["levels"]
    assert lv["state"] == "stopped" and lv["eta_seconds"] is None and st["eta_seconds"] is None
    assert lv["elapsed_seconds"] == pytest.approx(8 * 60, abs=5)  # to the last child's finish
    assert st["elapsed_seconds"] >= lv["elapsed_seconds"]
    from pnas.dashboard.data import run_data

    (dash,) = run_data(store, rid)["levels"]
    assert (dash["state"], dash["elapsed_seconds"], dash["eta_seconds"]) == ("stopped", lv["elapsed_seconds"], None)
    assert dash["progress"] == pytest.approx(2 / 5)


def test_runs_and_status_count_the_same_children(store: Any, cli) -> None:
    rid, _ = _level_one(store, succeed=3, fail=1, cancel=0)
    st = json.loads(cli("status", "r", "--json")[1])
    (row,) = json.loads(cli("runs", "--json")[1])
    assert (row["children_trained"], row["children_expected"]) == (st["children_trained"], st["children_expected"]) == (3, 13)
    assert st["levels"][0]["state"] == "training" and st["levels"][0]["eta_seconds"] is not None
    code, out, _ = cli("runs")
    assert code == 0 and "3/13" in out


def test_the_dashboards_runs_page_counts_as_pnas_runs_does(store: Any) -> None:
    from starlette.testclient import TestClient

    from pnas.dashboard import create_app
    from shared.settings import Settings

    _level_one(store, succeed=2, fail=2, cancel=1)
    page = TestClient(create_app(store, Settings(database_url=store.url))).get("/").text
    assert "2 / 13" in " ".join(page.split()) and "(2 failed)" in page and "(1 cancelled)" in page
