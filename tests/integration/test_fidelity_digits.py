"""The README's multi-fidelity search for real: `pnas search --fidelity asha --min-epochs 1
--reduction-factor 2 --epochs 4` on digits with real local worker processes and the real
trainer. Some children stop after 1 or 2 epochs, the best reach 4, no epoch is trained twice
(a promoted child continues from its rung's checkpoint), and a child promoted to 4 epochs ends
exactly as the same child trained without pauses through the same worker path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import SearchConfig
from shared.store import Store
from tests.conftest import ROOT
from tests.integration.cluster import base_env

pytestmark = pytest.mark.integration
FLAGS = ["--fidelity", "asha", "--min-epochs", "1", "--reduction-factor", "2", "--epochs", "4"]
SMALL = ["--preset", "quick", "--ops", "sep3x3,identity", "--blocks", "2", "--beam", "4", "--filters", "8", "--n", "1",
         "--lookback", "1", "--deterministic"]  # fmt: skip: 3 one-block cells, 7 children in all


def test_a_digits_search_at_asha_stops_some_children_early_and_trains_the_best_to_the_end(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pnas.db'}"
    env = base_env(db_url=url, broker_url="", tmp=tmp_path, PNAS_TRAINER="worker.training:train_child",
                   PNAS_CHECKPOINT_URL=str(tmp_path / "ck"), PNAS_LEASE_SECONDS="30", PNAS_HEARTBEAT_SECONDS="2")  # fmt: skip
    env.pop("PNAS_BROKER_URL")  # the embedded default
    p = subprocess.run([sys.executable, "-m", "pnas.cli", "search", *SMALL, *FLAGS, "--name", "asha", "--workers", "2"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    store = Store(url)
    run = store.require_run("asha")
    jobs = store.jobs(run.id)
    assert {j.state for j in jobs} == {"succeeded"}
    reached = sorted(j.epochs_trained for j in jobs)
    assert 1 in reached and 4 in reached and set(reached) <= {1, 2, 4}, reached
    for j in jobs:  # each epoch trained once, in one attempt or another: every rung continued the last
        epochs = sorted(e["epoch"] for e in store.epochs(j.id))
        assert epochs == list(range(1, j.epochs_trained + 1)), (j.id, epochs)
    spent = store.child_epochs(run.id)
    assert spent["spent"] < spent["full_fidelity"]
    best = store.top(run.id, k=1)[0]
    assert best.epochs_trained == 4  # the best cell of the run is one trained to the full epochs

    # The same child trained to 4 epochs without pauses, through the same worker path.
    promoted = next(j for j in jobs if j.epochs_trained == 4 and j.rung == 2)
    cfg = SearchConfig.from_json(run.config).model_copy(update={"fidelity": "full"})
    ref, _ = store.create_run(name="ref", config=cfg.model_dump(mode="json"), seed=run.seed)
    (ref_id,) = store.add_jobs(ref.id, level=1, children=[(promoted.arch_id, promoted.cell, None, None)], max_attempts=1)
    w = subprocess.run([sys.executable, "-m", "worker.local", "--run", str(ref.id), "--max-children", "1"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert w.returncode == 0, w.stderr[-3000:]
    metrics = ("loss", "accuracy", "val_loss", "val_accuracy")
    paused = [tuple(e[k] for k in metrics) for e in sorted(store.epochs(promoted.id), key=lambda e: e["epoch"])]
    straight = [tuple(e[k] for k in metrics) for e in store.epochs(ref_id)]
    assert paused == straight, "every epoch's metrics equal those of the training without pauses"
    assert store.job(ref_id).reward == promoted.reward
    p = subprocess.run([sys.executable, "-m", "pnas.cli", "status", "asha"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert f"child-epochs: {spent['spent']:,} spent of the {spent['full_fidelity']:,}" in p.stdout, p.stdout
    store.dispose()
