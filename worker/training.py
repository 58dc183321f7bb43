"""Train one child network and measure its reward (validation accuracy).

This module knows nothing of Celery or databases: the caller hands in a cell and a
`TrainConfig`, gets a `TrainResult` back, and may watch each epoch through ``on_epoch``.
Failures come out as `ChildFailed` (the cell cannot be built, the loss went NaN) or
`ChildRetryable` (out of memory).
"""

from __future__ import annotations

import math
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

import keras
import numpy as np

from shared.config import TrainConfig
from shared.errors import ChildFailed, ChildOutOfMemory, first_line
from shared.jobs import EpochMetrics, TrainResult
from shared.space import Cell
from worker.augment import Augment, eval_pipeline, host_batches, train_pipeline
from worker.datasets import AUGMENTED_BY_DEFAULT, Dataset, flips_by_default, load_for_child
from worker.device import current_device, use_jit_compile, use_mixed_precision

if TYPE_CHECKING:
    from worker.checkpoints import ChildCheckpoints


def train_child(
    cell: Cell,
    train: TrainConfig,
    *,
    dataset: Dataset | None = None,
    seed: int = 0,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    log: Callable[[str], None] | None = None,
    check: Callable[[], None] | None = None,
    checkpoints: "ChildCheckpoints | None" = None,
    until_epoch: int | None = None,
) -> TrainResult:
    """Build the child for ``cell``, train it as ``train`` says and return its reward.

    The dataset is loaded from the shared cache unless given. ``seed`` fixes the weights,
    the batch order and the augmentation; the validation split is fixed by ``train.data_seed``.
    ``epochs == 0`` trains nothing and evaluates the fresh network once. With
    ``train.evaluate_test`` and a test split, the trained network's test accuracy is
    measured once at the end: reported beside the reward, never part of it. ``check`` is
    called after every batch; it raises to stop the training (a shutdown, a lost lease, a cancel).
    ``checkpoints`` (from the runner): resume from an earlier attempt's newest checkpoint and
    save this attempt's every ``checkpoint_every`` epochs (`worker.checkpoint_keras`).
    ``until_epoch`` (a multi-fidelity rung): stop after that epoch, the learning-rate schedule
    still that of ``train.epochs``, so a training continued from its checkpoint later ends
    exactly as one that never paused.
    """
    import tensorflow as tf

    started = time.perf_counter()
    say = log or (lambda _msg: None)
    if dataset is None:
        dataset = _dataset_for(train)
    if train.max_train_samples is not None:
        dataset = dataset.capped(train.max_train_samples)
    n_train = dataset.n_train

    device = current_device()
    mixed = use_mixed_precision(train.mixed_precision, device)
    jit = use_jit_compile(train.jit_compile, device)
    steps_per_epoch = math.ceil(n_train / train.batch_size)
    total_steps = max(1, steps_per_epoch * train.epochs)
    aug = augment_for(train, dataset)
    on_device = aug.active  # in the training step; the host only slices and prefetches

    keras.backend.clear_session()  # long-lived workers: drop the previous child's graph
    keras.utils.set_random_seed(seed)
    if train.deterministic or _deterministic():
        # Process-wide and one-way (TensorFlow has no switch back): a worker that trained a
        # deterministic child stays deterministic, which changes no result, only speed.
        tf.config.experimental.enable_op_determinism()
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16" if mixed else "float32")
    try:
        model = _compile(cell, train, dataset, total_steps, jit, seed, aug if on_device else None)
        params = int(model.count_params())  # BN moving statistics included
        trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
        say(f"child {cell.arch_id}: {params:,} parameters on {device.name}"
            f" (mixed precision {'on' if mixed else 'off'}, XLA {'on' if jit else 'off'},"
            f" augmentation {aug.name}{' on the device' if on_device else ''})")
        targets = _targets(train)
        cache = not dataset.streamed
        val_ds = eval_pipeline(dataset.source("val"), train.batch_size, aug, cache=cache).map(targets)

        history: list[EpochMetrics] = []
        fit_seconds, initial_epoch = 0.0, 0
        if train.epochs == 0:
            val_loss, val_acc = _evaluate(model, val_ds)
            _check_finite(val_loss, 0, "validation loss")
            reward, reward_epoch = float(val_acc), 0
        else:
            recorder = _EpochRecorder(on_epoch, say, check)
            callbacks: list = [recorder]
            if checkpoints is not None:
                from worker.checkpoint_keras import CheckpointSaver, identity_of, resume

                identity = identity_of(cell, train, dataset)
                initial_epoch, recorder.history = resume(checkpoints, model, identity, say)
                callbacks.append(CheckpointSaver(checkpoints, recorder, identity, say))
            stop_at = train.epochs if until_epoch is None else max(1, min(until_epoch, train.epochs))
            t0 = time.perf_counter()
            if initial_epoch < stop_at:  # else: resumed at its rung's end (killed before recording it)
                # the epochs still to train, each in the order it has in an uninterrupted training
                train_source = (dataset.source("train", pixels=on_device) if cache
                                else partial(dataset.source, "train"))  # streamed: reordered by file
                left = stop_at - initial_epoch
                if on_device:
                    train_ds = host_batches(train_source, n_train, train.batch_size, seed, cache=cache,
                                            epochs=left, first_epoch=initial_epoch)
                else:
                    train_ds = train_pipeline(train_source, n_train, train.batch_size, seed, aug, cache=cache,
                                              epochs=left, first_epoch=initial_epoch)
                train_ds = train_ds.map(targets)
                model.fit(train_ds, validation_data=val_ds, epochs=stop_at, verbose=0, shuffle=False,
                          steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                          initial_epoch=initial_epoch)  # the pipeline shuffles, one epoch after another
            fit_seconds = time.perf_counter() - t0
            if recorder.stopped is not None:
                raise recorder.stopped
            if recorder.failure:
                raise ChildFailed(recorder.failure)
            history = recorder.history
            reward_epoch = (
                max(history, key=lambda m: m.val_accuracy).epoch
                if train.reward == "best"
                else history[-1].epoch
            )
            reward = history[reward_epoch - 1].val_accuracy
        test_accuracy = None
        if train.evaluate_test and dataset.n_test:
            test_ds = eval_pipeline(dataset.source("test"), train.batch_size, aug, cache=False)
            _, test_accuracy = _evaluate(model, test_ds.map(targets))
            say(f"test accuracy {test_accuracy:.4f} on {dataset.n_test} images (not the reward)")
    except tf.errors.ResourceExhaustedError as exc:
        raise ChildOutOfMemory(f"out of memory on {device.name}: {first_line(exc)}") from None
    finally:
        keras.config.set_dtype_policy(previous_policy)

    seen = n_train * (len(history) - initial_epoch)
    return TrainResult(
        reward=float(reward),
        reward_epoch=int(reward_epoch),
        history=history,
        params=params,
        wall_seconds=time.perf_counter() - started,
        device=device.name,
        test_accuracy=None if test_accuracy is None else float(test_accuracy),
        extra={
            "mixed_precision": mixed,
            "jit_compile": jit,
            "augment": aug.name,
            "augment_on": "device" if on_device else None,
            "flip": aug.flip,
            "cutout": aug.cutout,
            "trainable_params": trainable,
            "train_samples": int(n_train),
            "val_samples": int(dataset.n_val),
            "test_samples": int(dataset.n_test),
            "fit_seconds": fit_seconds,
            "images_per_second": seen / fit_seconds if fit_seconds else None,
            "resumed_epoch": initial_epoch or None,
        },
    )


