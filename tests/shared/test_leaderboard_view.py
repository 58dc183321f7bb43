"""The leaderboard view (migration 0013_leaderboard_fidelity), on SQLite and on PostgreSQL:
ranked as `pnas top` ranks, children trained to their run's full epochs first."""

from __future__ import annotations

from shared.jobs import EpochMetrics, TrainResult
from tests.shared.test_store import _cell


def _train(store, job_id: int, reward: float, epochs: int) -> None:
    history = [EpochMetrics(epoch=e, loss=1.0, accuracy=reward, val_loss=1.0, val_accuracy=reward, seconds=0.1)
               for e in range(1, epochs + 1)]  # fmt: skip
    attempt = store.claim(job_id, worker="w", lease_seconds=60)
    result = TrainResult(
        reward=reward,
        reward_epoch=epochs,
        history=history,
        params=1,
        wall_seconds=1.0,
        device="cpu",
    )
    assert attempt is not None and store.finish(job_id, attempt=attempt, result=result)


def test_the_leaderboard_view_ranks_full_epoch_children_first_and_shows_their_epochs(
    store,
):
    """Migration 0013: the view ranks as `pnas top` (full epochs first, then reward) and
    carries each child's epochs, rung and the run's full epochs; another run's epochs are its own."""
    from sqlalchemy import text

    run, _ = store.create_run(
        name="lb", config={"seed": 0, "train": {"epochs": 4}}, seed=0
    )
    short, full, mid = store.add_jobs(run.id, level=1, children=[(f"c{i}", _cell(i), None, None) for i in range(3)],
                                      max_attempts=2)  # fmt: skip
    _train(store, short, 0.95, 1)  # the best accuracy, after one epoch only
    _train(store, full, 0.7, 1)
    assert store.promote([(full, 0, 1)]) == [full]
    _train(store, full, 0.75, 2)
    assert store.promote([(full, 1, 2)]) == [full]
    _train(store, full, 0.8, 4)
    _train(store, mid, 0.9, 2)
    other, _ = store.create_run(
        name="lb2", config={"seed": 0, "train": {"epochs": 1}}, seed=0
    )
    (o,) = store.add_jobs(
        other.id, level=1, children=[("o", _cell(5), None, None)], max_attempts=1
    )
    _train(store, o, 0.5, 1)
    with store.engine.connect() as c:
        sql = "SELECT rank, job_id, accuracy, epochs_trained, rung, full_epochs FROM leaderboard WHERE run = :r ORDER BY rank"
        board = [tuple(r) for r in c.execute(text(sql), {"r": "lb"})]
        board2 = [tuple(r) for r in c.execute(text(sql), {"r": "lb2"})]
    assert [b[:2] for b in board] == [
        (1, full),
        (2, short),
        (3, mid),
    ]  # not by accuracy alone: short is 0.95
    assert [b[1] for b in board] == [x.id for x in store.top(run.id, k=3)]
    assert [(b[3], b[4], b[5]) for b in board] == [(4, 2, 4), (1, 0, 4), (2, 0, 4)]
    assert board2 == [(1, o, 0.5, 1, 0, 1)]
