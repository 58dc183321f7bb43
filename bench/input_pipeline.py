"""Host cost of the training input: augmentation in tf.data on the CPU against augmentation on
the device (issue 26), side by side in one run.

Two ways to feed a child the standard CIFAR augmentation (normalise, pad 4 + random crop,
flip, cutout 16), on the same CIFAR-shaped synthetic images (uint8 pixels; the CPU way gets
them as the float32 [0, 1] images `worker.datasets` holds), batch 128:
- ``cpu``     today's way before issue 26: `worker.augment.train_pipeline` augments in tf.data;
- ``device``  `worker.augment.host_batches` only slices the cached uint8 batches and hands each
              its stateless key; the training step augments (`worker.device_augment`);
- ``none``    for scale: `train_pipeline` without augmentation (float32 slices).

Part 1, the input alone: each pipeline drained (no model) as fast as it goes; host CPU-seconds
per image = the process's CPU time (every thread: tf.data's pool included) over the images,
the batches consumed inside TensorFlow (a `reduce`: no Python per batch, as in `fit`).
Part 2, the whole training step on this CPU: a small child network (`network_for`, F and N
below) trained through `model.fit` on each way's batches (the device way with the
`DeviceAugmented` step), one warm-up epoch then timed epochs, alternating the two ways
``--repeats`` times (best of each); per image: wall seconds and process CPU-seconds.

    .venv/bin/python bench/input_pipeline.py [--images 20000] [--train-images 2048] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL = 6000  # training images/s per GPU the 2-day goal needs (issue 16)
CELL = [[-2, "sep3x3", -1, "max3x3"], [0, "identity", -2, "sep5x5"]]  # two blocks: traces in seconds


def recipe():
    from worker.augment import Augment

    # CIFAR-like statistics; the recipe's cutout (paper-cifar: 16 px)
    return Augment(mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26), crop=True, flip=True, cutout=16)


def data(n: int):
    """(uint8 pixels, the float32 images worker.datasets makes of them, labels)."""
    import numpy as np

    from bench.gpu_suite import synthetic

    x, y = synthetic(n)
    pixels = np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)
    return pixels, pixels.astype(np.float32) / np.float32(255), y


def pipeline(way: str, pixels, floats, y, batch: int, *, epochs: int = 1, threads: int = 0):
    import tensorflow as tf

    from worker.augment import Augment, host_batches, train_pipeline

    n = len(y)
    if way == "device":
        ds = host_batches(tf.data.Dataset.from_tensor_slices((pixels, y)), n, batch, 0, epochs=epochs)
    else:
        aug = recipe() if way == "cpu" else Augment()
        ds = train_pipeline(tf.data.Dataset.from_tensor_slices((floats, y)), n, batch, 0, aug, epochs=epochs)
    if threads:
        opts = tf.data.Options()
        opts.threading.private_threadpool_size = threads
        ds = ds.with_options(opts)
    return ds


def drain(ds) -> tuple[int, float, float]:
    """(images, wall s, process CPU s) of one pass over ``ds``, consumed inside TensorFlow (a
    `reduce`, as `fit` takes batches inside its step function): no Python per batch."""
    import tensorflow as tf

    w0, c0 = time.perf_counter(), time.process_time()
    n = ds.reduce(tf.constant(0, tf.int64), lambda count, batch: count + tf.shape(batch[1], out_type=tf.int64)[0])
    return int(n), time.perf_counter() - w0, time.process_time() - c0


def measure_input(way: str, pixels, floats, y, *, batch: int, threads: int, epochs: int) -> dict:
    drain(pipeline(way, pixels, floats, y, batch, threads=threads))  # fills the cache, traces
    n, wall, cpu = drain(pipeline(way, pixels, floats, y, batch, epochs=epochs, threads=threads))
    return {"images_per_s": n / wall, "cpu_s_per_image": cpu / n}


def build(way: str, filters: int, cells: int, batch: int, steps: int, xla: bool):
    import keras

    from shared.config import TrainConfig
    from shared.space import Cell
    from worker.device_augment import DeviceAugmented
    from worker.network import network_for

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    train = TrainConfig(dataset="cifar10", filters=filters, cells_per_stage=cells, batch_size=batch)
    net = network_for(Cell.from_json(CELL), train, input_shape=(32, 32, 3), num_classes=10, total_steps=steps, seed=0)
    model = DeviceAugmented(net, recipe()) if way == "device" else net
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy",
                  jit_compile=xla)  # fmt: skip
    return model


def measure_training(way: str, pixels, floats, y, *, batch: int, filters: int, cells: int, epochs: int,
                     xla: bool) -> dict:  # fmt: skip
    """Wall and process CPU seconds per image of ``epochs`` timed training epochs."""
    n = len(y)
    steps = -(-n // batch)
    model = build(way, filters, cells, batch, steps * (epochs + 1), xla)
    model.fit(pipeline(way, pixels, floats, y, batch), epochs=1, steps_per_epoch=steps, verbose=0)  # trace
    ds = pipeline(way, pixels, floats, y, batch, epochs=epochs)
    w0, c0 = time.perf_counter(), time.process_time()
    model.fit(ds, epochs=epochs, steps_per_epoch=steps, verbose=0)
    return {"wall_s_per_image": (time.perf_counter() - w0) / (n * epochs),
            "cpu_s_per_image": (time.process_time() - c0) / (n * epochs)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20000, help="images of part 1 (the input alone)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs of part 1, after the cache-filling one")
    ap.add_argument("--threads", type=int, default=0, help="tf.data threads (0: tf.data's default, every core)")
    ap.add_argument("--train-images", type=int, default=2048, help="images of part 2 (training); 0: skip it")
    ap.add_argument("--train-epochs", type=int, default=1, help="timed epochs of part 2, after a warm-up one")
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--cells", type=int, default=1, help="cells per stage (N)")
    ap.add_argument("--repeats", type=int, default=2, help="part 2 alternates the ways this many times; best of each")
    ap.add_argument("--xla", action="store_true", help="compile the training step with XLA (slow to compile on a CPU)")
    args = ap.parse_args()

    from bench._common import machine

    pixels, floats, y = data(args.images)
    print(f"machine: {machine()}; {args.images} images 32x32x3, batch {args.batch_size}, "
          f"augmentation: normalise, pad 4 + crop, flip, cutout 16", flush=True)  # fmt: skip
    rows = {}
    for way in ("none", "cpu", "device"):
        rows[way] = r = measure_input(way, pixels, floats, y, batch=args.batch_size, threads=args.threads,
                                      epochs=args.epochs)  # fmt: skip
        print(f"input {way:6s} {r['images_per_s']:10,.0f} images/s, {r['cpu_s_per_image'] * 1e6:8.1f} host CPU-us/image "
              f"({r['images_per_s'] / GOAL:.1f}x the {GOAL:,}/s per GPU the goal needs)", flush=True)  # fmt: skip
    host_ratio = rows["cpu"]["cpu_s_per_image"] / rows["device"]["cpu_s_per_image"]
    print(f"SUMMARY host CPU-s per image: cpu / device = {host_ratio:.1f}x (goal >= 10x)", flush=True)
    if not args.train_images:
        return
    n = min(args.train_images, args.images)
    best: dict[str, dict] = {}
    for rep in range(args.repeats):
        for way in ("cpu", "device"):
            r = measure_training(way, pixels[:n], floats[:n], y[:n], batch=args.batch_size, filters=args.filters,
                                 cells=args.cells, epochs=args.train_epochs, xla=args.xla)  # fmt: skip
            print(f"train {way:6s} (run {rep + 1}) {r['wall_s_per_image'] * 1e3:7.3f} ms/image wall, "
                  f"{r['cpu_s_per_image'] * 1e3:7.3f} ms/image process CPU", flush=True)  # fmt: skip
            if way not in best or r["wall_s_per_image"] < best[way]["wall_s_per_image"]:
                best[way] = r
    step_ratio = best["device"]["wall_s_per_image"] / best["cpu"]["wall_s_per_image"]
    print(f"SUMMARY training step per image on this CPU (F={args.filters}, N={args.cells}, {n} images, "
          f"XLA {'on' if args.xla else 'off'}): device / cpu = {step_ratio:.2f} (goal <= 1: no slower)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
