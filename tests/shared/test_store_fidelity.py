"""The store's side of multi-fidelity, on SQLite and on PostgreSQL: a success records its rung's
reward; a promotion requeues the child once, fenced, with one more attempt; `top` ranks the
children trained to the full epochs first; `child_epochs` counts each child's epochs once."""

from __future__ import annotations

from shared.jobs import EpochMetrics, TrainResult
from shared.progress import Tally
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


def test_the_runs_best_is_that_of_a_child_trained_to_the_full_epochs(store):
    """`pnas runs` shows the best as `pnas top` ranks it: a child trained to the full epochs,
    never a higher reward after fewer epochs; before any child got there, the best completed
    rung, labelled with its epochs (a child training further on keeps its rung's reward)."""
    from pnas.commands.runs import _best, collect

    run, _ = store.create_run(name="f", config={"seed": 0, "train": {"epochs": 4}}, seed=0)
    a, b = store.add_jobs(run.id, level=1, children=[("a", _cell(0), None, None), ("b", _cell(1), None, None)], max_attempts=2)
    _train(store, a, 0.6, 1)
    _train(store, b, 0.9, 2)
    assert store.promote([(b, 0, 2)]) == [b]
    attempt = store.claim(b, worker="w", lease_seconds=60)  # b trains on to 4 epochs
    (row,) = collect(store)
    assert (row["best"], row["best_epochs"], row["full_epochs"], row["best_at_full_epochs"]) == (0.9, 2, 4, False)
    assert _best(row) == "0.9000 at 2/4 epochs"
    # b, training further, is still a trained child (`shared.progress.Tally`): everywhere
    assert (row["children_trained"], row["children_training_further"], row["children_done"]) == (2, 1, 1)
    assert store.level_progress(run.id, 1)["further"] == 1 and store.further_counts(run.id) == {1: 1}
    assert Tally.of(row["jobs"], further=row["children_training_further"]).words(2) == "2/2 children trained (1 training further)"
    from pnas.dashboard.data import run_data, runs_data

    (dash_run,) = runs_data(store)["runs"]
    page = run_data(store, run.id)
    assert (dash_run["children_trained"], page["children"]["trained"], page["levels"][0]["trained"]) == (2, 2, 2)
    assert page["levels"][0]["further"] == 1
    assert attempt and store.finish(b, attempt=attempt, result=_result(0.8, 4))
    (row,) = collect(store)
    assert (row["best"], row["best_epochs"], row["best_at_full_epochs"]) == (0.8, 4, True)
    assert _best(row) == "0.8000" and row["best"] == store.top(run.id, k=1)[0].reward


def test_a_promoted_childs_success_breaks_the_failure_streak_where_it_happened(store):
    """The streak a search stops on (`max_consecutive_failures`) counts failures since the last
    success; a child promoted after a rung succeeded there, even while it trains on or after it
    fails at its next rung."""
    import time

    run, _ = store.create_run(name="f", config={"seed": 0, "train": {"epochs": 4}}, seed=0)
    a, b, c = store.add_jobs(run.id, level=1, children=[(x, _cell(i), None, None) for i, x in enumerate("abc")], max_attempts=1)

    def fail(job_id: int) -> None:
        time.sleep(0.01)  # distinct times on the database clock
        attempt = store.claim(job_id, worker="w", lease_seconds=60)
        assert attempt and store.fail(job_id, attempt=attempt, error_class="RuntimeError", message="broken")

    fail(b)
    time.sleep(0.01)
    _train(store, a, 0.7, 1)
    assert store.promote([(a, 0, 1)]) == [a]  # a succeeded at its first rung; it is queued again
    fail(c)
    assert store.consecutive_failures(run.id) == 1  # c only: a's success came after b's failure
    fail(a)  # a fails at its next rung (its promotion gave it one more attempt)
    assert store.job(a).state == "failed"
    assert store.consecutive_failures(run.id) == 2  # c, then a at its next rung; a's first rung ended b's streak


