"""The Keras side of checkpoints: save after every N epochs, restore before `fit`.

A checkpoint holds the model's weights (BN statistics and drop-path step counters
included), the optimizer's variables (its ``iterations`` among them, so the cosine
schedule continues), the epochs done and the metrics of those epochs. The data order is not stored: it is a
function of (seed, epoch), so the resumed pipeline starts where the killed one was.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Callable

import keras
import numpy as np

from shared.jobs import EpochMetrics
from worker.checkpoints import Checkpoint, ChildCheckpoints, CheckpointUnreadable, encode


def identity_of(cell: Any, train: Any, dataset: Any) -> dict:
    """What a checkpoint must match to be loaded into this child's training."""
    keys = ("filters", "cells_per_stage", "stem", "epochs", "batch_size", "max_train_samples", "dataset", "data_seed")
    return {
        "arch_id": cell.arch_id,
        "input_shape": list(dataset.input_shape),
        "num_classes": int(dataset.num_classes),
        **{k: getattr(train, k) for k in keys},
    }


def _shapes_match(model: Any, ck: Checkpoint) -> None:
    want = [tuple(w.shape) for w in model.weights]
    got = [tuple(a.shape) for a in ck.arrays[: ck.n_weights]]
    if want != got:
        raise CheckpointUnreadable(f"its {len(got)} weight arrays do not fit this network's {len(want)}")
    opt = model.optimizer
    if not opt.built:
        opt.build(model.trainable_variables)
    want_opt = [tuple(v.shape) for v in opt.variables]
    got_opt = [tuple(a.shape) for a in ck.arrays[ck.n_weights :]]
    if want_opt != got_opt:
        raise CheckpointUnreadable("its optimizer state does not fit this network's optimizer")


def resume(ckpts: ChildCheckpoints, model: Any, identity: dict, say: Callable[[str], None]) -> tuple[int, list[EpochMetrics]]:
    """Load the newest usable checkpoint of an earlier attempt. Returns (epochs done, their metrics)."""
    ck = ckpts.latest(identity, check=lambda c: _shapes_match(model, c))
    for msg in ckpts.skipped:
        say(msg)
    if ck is None:
        if ckpts.attempt > 1:  # an earlier attempt may have saved some: say that none is used
            say(f"no usable checkpoint found in {ckpts.where}: training from epoch 1")
        return 0, []
    model.set_weights(ck.arrays[: ck.n_weights])
    for v, a in zip(model.optimizer.variables, ck.arrays[ck.n_weights :]):
        v.assign(a)
    # The data order needs no state: epoch e's order and augmentation are a function of
    # (seed, e) (`worker.augment.train_pipeline`), and the pipeline starts at the next epoch.
    history = [EpochMetrics(**m) for m in ck.header["history"]]
    say(f"resumed from the checkpoint of epoch {ck.epoch} ({ckpts.resumed_from})")
    ckpts.resumed(ck.epoch)
    return ck.epoch, history


class CheckpointSaver(keras.callbacks.Callback):
    """Saves a checkpoint at the end of every N epochs (after the recorder has the metrics)."""

    def __init__(self, ckpts: ChildCheckpoints, recorder: Any, identity: dict, say: Callable[[str], None]) -> None:
        super().__init__()
        self.ckpts, self.recorder, self.identity, self.say = ckpts, recorder, identity, say
        self.first_seconds: float | None = None
        self.seconds_saving = 0.0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.recorder.failure or self.recorder.stopped is not None or not self.recorder.history:
            return  # a NaN, or stopped mid-epoch: these weights are not those of an epoch's end
        done = self.recorder.history[-1]
        if self.first_seconds is None:
            self.first_seconds = done.seconds
        if not self.ckpts.should_save(done.epoch, self.first_seconds):
            return
        t0 = time.perf_counter()
        weights = [np.asarray(w) for w in self.model.get_weights()]
        opt_vars = [np.asarray(v.numpy()) for v in self.model.optimizer.variables]
        blob = encode(done.epoch, self.identity, weights, opt_vars, [asdict(m) for m in self.recorder.history])
        if self.ckpts.save(blob, done.epoch):
            self.say(f"checkpoint of epoch {done.epoch}: {len(blob) / 1e6:.1f} MB in {time.perf_counter() - t0:.2f}s")
        self.seconds_saving += time.perf_counter() - t0
