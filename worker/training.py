"""Train one child network and measure its reward (validation accuracy).

This module knows nothing of Celery or databases: the caller hands in a cell and a
`TrainConfig`, gets a `TrainResult` back, and may watch each epoch through ``on_epoch``.
Failures come out as `ChildFailed` (the cell cannot be built, the loss went NaN) or
`ChildRetryable` (out of memory).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Callable

import keras
import numpy as np

from shared.config import TrainConfig
from shared.errors import ChildFailed, ChildRetryable
from shared.jobs import EpochMetrics, TrainResult
from shared.space import Cell
from worker.datasets import Dataset, load_dataset
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
    checkpoints: "ChildCheckpoints | None" = None,
) -> TrainResult:
    """Build the child for ``cell``, train it as ``train`` says and return its reward.

    The dataset is loaded from the shared cache unless given. ``seed`` fixes the weights
    and the batch order; the validation split is fixed by ``train.data_seed``.
    ``epochs == 0`` trains nothing and evaluates the fresh network once.
    ``checkpoints`` (from the runner): resume from an earlier attempt's newest checkpoint and
    save this attempt's every ``checkpoint_every`` epochs (`worker.checkpoint_keras`).
    """
    import tensorflow as tf

    started = time.perf_counter()
    say = log or (lambda _msg: None)
    if dataset is None:
        dataset = _dataset_for(train)
    x_train, y_train = dataset.x_train, dataset.y_train
    if train.max_train_samples is not None:
        x_train, y_train = x_train[: train.max_train_samples], y_train[: train.max_train_samples]

    device = current_device()
    mixed = use_mixed_precision(train.mixed_precision, device)
    jit = use_jit_compile(train.jit_compile, device)
    steps_per_epoch = math.ceil(len(x_train) / train.batch_size)
    total_steps = max(1, steps_per_epoch * train.epochs)

    keras.backend.clear_session()  # long-lived workers: drop the previous child's graph
    keras.utils.set_random_seed(seed)
    if _deterministic():
        tf.config.experimental.enable_op_determinism()
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16" if mixed else "float32")
    try:
        model = _compile(cell, train, dataset, total_steps, jit, seed)
        params = int(model.count_params())  # BN moving statistics included
        trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
        say(f"child {cell.arch_id}: {params:,} parameters on {device.name}"
            f" (mixed precision {'on' if mixed else 'off'}, XLA {'on' if jit else 'off'})")
        train_ds = _train_pipeline(x_train, y_train, train.batch_size, seed)
        val_ds = _eval_pipeline(dataset.x_val, dataset.y_val, train.batch_size)

        history: list[EpochMetrics] = []
        fit_seconds, initial_epoch = 0.0, 0
        if train.epochs == 0:
            val_loss, val_acc = model.evaluate(val_ds, verbose=0)
            _check_finite(val_loss, 0, "validation loss")
            reward, reward_epoch = float(val_acc), 0
        else:
            recorder = _EpochRecorder(on_epoch, say)
            callbacks: list = [recorder]
            initial_epoch = 0
            if checkpoints is not None:
                from worker.checkpoint_keras import CheckpointSaver, identity_of, resume

                identity = identity_of(cell, train, dataset)
                initial_epoch, recorder.history = resume(checkpoints, model, train_ds, identity, say)
                callbacks.append(CheckpointSaver(checkpoints, recorder, identity, say))
            t0 = time.perf_counter()
            model.fit(train_ds, validation_data=val_ds, epochs=train.epochs, verbose=0, shuffle=False,
                      callbacks=callbacks, initial_epoch=initial_epoch)  # the pipeline shuffles
            fit_seconds = time.perf_counter() - t0
            if recorder.failure:
                raise ChildFailed(recorder.failure)
            history = recorder.history
            reward_epoch = (
                max(history, key=lambda m: m.val_accuracy).epoch
                if train.reward == "best"
                else history[-1].epoch
            )
            reward = history[reward_epoch - 1].val_accuracy
    except tf.errors.ResourceExhaustedError as exc:
        raise ChildRetryable(f"out of memory on {device.name}: {_first_line(exc)}") from None
    finally:
        keras.config.set_dtype_policy(previous_policy)

    seen = len(x_train) * (len(history) - initial_epoch if train.epochs else 0)
    return TrainResult(
        reward=float(reward),
        reward_epoch=int(reward_epoch),
        history=history,
        params=params,
        wall_seconds=time.perf_counter() - started,
        device=device.name,
        extra={
            "mixed_precision": mixed,
            "jit_compile": jit,
            "trainable_params": trainable,
            "train_samples": int(len(x_train)),
            "val_samples": int(len(dataset.x_val)),
            "fit_seconds": fit_seconds,
            "images_per_second": seen / fit_seconds if fit_seconds else None,
            "resumed_epoch": initial_epoch or None,
        },
    )


def _deterministic() -> bool:
    from shared.settings import get_settings

    return get_settings().deterministic


_LAST_DATASET: dict[tuple, Dataset] = {}  # a local worker trains many children on one dataset


def _dataset_for(train: TrainConfig) -> Dataset:
    """The run's dataset from the shared cache, kept in memory for the next child."""
    from shared.settings import get_settings

    cache_dir = get_settings().data_dir
    key = (train.dataset, train.validation_size, train.data_seed, str(cache_dir), train.max_train_samples)
    if key not in _LAST_DATASET:
        _LAST_DATASET.clear()
        _LAST_DATASET[key] = load_dataset(
            train.dataset,
            validation_size=train.validation_size,
            seed=train.data_seed,
            cache_dir=cache_dir,
            max_train_samples=train.max_train_samples,
        )
    return _LAST_DATASET[key]


