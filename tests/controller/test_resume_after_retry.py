"""`pnas retry` on a finished run, then the same search again: the level is waited on again."""

from __future__ import annotations

from controller.progress import SilentReporter
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


class Messages(SilentReporter):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def test_finetune_refits_a_level_whose_previous_predictor_is_not_the_latest(sqlite_url, monkeypatch):
    """A failed level-2 child retried after level 3 was fitted: level 2 is finished again, and
    the newest stored predictor (level 3's) is not level 1's, so level 2 refits from scratch."""
    from controller.predictor import Ensemble

    store = Store(sqlite_url)
    store.ensure_schema(auto_upgrade=True)
    settings = Settings(database_url=sqlite_url, poll_seconds=0.05)
    cfg, _ = build_config(preset="quick", overrides=dict(
        ops="sep3x3,max3x3", blocks=3, beam=3, predictor="mlp", ensemble=2, predictor_epochs=4,
        predictor_update="finetune", train={"epochs": 1}))  # fmt: skip

    def fail_one_of_level_2(step: str, b: int) -> None:
        if (step, b) == ("chosen", 2):
            monkeypatch.setenv("PNAS_FAKE_FAIL", store.jobs(run.id, level=2)[0].arch_id)

    first = Messages()
    ctl = Controller(store=store, executor=InlineExecutor(store, settings), settings=settings, reporter=first, hook=fail_one_of_level_2)
    run = ctl.open_run(name="r", config=cfg)
    assert ctl.run(run).state == "finished"
    assert any(line.startswith("level 3: fine-tuning level 2's mlp predictor ensemble") for line in first.lines), first.lines
    b, blob = store.latest_predictor(run.id)
    assert b == 3 and Ensemble.from_bytes(blob).info["finetuned_from_rows"] == 10 + 2  # 10 one-block cells, 2 of 3 at b=2

    monkeypatch.delenv("PNAS_FAKE_FAIL")
    (job,) = store.jobs(run.id, states=["failed"])
    assert store.retry(run.id, job_ids=[job.id]) == [job.id]
    store.set_run_state(run.id, "stopped")
    again = Messages()
    ctl2 = Controller(store=store, executor=InlineExecutor(store, settings), settings=settings, reporter=again)
    assert ctl2.run(ctl2.open_run(name="r", config=cfg)).state == "finished"
    assert "level 2: level 1's predictor is not the newest or saw other children; refitting" in again.lines
    assert "level 2: fitting the mlp predictor ensemble on 13 children" in again.lines
