"""`pnas retry` on a finished run, then the same search again: the level is waited on again."""

from __future__ import annotations

from controller.search import Controller
from shared.config import build_config
from shared.settings import Settings
from shared.store import Store
from tests.fakes import InlineExecutor


def test_a_retried_child_of_a_done_level_is_trained_on_resume(sqlite_url, monkeypatch):
    store = Store(sqlite_url)
    store.ensure_schema(auto_upgrade=True)
    settings = Settings(database_url=sqlite_url, poll_seconds=0.05)
    cfg, _ = build_config(preset="quick", overrides=dict(strategy="random", ops="sep3x3,max3x3", blocks=2, beam=3, train={"epochs": 1}))
    bad = cfg.space().one_block_cells().ids([0])[0]
    monkeypatch.setenv("PNAS_FAKE_FAIL", bad)
    ctl = Controller(store=store, executor=InlineExecutor(store, settings), settings=settings)
    run = ctl.run(ctl.open_run(name="r", config=cfg))
    assert run.state == "finished"
    (job,) = store.jobs(run.id, states=["failed"])
    assert job.arch_id == bad and job.level == 1

    monkeypatch.delenv("PNAS_FAKE_FAIL")
    assert store.retry(run.id, job_ids=[job.id]) == [job.id]
    store.set_run_state(run.id, "stopped")  # what `pnas retry` does to a finished run
    ctl2 = Controller(store=store, executor=InlineExecutor(store, settings), settings=settings)
    run2 = ctl2.run(ctl2.open_run(name="r", config=cfg))
    assert run2.state == "finished"
    again = store.job(job.id)
    assert again.state == "succeeded" and again.attempts == 2
    assert store.get_level(run.id, 1).finished_at >= again.finished_at, "level 1 was finished again"


def test_a_done_level_without_news_is_skipped_on_resume(sqlite_url):
    store = Store(sqlite_url)
    store.ensure_schema(auto_upgrade=True)
    settings = Settings(database_url=sqlite_url, poll_seconds=0.05)
    cfg, _ = build_config(preset="quick", overrides=dict(strategy="random", ops="sep3x3,max3x3", blocks=1, train={"epochs": 1}))
    ctl = Controller(store=store, executor=InlineExecutor(store, settings), settings=settings)
    run = ctl.run(ctl.open_run(name="r", config=cfg))
    before = store.get_level(run.id, 1).finished_at
    store.set_run_state(run.id, "stopped", message="pretend")
    assert store.require_run(run.id).message == "pretend"
    ctl.run(store.require_run(run.id))
    assert store.get_level(run.id, 1).finished_at == before
