"""The local executor stops after PNAS_MAX_DATASET_FAILURES as the Celery path does (issue 23):
its worker processes take no more children once the abort rule holds, so a dataset only the
workers cannot read fails a few children, not the whole level, and the abort names the
newest of those failures."""

from __future__ import annotations

import pytest

from controller.executors import LocalExecutor
from controller.search import Controller
from shared.config import build_config
from shared.errors import SearchAborted
from shared.settings import Settings
from shared.store import Store
from tests.fakes import fake_search_env


def test_a_dataset_the_local_workers_cannot_load_stops_after_the_limit(sqlite_url, tmp_path, capfd) -> None:
    missing = tmp_path / "gone" / "data.npz"
    env = fake_search_env(sqlite_url, PNAS_FAKE_LOAD_DATASET="1", PNAS_MAX_DATASET_FAILURES="3")
    settings = Settings(database_url=sqlite_url, lease_seconds=5, heartbeat_seconds=1, poll_seconds=0.3,
                        max_dataset_failures=3)  # fmt: skip
    store = Store(sqlite_url)
    store.ensure_schema(auto_upgrade=True)
    cfg, _ = build_config(preset="quick", overrides={"ops": "sep3x3,max3x3,identity", "blocks": 2, "beam": 2,
                                                     "train": {"epochs": 1, "dataset": f"npz:{missing}"}})  # fmt: skip
    ctl = Controller(store=store, executor=LocalExecutor(workers=1, env=env), settings=settings)
    run = ctl.open_run(name="t", config=cfg)
    with pytest.raises(SearchAborted) as info:
        ctl.run(run)
    failed = [j for j in store.jobs(run.id) if j.state == "failed"]
    assert len(failed) == 3, f"stopped at PNAS_MAX_DATASET_FAILURES=3, not after {len(failed)} of 21"
    newest = max(failed, key=lambda j: (j.finished_at, j.id))
    assert "3 children in a row could not load the dataset" in str(info.value)
    assert f"(last: job {newest.id}: " in str(info.value) and str(missing) in str(info.value)
    # one line per failed child, in the search's style, with no timestamp or log level
    lines = [line for line in capfd.readouterr().err.splitlines() if " failed: DatasetError: " in line]
    assert len(lines) == 3 and all(line.startswith("  local worker ") for line in lines), lines
    store.dispose()
