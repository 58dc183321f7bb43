"""A worker that exits says so at once (issue 23): a local worker process stopped with
SIGTERM is offline in `pnas status` right away, not "live, idle" until its heartbeat is a
lease old; and the offline workers many local searches leave behind are folded."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from pnas.commands.status import collect, render
from shared.config import build_config
from shared.store import Store
from tests.conftest import ROOT
from tests.fakes import fake_search_env


def _wait(pred, what: str, deadline: float = 60.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_local_worker_that_exits_is_offline_at_once(sqlite_url, monkeypatch) -> None:
    store = Store(sqlite_url)
    store.ensure_schema(auto_upgrade=True)
    cfg, _ = build_config(preset="quick", overrides={"ops": "sep3x3,max3x3", "blocks": 2, "beam": 2})
    run, _ = store.create_run(name="t", config=cfg.model_dump(mode="json"), seed=0)
    env = fake_search_env(sqlite_url, PNAS_LEASE_SECONDS="600")  # only the exit can make it offline
    proc = subprocess.Popen([sys.executable, "-m", "worker.local", "--run", str(run.id)], cwd=ROOT, env=env,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        (w,) = _wait(store.workers, "the worker to register")
        assert w["stopped_at"] is None
        monkeypatch.setenv("PNAS_LEASE_SECONDS", "600")
        from shared.settings import get_settings

        get_settings.cache_clear()
        assert [x["state"] for x in collect(store, "t")["workers"]] == ["idle"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        proc.kill()
    (w,) = collect(store, "t")["workers"]
    assert w["state"] == "offline" and w["stopped_at"] is not None and w["seconds_ago"] < 600
    from pnas.dashboard.data import workers_data
    from shared.settings import Settings

    page = workers_data(store, Settings(database_url=sqlite_url, lease_seconds=600))
    assert page["live"] == [] and [x["name"] for x in page["offline"]] == [w["name"]]
    for i in range(6):  # the workers of six earlier local searches
        store.register_worker(f"old-{i}", hostname="h", device="cpu (local)")
        store.worker_stopped(f"old-{i}")
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(render(collect(store, "t")))
    text = console.export_text()
    assert "0 live, 7 offline" in text and "... and 4 more offline" in text
    assert sum(" exited " in line for line in text.splitlines()) == 3, text
    get_settings.cache_clear()
    store.dispose()
