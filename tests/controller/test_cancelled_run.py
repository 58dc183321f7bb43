"""After `pnas cancel` a run reads `cancelled` (not `stopped`) until the same search resumes it,
whether its controller was running at the cancel or not."""

from __future__ import annotations

import pytest

from controller.search import Controller
from pnas.commands.cancel import cancel_children
from shared.config import build_config
from shared.errors import SearchCancelled
from shared.settings import Settings
from shared.store import Store
from tests.fakes import InlineExecutor


@pytest.fixture
def world(sqlite_url):
    store = Store(sqlite_url)
    store.ensure_schema(auto_upgrade=True)
    settings = Settings(database_url=sqlite_url, poll_seconds=0.05)
    cfg, _ = build_config(preset="quick", overrides=dict(strategy="random", ops="sep3x3,max3x3", blocks=1, train={"epochs": 1}))
    yield store, settings, cfg
    store.dispose()


def _controller(store, settings, hook=None) -> Controller:
    return Controller(store=store, executor=InlineExecutor(store, settings), settings=settings, hook=hook)


def test_a_run_cancelled_under_its_controller_reads_cancelled_until_resumed(world):
    store, settings, cfg = world

    def cancel_when_chosen(step: str, b: int) -> None:
        if step == "chosen":
            store.cancel(store.require_run("r").id)

    ctl = _controller(store, settings, hook=cancel_when_chosen)
    run = ctl.open_run(name="r", config=cfg)
    with pytest.raises(SearchCancelled):
        ctl.run(run)
    assert store.require_run(run.id).state == "cancelled"
    again = _controller(store, settings)
    assert again.run(again.open_run(name="r", config=cfg)).state == "finished"


def test_cancelling_a_stopped_run_marks_it_cancelled(world):
    store, settings, cfg = world
    run, _ = store.create_run(name="r", config=cfg.model_dump(mode="json"), seed=0)
    store.add_jobs(run.id, level=1, children=[("a", [[-1, "sep3x3", -2, "max3x3"]], None, None)], max_attempts=3)
    store.set_run_state(run.id, "stopped", message="interrupted")
    _, lines = cancel_children(store, settings, store.require_run(run.id))
    assert "cancelled 1 queued" in lines[0]
    assert store.require_run(run.id).state == "cancelled"
    ctl = _controller(store, settings)
    assert ctl.run(store.require_run(run.id)).state == "finished"
