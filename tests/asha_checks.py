"""What a finished multi-fidelity (ASHA) search with the instant trainer must look like,
whichever executor ran it and whatever faults it survived: one check for every such test."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from controller.fidelity import promotions
from shared.config import SearchConfig
from shared.space import Cell
from shared.store import Store
from tests.fakes import learning_curve


def check_finished(store: Store, tmp_path: Path, name: str = "t") -> None:
    """Everything trained, each rung of each child trained and counted once (the fake
    trainer's ``trained.log`` in ``tmp_path``), nobody left that successive halving would have
    continued, the best of each level trained to the full epochs, and fewer child-epochs
    spent than at full fidelity."""
    run = store.require_run(name)
    assert run.state == "finished", run.message
    cfg = SearchConfig.from_json(run.config)
    rungs, full = cfg.rungs(), cfg.train.epochs
    jobs = store.jobs(run.id)
    assert {j.state for j in jobs} == {"succeeded"}, [
        (j.id, j.state, j.error_message) for j in jobs if j.state != "succeeded"
    ]
    for j in jobs:
        assert j.rung_rewards and set(j.rung_rewards) == {
            str(e) for e in rungs if e <= j.epochs_trained
        }, (j.id, j.rung_rewards)
        assert j.epochs_trained == rungs[j.rung]
        assert (
            abs(
                j.reward
                - learning_curve(
                    Cell.from_json(j.cell, cfg.ops), j.epochs_trained, full
                )
            )
            < 1e-9
        )
    for b in sorted({j.level for j in jobs}):
        level = [j for j in jobs if j.level == b]
        reached = [j.epochs_trained for j in level]
        assert rungs[0] in reached and full in reached, (b, reached)
        # the level ended as synchronous successive halving would: nobody due a promotion
        assert promotions(level, rungs, cfg.reduction_factor, drained=True) == [], b
    # one completed training per rung of each child: none lost, none trained twice
    calls = Counter(
        line.split()[0] for line in (tmp_path / "trained.log").read_text().splitlines()
    )
    assert calls == Counter({j.arch_id: j.rung + 1 for j in jobs})
    spent = store.child_epochs(run.id)
    assert (
        spent["spent"]
        == sum(j.epochs_trained for j in jobs)
        < spent["full_fidelity"]
        == full * len(jobs)
    )
