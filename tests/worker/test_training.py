"""Training one child: it learns, it reports, and each failure comes out as its own kind."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import worker.training as training
from shared.config import TrainConfig
from shared.errors import ChildFailed, ChildRetryable
from shared.space import PNASNET5, Block, Cell
from worker.datasets import Dataset, load_dataset
from worker.training import train_child

TINY = Cell.of([[-1, "sep3x3", -2, "max3x3"]])


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Dataset:
    return load_dataset("digits", validation_size=0.2, seed=0, cache_dir=tmp_path_factory.mktemp("c"))


def cfg(**kw) -> TrainConfig:
    base = dict(dataset="digits", epochs=3, filters=8, cells_per_stage=1, batch_size=64,
                learning_rate=0.05, validation_size=0.2)
    return TrainConfig(**(base | kw))


def test_pnasnet5_learns_digits_and_reports_every_epoch(digits):
    seen = []
    r = train_child(PNASNET5, cfg(), dataset=digits, seed=0, on_epoch=seen.append)
    assert r.reward > 0.5  # chance is 0.1
    assert [m.epoch for m in r.history] == [1, 2, 3] and seen == r.history
    assert r.reward == max(m.val_accuracy for m in r.history)
    assert r.history[r.reward_epoch - 1].val_accuracy == r.reward
    assert r.params > 10_000 and r.device == "cpu" and r.wall_seconds > 0
    assert r.extra["train_samples"] == len(digits.x_train) and not r.extra["mixed_precision"]


def test_final_reward_is_the_last_epoch(digits):
    r = train_child(TINY, cfg(epochs=2, reward="final"), dataset=digits)
    assert r.reward_epoch == 2 and r.reward == r.history[-1].val_accuracy


def test_zero_epochs_evaluates_the_untrained_network_once(digits):
    r = train_child(TINY, cfg(epochs=0), dataset=digits)
    assert r.history == [] and r.reward_epoch == 0 and 0.0 <= r.reward <= 1.0


def test_the_same_seed_gives_the_same_training(digits):
    a = train_child(TINY, cfg(epochs=1), dataset=digits, seed=7).history[0]
    b = train_child(TINY, cfg(epochs=1), dataset=digits, seed=7).history[0]
    assert a.loss == pytest.approx(b.loss, rel=1e-4)
    assert a.val_accuracy == pytest.approx(b.val_accuracy, abs=1e-6)


def test_nan_loss_fails_the_child_and_the_process_goes_on(digits):
    with pytest.raises(ChildFailed, match="loss became NaN at epoch 1"):
        train_child(TINY, cfg(epochs=2, learning_rate=1e12), dataset=digits)
    poisoned = Dataset(**{**digits.__dict__, "x_train": digits.x_train * np.float32(np.nan)})
    with pytest.raises(ChildFailed, match="became NaN at epoch 1"):
        train_child(TINY, cfg(epochs=1), dataset=poisoned)
    assert train_child(TINY, cfg(epochs=1), dataset=digits).history  # still works


def test_a_cell_that_cannot_be_built_fails_the_child(digits):
    with pytest.raises(ChildFailed, match="unknown operator"):
        train_child(Cell((Block(-2, "conv9x9", -1, "identity"),)), cfg(epochs=1), dataset=digits)


def test_out_of_memory_is_retryable(digits, monkeypatch):
    def oom(*_a, **_k):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    monkeypatch.setattr(training, "_compile", oom)
    with pytest.raises(ChildRetryable, match="out of memory on cpu"):
        train_child(TINY, cfg(epochs=1), dataset=digits)


def test_the_worker_side_never_imports_the_controller():
    import subprocess
    import sys

    code = ("import sys, worker.network, worker.training, worker.datasets, worker.device, "
            "pnas.commands.model, pnas.commands.train; "
            "bad = [m for m in sys.modules if m == 'controller' or m.startswith('controller.')]; "
            "assert not bad, bad")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-500:]


def test_without_a_dataset_it_loads_the_configured_one(monkeypatch, tmp_path):
    from shared.settings import get_settings

    monkeypatch.setenv("PNAS_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        r = train_child(TINY, cfg(epochs=0, validation_size=300))
    finally:
        get_settings.cache_clear()
    # digits: 1,797 images, a fixed 360-image test split, then the validation split
    assert r.extra["val_samples"] == 300 and r.extra["train_samples"] == 1797 - 360 - 300


def test_test_accuracy_is_measured_only_when_asked_and_never_is_the_reward(digits):
    r = train_child(TINY, cfg(epochs=1, evaluate_test=True), dataset=digits)
    assert r.test_accuracy is not None and 0.0 <= r.test_accuracy <= 1.0
    assert r.reward == r.history[0].val_accuracy and r.extra["test_samples"] == len(digits.x_test)
    assert train_child(TINY, cfg(epochs=1), dataset=digits).test_accuracy is None
    no_test = Dataset(**{**digits.__dict__, "x_test": None, "y_test": None})
    assert train_child(TINY, cfg(epochs=1, evaluate_test=True), dataset=no_test).test_accuracy is None


def test_the_final_recipe_parts_train_together(digits):
    # aux head (needs two reductions: 8x8 digits are 2x2 there), drop path, smoothing, clipping
    r = train_child(PNASNET5, cfg(epochs=4, aux_head=True, drop_path_keep_prob=0.6, label_smoothing=0.1,
                                  clip_norm=5.0, augment="standard", cutout=4, evaluate_test=True),
                    dataset=digits, seed=1)
    assert len(r.history) == 4 and all(np.isfinite(m.loss) and 0 <= m.val_accuracy <= 1 for m in r.history)
    assert r.reward > 0.15 and r.test_accuracy is not None  # chance is 0.1
    assert r.extra["augment"] == "standard" and not r.extra["flip"]  # digits never flip
    plain = train_child(PNASNET5, cfg(epochs=0), dataset=digits)
    assert r.params > plain.params + 768 * 10  # the auxiliary classifier's weights


def test_a_child_stopped_mid_epoch_resumes_with_the_training_it_would_have_had(digits, tmp_path):
    """Stopped in epoch 3 (after the checkpoint of epoch 2), a new attempt resumes after epoch 2
    and ends with the history and reward of an uninterrupted training: the weights, the
    optimizer's step and the data order (a function of the seed and the epoch) all continue,
    and the half-done epoch 3 left no checkpoint behind."""
    from worker.checkpoints import CheckpointStore, ChildCheckpoints

    c = cfg(epochs=4, deterministic=True, augment="standard")
    whole = train_child(TINY, c, dataset=digits, seed=3)
    store = CheckpointStore(str(tmp_path / "ck"), database="d1")

    def attempt(n: int) -> ChildCheckpoints:
        return ChildCheckpoints(store, run_id=1, job_id=1, attempt=n, kind="search", every=1)

    class Stop(Exception):
        pass

    per_epoch, batches = -(-len(digits.x_train) // c.batch_size), 0

    def check() -> None:
        nonlocal batches
        batches += 1
        if batches == 2 * per_epoch + 3:
            raise Stop

    with pytest.raises(Stop):
        train_child(TINY, c, dataset=digits, seed=3, check=check, checkpoints=attempt(1))
    assert [e for _a, e, _p in store.checkpoints(1, 1)] == [1, 2], "no checkpoint of the half-done epoch"
    second = attempt(2)
    resumed = train_child(TINY, c, dataset=digits, seed=3, checkpoints=second)
    assert second.resumed_epoch == 2 and resumed.extra["resumed_epoch"] == 2

    def metrics(r) -> list[float]:
        return [v for m in r.history for v in (m.epoch, m.loss, m.accuracy, m.val_loss, m.val_accuracy)]

    assert metrics(resumed) == pytest.approx(metrics(whole), abs=1e-6)
    assert resumed.reward == pytest.approx(whole.reward, abs=1e-9)