def test_status_shows_child_epochs_spent_and_a_best_labelled_until_one_reaches_the_full_epochs(store, monkeypatch):
    """`pnas status` (and --json) of a multi-fidelity run while it runs, a child promoted and
    training further, then when it is done: child-epochs spent against full fidelity's, the
    trained count, and a best labelled with its epochs until a child is trained to the full."""
    from rich.console import Console

    from pnas.commands.status import collect, render

    monkeypatch.setenv("PNAS_CHECKPOINT_URL", "")

    def text(st: dict) -> str:
        console = Console(record=True, width=200)
        console.print(render(st))
        return " ".join(console.export_text().split())

    run, _ = store.create_run(name="f", config={"seed": 0, "train": {"epochs": 4}}, seed=0)
    a, b = store.add_jobs(run.id, level=1, children=[("a", _cell(0), None, None), ("b", _cell(1), None, None)], max_attempts=2)
    store.set_run_state(run.id, "running", message="")
    _train(store, a, 0.6, 1)
    _train(store, b, 0.7, 1)
    assert store.promote([(b, 0, 1)]) == [b]
    attempt = store.claim(b, worker="w", lease_seconds=60)
    st = collect(store, "f")
    assert st["child_epochs"] == {"spent": 2, "full_fidelity": 8, "children": 2}
    assert (st["children_trained"], st["children_training_further"]) == (2, 1)
    assert (st["levels"][0]["trained"], st["levels"][0]["training_further"]) == (2, 1)
    # b, training further, keeps its rung's 0.7: the best line names it, as the level table does
    assert st["best"]["job"] == b and (st["best"]["epochs"], st["best"]["full_epochs"]) == (1, 4)
    assert st["levels"][0]["best"] == st["best"]["reward"] == 0.7
    out = text(st)
    assert "; 2/" in out and "children trained (1 training further)," in out, out
    assert "child-epochs: 2 spent of the 8 full fidelity would have spent on these 2 children (25%)" in out, out
    assert f"best: job {b} (level 1, b) accuracy 0.7000 after 1 of 4 epochs (none trained to the full epochs yet)" in out, out
    assert attempt and store.finish(b, attempt=attempt, result=_result(0.8, 4))
    st = collect(store, "f")
    assert st["child_epochs"] == {"spent": 5, "full_fidelity": 8, "children": 2} and st["children_training_further"] == 0
    out = text(st)
    assert f"best: job {b} (level 1, b) accuracy 0.8000" in out and "none trained" not in out, out
    assert "child-epochs: 5 spent of the 8 full fidelity" in out, out


def test_the_level_summary_views_best_is_that_of_a_child_trained_to_the_full_epochs(store):
    """`level_summary.best` as `pnas status`'s level best: a child stopped after a rung with a higher
    reward is not it (it is ``best_any_rung``); NULL while no child reached the full epochs."""
    from sqlalchemy import text

    run, _ = store.create_run(name="f", config={"seed": 0, "train": {"epochs": 4}}, seed=0)
    a, b = store.add_jobs(run.id, level=1, children=[("a", _cell(0), None, None), ("b", _cell(1), None, None)], max_attempts=2)
    store.start_level(run.id, 1, candidates=2)

    def summary() -> tuple:
        with store.engine.connect() as conn:
            row = conn.execute(text("SELECT best, best_any_rung, full_epochs FROM level_summary WHERE run_id = :r"),
                               {"r": run.id}).one()  # fmt: skip
        return (None if row[0] is None else round(float(row[0]), 4), round(float(row[1]), 4), int(row[2]))

    _train(store, a, 0.9, 1)
    assert summary() == (None, 0.9, 4)
    assert store.best_per_level(run.id)[1] == {"best": 0.9, "best_epochs": 1}  # status labels it "at 1/4 epochs"
    _train(store, b, 0.8, 4)
    assert summary() == (0.8, 0.9, 4)
    assert store.best_per_level(run.id)[1]["best"] == 0.8
