"""The store's side of multi-fidelity, on SQLite and on PostgreSQL: a success records its rung's
reward; a promotion requeues the child once, fenced, with one more attempt; `top` ranks the
children trained to the full epochs first; `child_epochs` counts each child's epochs once."""

from __future__ import annotations

from shared.jobs import EpochMetrics, TrainResult
from tests.shared.test_store import _cell


def _result(reward: float, epochs: int) -> TrainResult:
    history = [EpochMetrics(epoch=e, loss=1.0, accuracy=reward, val_loss=1.0, val_accuracy=reward, seconds=0.1)
               for e in range(1, epochs + 1)]  # fmt: skip
    return TrainResult(reward=reward, reward_epoch=epochs, history=history, params=1, wall_seconds=1.0, device="cpu")


def _train(store, job_id: int, reward: float, epochs: int) -> int:
    attempt = store.claim(job_id, worker="w", lease_seconds=60)
    assert attempt is not None and store.finish(job_id, attempt=attempt, result=_result(reward, epochs))
    return attempt


def test_promotion_requeues_once_keeps_attempts_and_records_every_rung(store):
    run, _ = store.create_run(name="f", config={"seed": 0, "train": {"epochs": 4}}, seed=0)
    a, b = store.add_jobs(run.id, level=1, children=[("a", _cell(0), None, None), ("b", _cell(1), None, None)], max_attempts=2)
    _train(store, a, 0.6, 1)
    _train(store, b, 0.9, 1)
    assert store.promote([(a, 0, 1)]) == [a]
    assert store.promote([(a, 0, 1), (b, 1, 2)]) == []  # a repeat, and a wrong rung: nothing
    j = store.job(a)
    assert (j.state, j.rung, j.attempts, j.max_attempts, j.rung_rewards) == ("queued", 1, 1, 3, {"1": 0.6})
    assert _train(store, a, 0.7, 2) == 2
    assert store.promote([(a, 1, 2)]) == [a]
    _train(store, a, 0.8, 4)
    j = store.job(a)
    assert (j.rung, j.epochs_trained, j.reward, j.attempts, j.max_attempts) == (2, 4, 0.8, 3, 4)
    assert j.rung_rewards == {"1": 0.6, "2": 0.7, "4": 0.8}
    assert store.child_epochs(run.id) == {"spent": 5, "full_fidelity": 8, "children": 2}
    # b's 0.9 after one epoch is above a's 0.8 after four: a, trained to the full epochs, ranks first
    assert [x.id for x in store.top(run.id, k=2)] == [a, b]


def test_the_leaderboard_view_ranks_full_epoch_children_first_and_shows_their_epochs(store):
    """Migration 0013: the view ranks as `pnas top` (full epochs first, then reward) and
    carries each child's epochs, rung and the run's full epochs; another run's epochs are its own."""
    from sqlalchemy import text

    run, _ = store.create_run(name="lb", config={"seed": 0, "train": {"epochs": 4}}, seed=0)
    short, full, mid = store.add_jobs(run.id, level=1, children=[(f"c{i}", _cell(i), None, None) for i in range(3)],
                                      max_attempts=2)  # fmt: skip
    _train(store, short, 0.95, 1)  # the best accuracy, after one epoch only
    _train(store, full, 0.7, 1)
    assert store.promote([(full, 0, 1)]) == [full]
    _train(store, full, 0.75, 2)
    assert store.promote([(full, 1, 2)]) == [full]
    _train(store, full, 0.8, 4)
    _train(store, mid, 0.9, 2)
    other, _ = store.create_run(name="lb2", config={"seed": 0, "train": {"epochs": 1}}, seed=0)
    (o,) = store.add_jobs(other.id, level=1, children=[("o", _cell(5), None, None)], max_attempts=1)
    _train(store, o, 0.5, 1)
    with store.engine.connect() as c:
        sql = "SELECT rank, job_id, accuracy, epochs_trained, rung, full_epochs FROM leaderboard WHERE run = :r ORDER BY rank"
        board = [tuple(r) for r in c.execute(text(sql), {"r": "lb"})]
        board2 = [tuple(r) for r in c.execute(text(sql), {"r": "lb2"})]
    assert [b[:2] for b in board] == [(1, full), (2, short), (3, mid)]  # not by accuracy alone: short is 0.95
    assert [b[1] for b in board] == [x.id for x in store.top(run.id, k=3)]
    assert [(b[3], b[4], b[5]) for b in board] == [(4, 2, 4), (1, 0, 4), (2, 0, 4)]
    assert board2 == [(1, o, 0.5, 1, 0, 1)]