def _compile(cell: Cell, train: TrainConfig, dataset: Dataset, total_steps: int, jit: bool, seed: int):
    from worker.network import build_network

    model = build_network(
        cell,
        input_shape=dataset.input_shape,
        num_classes=dataset.num_classes,
        stem=train.stem,
        cells_per_stage=train.cells_per_stage,
        filters=train.filters,
        drop_path_keep_prob=train.drop_path_keep_prob,
        total_training_steps=total_steps,
        weight_decay=train.weight_decay,
        seed=seed,
    )
    schedule = keras.optimizers.schedules.CosineDecay(train.learning_rate, decay_steps=total_steps)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=schedule, momentum=train.momentum),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit,
    )
    return model


def _train_pipeline(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int):
    """Every image exactly once per epoch, in a new seeded order each epoch (no repeat())."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y)).cache()
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _eval_pipeline(x: np.ndarray, y: np.ndarray, batch_size: int):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).cache()
    return ds.prefetch(tf.data.AUTOTUNE)


def _check_finite(value: float, epoch: int, what: str) -> None:
    if not math.isfinite(float(value)):
        raise ChildFailed(f"{what} became {float(value)} at epoch {epoch}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _EpochRecorder(keras.callbacks.Callback):
    """Collects `EpochMetrics`, hands each to ``on_epoch`` and stops on a NaN/inf loss."""

    def __init__(self, on_epoch, say) -> None:
        super().__init__()
        self.on_epoch, self.say = on_epoch, say
        self.history: list[EpochMetrics] = []
        self.failure: str | None = None
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None) -> None:
        logs = logs or {}
        m = EpochMetrics(
            epoch=epoch + 1,
            loss=float(logs.get("loss", float("nan"))),
            accuracy=float(logs.get("accuracy", float("nan"))),
            val_loss=float(logs.get("val_loss", float("nan"))),
            val_accuracy=float(logs.get("val_accuracy", float("nan"))),
            seconds=time.perf_counter() - self._t0,
        )
        for what, v in (("loss", m.loss), ("validation loss", m.val_loss)):
            if not math.isfinite(v):
                self.failure = f"{what} became {'NaN' if math.isnan(v) else v} at epoch {m.epoch}"
                self.model.stop_training = True
                return
        self.history.append(m)
        self.say(
            f"epoch {m.epoch}: loss {m.loss:.4f} acc {m.accuracy:.4f} "
            f"val_loss {m.val_loss:.4f} val_acc {m.val_accuracy:.4f} ({m.seconds:.1f}s)"
        )
        if self.on_epoch is not None:
            self.on_epoch(m)
