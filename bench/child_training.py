"""Is `train_child` as fast as a plain `model.fit` on NumPy arrays? (CPU benchmark)

Same cell, same network (`network_for`: the same initialisation, BN and weight decay), same
synthetic 32x32x3 data, same optimizer and batch size. Three sides: plain ``model.fit`` (no
augmentation), ``train_child`` with ``augment = "none"`` and with ``augment = "standard"``
(normalisation, pad + crop, flip: the CIFAR default). Each side runs E epochs with validation
and stamps the clocks at each epoch's end; the intervals between stamps after the first epoch
(tracing, warm-up) give training images per second of wall time, and CPU-seconds per 1000
images (process time: steadier than wall time when other jobs share the machine). Each round
runs the sides in a rotated order so drift hits all alike.

    .venv/bin/python bench/child_training.py [--train 2048] [--epochs 3] [--rounds 3]

It also times the input pipelines alone (no model), to show they are never the bottleneck.

The last lines are the summary: ``ratio = train_child / model.fit`` per augmentation
(>= 1 is no slower).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from shared.config import TrainConfig  # noqa: E402
from shared.space import BUILTIN_CELLS, Cell  # noqa: E402
from worker.datasets import Dataset  # noqa: E402
from worker.network import network_for  # noqa: E402
from worker.training import train_child  # noqa: E402


def synthetic(n_train: int, n_val: int, seed: int = 0) -> Dataset:
    """32x32x3 images whose class sets the mean colour of a random patch: learnable."""
    rng = np.random.default_rng(seed)
    n = n_train + n_val
    y = rng.integers(0, 10, n).astype(np.int32)
    x = rng.random((n, 32, 32, 3), dtype=np.float32) * 0.5
    x[:, 8:24, 8:24, :] += (y[:, None, None, None] / 20.0).astype(np.float32)
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], None, None,
                   (32, 32, 3), 10, "synthetic32")


class _Stamps(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.stamps: list[tuple[float, float]] = []

    def on_epoch_end(self, epoch, logs=None):
        self.stamps.append((time.perf_counter(), time.process_time()))


def plain_fit(cell: Cell, cfg: TrainConfig, ds: Dataset, seed: int) -> list[tuple[float, float]]:
    """The reference: the same network and optimizer, model.fit on NumPy arrays."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    steps = -(-len(ds.x_train) // cfg.batch_size) * cfg.epochs
    model = network_for(cell, cfg, input_shape=ds.input_shape, num_classes=ds.num_classes, seed=seed)
    model.compile(
        optimizer=keras.optimizers.SGD(
            keras.optimizers.schedules.CosineDecay(cfg.learning_rate, steps), momentum=cfg.momentum),
        loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=False)
    cb = _Stamps()
    model.fit(ds.x_train, ds.y_train, batch_size=cfg.batch_size, epochs=cfg.epochs,
              validation_data=(ds.x_val, ds.y_val), verbose=0, callbacks=[cb])
    return cb.stamps


def ours(augment: str):
    def run(cell: Cell, cfg: TrainConfig, ds: Dataset, seed: int) -> list[tuple[float, float]]:
        stamps: list[tuple[float, float]] = []
        train_child(cell, cfg.model_copy(update={"augment": augment}), dataset=ds, seed=seed,
                    on_epoch=lambda _m: stamps.append((time.perf_counter(), time.process_time())))
        return stamps

    return run


def pipeline_rate(ds: Dataset, batch_size: int, epochs: int = 3) -> tuple[float, float]:
    """Images/s of the two input pipelines alone: ours and Keras's NumPy adapter."""
    import tensorflow as tf
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    from worker.augment import Augment, channel_stats, train_pipeline

    def drain(make) -> float:
        t = time.perf_counter()
        for _ in range(epochs):
            for _batch in make():
                pass
        return len(ds.x_train) * epochs / (time.perf_counter() - t)

    source = tf.data.Dataset.from_tensor_slices((ds.x_train, ds.y_train))
    mean, std = channel_stats(ds.x_train)
    plain = train_pipeline(source, len(ds.x_train), batch_size, 0, Augment())
    standard = train_pipeline(source, len(ds.x_train), batch_size, 0, Augment(mean, std, crop=True, flip=True))
    adapter = ArrayDataAdapter(ds.x_train, ds.y_train, batch_size=batch_size, shuffle=True)
    return drain(lambda: plain), drain(lambda: standard), drain(adapter.get_tf_dataset)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=2048, help="training images")
    ap.add_argument("--val", type=int, default=512, help="validation images")
    ap.add_argument("--epochs", type=int, default=3, help="per run; the first is warm-up")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, each side once per round")
    ap.add_argument("--filters", type=int, default=8)
    ap.add_argument("--n", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--cell", default="pnasnet5")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    if args.epochs < 2:
        ap.error("--epochs must be >= 2 (the first is warm-up)")

    cell = BUILTIN_CELLS[args.cell]
    ds = synthetic(args.train, args.val)
    cfg = TrainConfig(dataset="synthetic", epochs=args.epochs, filters=args.filters,
                      cells_per_stage=args.n, batch_size=args.batch_size, learning_rate=0.05,
                      mixed_precision="off", jit_compile="off")
    p_ours, p_std, p_keras = pipeline_rate(ds, args.batch_size)
    print(f"input pipeline alone: ours {p_ours:,.0f} images/s (augmented {p_std:,.0f}), "
          f"Keras NumPy adapter {p_keras:,.0f} images/s")
    names = ("model.fit(numpy)", "train_child none", "train_child standard")
    rate: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    for r in range(args.rounds):
        order = list(zip(names, (plain_fit, ours("none"), ours("standard"))))
        for name, fn in order[r % 3:] + order[: r % 3]:  # rotated: no side always goes first
            stamps = fn(cell, cfg, ds, seed=r)
            wall = stamps[-1][0] - stamps[0][0]  # epochs 2..E
            proc = stamps[-1][1] - stamps[0][1]
            images = len(ds.x_train) * (len(stamps) - 1)
            rate[name].append(images / wall)
            cpu[name].append(1000 * proc / images)
            print(f"round {r + 1} {name:20s} {images / wall:8.1f} images/s  "
                  f"{1000 * proc / images:6.2f} CPU-s per 1000 images", flush=True)
    med = {k: (statistics.median(rate[k]), statistics.median(cpu[k])) for k in names}
    b_ips, b_cpu = med[names[0]]
    print("median: " + "; ".join(f"{k} {med[k][0]:.1f} images/s, {med[k][1]:.2f} CPU-s/1000" for k in names))
    for k in names[1:]:
        o_ips, o_cpu = med[k]
        print(f"SUMMARY cpu child training ({k.split()[-1]}): ratio train_child/model.fit = {o_ips / b_ips:.3f} "
              f"by wall time, {b_cpu / o_cpu:.3f} by CPU time (>= 1 is no slower; {args.rounds} rounds, "
              f"{args.train} synthetic 32x32x3 images, {args.cell} N={args.n} F={args.filters} "
              f"batch {args.batch_size})")

if __name__ == "__main__":
    main()