def augment_for(train: TrainConfig, dataset: Dataset) -> Augment:
    """The pipeline ``train.augment`` and ``train.flip`` ask for on this dataset."""
    kind = train.augment
    if kind == "auto":
        kind = "standard" if dataset.name in AUGMENTED_BY_DEFAULT else "none"
    if kind == "none":
        return Augment(cutout=train.cutout)
    flip = train.flip == "on" or (train.flip == "auto" and flips_by_default(dataset.name))
    mean, std = dataset.channel_stats()
    return Augment(mean=mean, std=std, crop=True, flip=flip, cutout=train.cutout)


def _deterministic() -> bool:
    from shared.settings import get_settings

    return get_settings().deterministic


_LAST_DATASET: dict[tuple, Dataset] = {}  # a local worker trains many children on one dataset


def _dataset_for(train: TrainConfig) -> Dataset:
    """The run's dataset from the shared cache, kept in memory for the next child."""
    from shared.settings import get_settings

    cache_dir = get_settings().data_dir
    key = (train.dataset, train.validation_size, train.data_seed, str(cache_dir), train.image_size)
    if key not in _LAST_DATASET:
        _LAST_DATASET.clear()
        _LAST_DATASET[key] = load_for_child(train, cache_dir)
    return _LAST_DATASET[key]


