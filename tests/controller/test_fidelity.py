"""Multi-fidelity search (ASHA inside each level, `controller.fidelity`) with the instant
trainer's learning curves: who stops early, who reaches the full epochs, what it costs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import text

from controller.fidelity import predicted_and_measured, promotions
from controller.search import Controller
from shared.config import build_config
from shared.errors import UserError
from shared.jobs import JobState
from shared.settings import Settings
from shared.store import Store
from tests.fakes import InlineExecutor, instant_trainer, learning_curve

ASHA = dict(fidelity="asha", min_epochs=1, reduction_factor=2)


def _config(**over):
    base = dict(strategy="random", ops="sep3x3,max3x3,identity", blocks=2, beam=8, predictor="mlp", ensemble=2,
                predictor_epochs=5, train={"epochs": 4})  # fmt: skip
    return build_config(preset="quick", overrides={**base, **over})[0]


def _search(tmp_path, cfg, name="r"):
    url = f"sqlite:///{tmp_path / 'pnas.db'}"
    store = Store(url)
    store.ensure_schema(auto_upgrade=True)
    settings = Settings(database_url=url, poll_seconds=0.02, checkpoint_url=str(tmp_path / "ckpt"))
    ctl = Controller(store=store, executor=InlineExecutor(store, settings), settings=settings)
    run = ctl.run(ctl.open_run(name=name, config=cfg))
    return store, run, ctl


def test_rungs_and_their_validation():
    assert _config(**ASHA).rungs() == [1, 2, 4]
    assert _config(fidelity="asha", train={"epochs": 20}).rungs() == [1, 3, 9, 20]
    assert _config().rungs() == [4]  # full fidelity: one rung, the paper
    with pytest.raises(UserError, match="min_epochs \\(4\\) below train.epochs \\(4\\)") as e:
        _config(fidelity="asha", min_epochs=4)
    assert "\n" not in str(e.value) and "Value error" not in str(e.value)
    with pytest.raises(UserError, match="strategy pnas or random"):
        _config(fidelity="asha", strategy="evolution")


def _job(i, state="succeeded", rung=0, epochs=1, rewards=None):
    return SimpleNamespace(id=i, state=JobState(state), rung=rung, epochs_trained=epochs, rung_rewards=rewards)


def test_a_child_goes_on_when_in_the_best_1_over_eta_of_its_rung_so_far():
    jobs = [_job(1, rewards={"1": 0.5}), _job(2, rewards={"1": 0.7})]
    due = promotions(jobs, [1, 2, 4], 2, drained=False)
    assert [(j.id, k) for j, k in due] == [(2, 0)]  # 2 completed rung 1: the best half goes on
    assert promotions(jobs[:1], [1, 2, 4], 2, drained=False) == []  # one of one: no half yet
    assert [(j.id, k) for j, k in promotions(jobs[:1], [1, 2, 4], 2, drained=True)] == [(1, 0)]  # drained: the best goes on
    running = [_job(1, rewards={"1": 0.5}), _job(2, "running", rung=1, rewards={"1": 0.7})]
    assert promotions(running, [1, 2, 4], 2, drained=False) == []  # already promoted: not twice


def test_asha_stops_hopeless_children_and_trains_the_best_to_the_full_epochs(tmp_path):
    store, run, ctl = _search(tmp_path, _config(**ASHA))
    assert run.state == "finished"
    jobs = store.jobs(run.id)
    assert all(j.state == JobState.succeeded for j in jobs)
    for b in (1, 2):
        reached = sorted(j.epochs_trained for j in jobs if j.level == b)
        assert reached.count(1) >= 1 and reached.count(4) >= 1, (b, reached)
        # successive halving, as at the end of a level: at least half of each rung goes on
        n1, n2, n4 = (sum(e >= r for e in reached) for r in (1, 2, 4))
        assert n2 >= n1 // 2 and n4 >= n2 // 2 and n4 < n1
    for j in jobs:  # each rung's reward is that of the learning curve at its epochs
        assert set(j.rung_rewards) == {str(e) for e in (1, 2, 4) if e <= j.epochs_trained}
        assert j.attempts == j.rung + 1 and j.max_attempts == Settings().max_attempts + j.rung  # promotions use no attempts
    spent = store.child_epochs(run.id)
    assert spent["full_fidelity"] == 4 * len(jobs) and spent["spent"] == sum(j.epochs_trained for j in jobs)
    assert spent["spent"] < 0.6 * spent["full_fidelity"]
    top = store.top(run.id, k=len(jobs))
    full = [j for j in top if j.epochs_trained == 4]
    assert top[: len(full)] == full  # children trained to the full epochs rank first
    assert ctl.promoter is not None and ctl.promoter.promoted == sum(j.rung for j in jobs)
    with store.engine.connect() as c:  # the job_status view shows each child's rung and epochs
        view = {r[0]: (r[1], r[2]) for r in c.execute(text("SELECT job_id, rung, epochs_trained FROM job_status"))}
    assert view == {j.id: (j.rung, j.epochs_trained) for j in jobs}


def test_a_levels_extrapolation_spearman_is_on_the_first_rungs_accuracies():
    """The predictor's ranking is measured against accuracies of one training length: in an asha
    run each child's first rung (every child has one), never its highest rung's mix of lengths."""
    def job(i, predicted, rewards):
        epochs = max(int(e) for e in rewards)
        return SimpleNamespace(id=i, predicted=predicted, reward=rewards[str(epochs)], rung_rewards=rewards, epochs_trained=epochs)

    # c ranks last after 1 epoch but first after 4: the highest rungs mix two training lengths
    jobs = [job(1, 0.9, {"1": 0.8}), job(2, 0.5, {"1": 0.6, "2": 0.7}), job(3, 0.1, {"1": 0.5, "2": 0.6, "4": 0.95}),
            job(4, 0.2, {"1": 0.55})]  # fmt: skip
    assert predicted_and_measured(jobs, _config(**ASHA)) == [(0.9, 0.8), (0.5, 0.6), (0.1, 0.5), (0.2, 0.55)]
    # full fidelity: the children's accuracies; a child without a prediction (level 1 of pnas) is left out
    full = [job(1, 0.9, {"4": 0.8}), job(2, None, {"4": 0.7})]
    assert predicted_and_measured(full, _config()) == [(0.9, 0.8)]


def test_gc_keeps_the_rung_checkpoints_of_a_level_still_training(tmp_path):
    from worker.checkpoints import CheckpointStore, encode, gc_run

    cs = CheckpointStore(str(tmp_path / "ck"), database="d1")
    for job in (1, 2):
        cs.write(f"{cs.job_dir(9, job)}/a1-e00001.ckpt", encode(1, {}, [], [], []))
    assert gc_run(cs, 9, {1: ("paused", "search"), 2: ("succeeded", "search")})[0] == 1
    assert [len(cs.checkpoints(9, j)) for j in (1, 2)] == [1, 0]


def test_a_child_promoted_to_the_top_rung_ends_as_one_trained_without_pauses(tmp_path, monkeypatch):
    log = tmp_path / "epochs.log"
    monkeypatch.setenv("PNAS_FAKE_EPOCH_LOG", str(log))
    store, run, _ = _search(tmp_path, _config(**ASHA))
    space = _config().space()
    from shared.space import Cell

    lines = [tuple(line.split()) for line in log.read_text().splitlines()]
    assert len(lines) == len(set(lines))  # no epoch of any child trained twice: each rung continued
    for j in store.jobs(run.id):
        assert j.reward == pytest.approx(learning_curve(Cell.from_json(j.cell, space.ops), j.epochs_trained, 4))
        assert [int(e) for a, e in lines if a == j.arch_id] == list(range(1, j.epochs_trained + 1))
        assert (j.resumed_epoch is not None) == (j.rung > 0)


def test_full_fidelity_is_unchanged(tmp_path):
    store, run, ctl = _search(tmp_path, _config())
    jobs = store.jobs(run.id)
    assert {j.epochs_trained for j in jobs} == {4} and {j.attempts for j in jobs} == {1}
    assert ctl.promoter is not None and not ctl.promoter.active and ctl.promoter.promoted == 0


def test_after_a_cancel_no_child_is_promoted(tmp_path):
    """`pnas cancel` during a level: a child that ended its rung just as the stop came is not
    promoted (no new training after a cancel); the search stops, cancelled, to be resumed."""
    from shared.errors import SearchCancelled
    from shared.jobs import EpochMetrics, TrainResult

    url = f"sqlite:///{tmp_path / 'pnas.db'}"
    store = Store(url)
    store.ensure_schema(auto_upgrade=True)
    settings = Settings(database_url=url, poll_seconds=0.02, checkpoint_url=str(tmp_path / "ckpt"))
    rungs_at_cancel: dict[int, int] = {}

    def cancel_at_first_promotion(step: str, b: int) -> None:
        if step == "promoted" and not rungs_at_cancel:
            # a worker has just taken one promoted child; the cancel comes; the child ends its
            # rung anyway (a stop asked too late), due for its next rung: it must stay there
            late = store.jobs(run.id, level=b, states=["queued"])[0]
            attempt = store.claim(late.id, worker="late", lease_seconds=60)
            store.cancel(run.id, level=b)
            rungs_at_cancel.update({j.id: j.rung for j in store.jobs(run.id)})
            history = [EpochMetrics(epoch=e, loss=0.5, accuracy=0.5, val_loss=0.5, val_accuracy=0.5, seconds=0.0)
                       for e in (1, 2)]  # fmt: skip
            result = TrainResult(reward=0.99, reward_epoch=2, history=history, params=1, wall_seconds=0.0, device="cpu")
            assert attempt and store.finish(late.id, attempt=attempt, result=result)

    ctl = Controller(store=store, executor=InlineExecutor(store, settings), settings=settings, hook=cancel_at_first_promotion)
    run = ctl.open_run(name="r", config=_config(**ASHA))
    with pytest.raises(SearchCancelled):
        ctl.run(run)
    assert rungs_at_cancel, "a promotion happened before the cancel"
    assert {j.id: j.rung for j in store.jobs(run.id)} == rungs_at_cancel  # nothing promoted since
    assert store.require_run(run.id).state == "cancelled"


class _SlowInline(InlineExecutor):
    """Trains one queued child every other poll: the controller reads the level between a
    promotion and the next training, as it does while a worker trains."""

    polls = 0

    def check(self) -> None:
        from worker.runner import run_job

        self.polls += 1
        if self.pending and self.polls % 2:
            run_job(self.store, self.pending.pop(0), settings=self.settings, worker="inline", trainer=instant_trainer)


def test_the_live_trained_count_never_steps_back_when_a_child_is_promoted(tmp_path):
    """A promoted child that succeeded at a rung is queued and running again: it stays
    trained (`shared.progress.Tally`), in the count and in the live line."""
    from controller.progress import SilentReporter
    from pnas.commands.search import progress_line

    seen: list = []

    class Recorder(SilentReporter):
        def progress(self, p) -> None:
            seen.append((p.b, p.trained, p.further, p.total, progress_line(p)))

    url = f"sqlite:///{tmp_path / 'pnas.db'}"
    store = Store(url)
    store.ensure_schema(auto_upgrade=True)
    settings = Settings(database_url=url, poll_seconds=0.01, checkpoint_url=str(tmp_path / "ckpt"))
    ctl = Controller(store=store, executor=_SlowInline(store, settings), settings=settings, reporter=Recorder())
    run = ctl.run(ctl.open_run(name="r", config=_config(**ASHA)))
    assert run.state == "finished"
    for b in (1, 2):
        trained = [t for lv, t, _, _, _ in seen if lv == b]
        assert trained == sorted(trained), (b, trained)  # never back
        assert trained[-1] == [n for lv, _, _, n, _ in seen if lv == b][-1]
    further = [(t, f, line) for _, t, f, _, line in seen if f]
    assert further, "progress was read while a promoted child waited for its next rung"
    t, f, line = further[0]
    assert f"{t}/" in line and "trained (" in line and f"{f} promoted to their next rung" in line, line


def test_the_live_line_s_best_is_that_of_the_children_trained_to_the_full_epochs(tmp_path):
    """Each live line gives the best of the level's children trained to the 4 epochs, as `pnas
    runs` does; before one of them is, the best rung so far labelled with its epochs."""
    from controller.progress import SilentReporter
    from pnas.commands.search import progress_line

    seen: list = []

    class Recorder(SilentReporter):
        def progress(self, p) -> None:  # the inline executor trains nothing while this runs
            rewards = [(j.epochs_trained, j.reward) for j in store.jobs(run.id, level=p.b) if j.reward is not None]
            full = [r for e, r in rewards if e == 4]
            if not rewards:
                want = "best -,"
            elif full:
                want = f"best {max(full):.4f},"
            else:
                epochs, best = max(rewards, key=lambda er: er[1])
                want = f"best {best:.4f} at {epochs}/4 epochs,"
            seen.append((bool(full), want, progress_line(p)))

    url = f"sqlite:///{tmp_path / 'pnas.db'}"
    store = Store(url)
    store.ensure_schema(auto_upgrade=True)
    settings = Settings(database_url=url, poll_seconds=0.01, checkpoint_url=str(tmp_path / "ckpt"))
    ctl = Controller(store=store, executor=_SlowInline(store, settings), settings=settings, reporter=Recorder())
    run = ctl.open_run(name="r", config=_config(**ASHA))
    assert ctl.run(run).state == "finished"
    for _, want, line in seen:
        assert want in line, (want, line)
    assert any(not full and "epochs," in want for full, want, _ in seen), "a line before any child reached the full epochs"
    assert any(full for full, _, _ in seen)


def test_a_child_stopped_early_is_never_the_live_line_s_best(tmp_path):
    """The learning curves above never make a child stopped early the most accurate: plant one."""
    from controller.progress import LevelClock
    from pnas.commands.search import progress_line
    from shared.jobs import EpochMetrics, TrainResult

    store = Store(f"sqlite:///{tmp_path / 'pnas.db'}")
    store.ensure_schema(auto_upgrade=True)
    run, _ = store.create_run(name="r", config=_config(**ASHA).model_dump(mode="json"), seed=0)
    cells = [[[-1, "sep3x3", -1, "max3x3"]], [[-2, "identity", -1, "sep3x3"]]]
    ids = store.add_jobs(run.id, level=1, children=[(f"c{i}", c, None, None) for i, c in enumerate(cells)], max_attempts=1)
    for jid, acc, epochs in zip(ids, (0.95, 0.9), (2, 4)):
        a = store.claim(jid, worker="w", lease_seconds=60)
        history = [EpochMetrics(epoch=e, loss=0.1, accuracy=acc, val_loss=0.1, val_accuracy=acc, seconds=0.0)
                   for e in range(1, epochs + 1)]  # fmt: skip
        assert store.finish(jid, attempt=a, result=TrainResult(reward=acc, reward_epoch=epochs, history=history, params=1,
                                                               wall_seconds=0.0, device="cpu"))  # fmt: skip
    line = progress_line(LevelClock(1).progress(store.level_progress(run.id, 1)))
    assert "best 0.9000," in line, line