def _compile(cell: Cell, train: TrainConfig, dataset: Dataset, total_steps: int, jit: bool, seed: int,
             aug: Augment | None = None):
    """The compiled network; with ``aug``, augmenting its training batches on the device."""
    from worker.network import network_for

    model = network_for(cell, train, input_shape=dataset.input_shape, num_classes=dataset.num_classes,
                        total_steps=total_steps, seed=seed)
    if aug is not None:
        from worker.device_augment import DeviceAugmented

        model = DeviceAugmented(model, aug)
    schedule = keras.optimizers.schedules.CosineDecay(train.learning_rate, decay_steps=total_steps)
    loss = _loss(train.label_smoothing)
    losses: Any
    weights: dict[str, float] | None
    metrics: Any
    if train.aux_head:
        losses = {"logits": loss, "aux_logits": loss}
        weights = {"logits": 1.0, "aux_logits": train.aux_weight}
        metrics = {"logits": ["accuracy"]}
    else:
        losses, weights, metrics = loss, None, ["accuracy"]
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=schedule, momentum=train.momentum,
                                       global_clipnorm=train.clip_norm),
        loss=losses,
        loss_weights=weights,
        metrics=metrics,
        jit_compile=jit,
    )
    return model


def _loss(smoothing: float):
    """Sparse cross-entropy on softmax outputs, with label smoothing when asked for."""
    if smoothing <= 0:
        return "sparse_categorical_crossentropy"

    def smoothed(y_true, y_pred):
        ce = keras.losses.sparse_categorical_crossentropy(y_true, y_pred)
        uniform = -keras.ops.mean(keras.ops.log(keras.ops.clip(y_pred, 1e-7, 1.0)), axis=-1)
        return (1.0 - smoothing) * ce + smoothing * uniform  # = CE against smoothed one-hot

    return smoothed


def _targets(train: TrainConfig):
    """The label structure the model's outputs want (one per head)."""
    if train.aux_head:
        return lambda x, y: (x, {"logits": y, "aux_logits": y})
    return lambda x, y: (x, y)


def _evaluate(model, ds) -> tuple[float, float]:
    """(loss, accuracy) of the main classifier."""
    logs = model.evaluate(ds, verbose=0, return_dict=True)
    return float(logs["loss"]), float(_accuracy(logs))


def _accuracy(logs: dict, prefix: str = "") -> float:
    for key in (f"{prefix}accuracy", f"{prefix}logits_accuracy"):
        if key in logs:
            return float(logs[key])
    return float("nan")


def _check_finite(value: float, epoch: int, what: str) -> None:
    if not math.isfinite(float(value)):
        raise ChildFailed(f"{what} became {float(value)} at epoch {epoch}")


class _EpochRecorder(keras.callbacks.Callback):
    """Collects `EpochMetrics`, hands each to ``on_epoch`` and stops on a NaN/inf loss."""

    def __init__(self, on_epoch, say, check=None) -> None:
        super().__init__()
        self.on_epoch, self.say, self.check = on_epoch, say, check
        self.history: list[EpochMetrics] = []
        self.failure: str | None = None
        self.stopped: BaseException | None = None  # what ``check`` raised: stop and re-raise
        self._t0 = 0.0

    # The batch hook only calls ``check`` and may set a flag: Keras may run it off the training
    # thread (asynchronously), so the training keeps its pace. A stop ends fit after the
    # current step (Keras reads ``stop_training`` after every step); `train_child` re-raises.
    async_safe = True

    def on_train_batch_end(self, batch, logs=None) -> None:
        if self.check is None or self.stopped is not None:
            return
        try:
            self.check()  # raises to stop: the worker is shutting down, a lost lease, a cancel
        except BaseException as exc:  # noqa: BLE001 - re-raised by train_child after fit
            self.stopped = exc
            self.model.stop_training = True

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None) -> None:
        if self.stopped is not None:
            return  # stopped mid-epoch: Keras still ends the epoch, but it is not one done
        logs = logs or {}
        m = EpochMetrics(
            epoch=epoch + 1,
            loss=float(logs.get("loss", float("nan"))),
            accuracy=_accuracy(logs),
            val_loss=float(logs.get("val_loss", float("nan"))),
            val_accuracy=_accuracy(logs, "val_"),
            seconds=time.perf_counter() - self._t0,
        )
        for what, v in (("loss", m.loss), ("validation loss", m.val_loss)):
            if not math.isfinite(v):
                self.failure = f"{what} became {'NaN' if math.isnan(v) else v} at epoch {m.epoch}"
                self.model.stop_training = True
                return
        self.history.append(m)
        self.say(m.line())
        if self.on_epoch is not None:
            self.on_epoch(m)
