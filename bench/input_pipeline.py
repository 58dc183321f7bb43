"""The tf.data input pipeline alone: images/s per worker, with the CPU share of k workers per host.

No model: the pipeline is drained as fast as it goes, so the figure is what it can feed a GPU.
Variants (CIFAR-shaped float32 data, already decoded and cached in memory, batch 128):
- ``tree``     worker/training.py's pipeline as it is: cache, shuffle, batch, prefetch;
- ``aug``      + the standard CIFAR augmentation (pad 4, random 32x32 crop, random flip),
               mapped on whole batches with parallel map (AUTOTUNE) before prefetch;
- ``aug-img``  the same augmentation mapped per image (parallel), then batched.
The augmentation is written here (this tree's training.py has none yet); once the recipe work
lands, point ``--variants`` at its pipeline. Each worker of k on a host gets cpus/k threads
(tf.data's private thread pool), as k `pnas worker` processes sharing the host would.

    .venv/bin/python bench/input_pipeline.py [--images 20000] [--k 1,2,4] [--variants tree,aug,aug-img]
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


def augment_batch(x, y):
    """Pad 4, crop back to 32x32 at a random offset per image, flip half (a batch at a time)."""
    import tensorflow as tf

    n = tf.shape(x)[0]
    x = tf.pad(x, [[0, 0], [4, 4], [4, 4], [0, 0]], mode="REFLECT")
    offsets = tf.random.uniform([n, 2], 0, 9, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(32)[None, :]  # (n, 32)
    cols = offsets[:, 1:] + tf.range(32)[None, :]
    x = tf.gather(x, rows, axis=1, batch_dims=1)
    x = tf.gather(x, cols, axis=2, batch_dims=1)
    flip = tf.random.uniform([n, 1, 1, 1]) < 0.5
    return tf.where(flip, tf.reverse(x, axis=[2]), x), y


def augment_image(x, y):
    import tensorflow as tf

    x = tf.pad(x, [[4, 4], [4, 4], [0, 0]], mode="REFLECT")
    x = tf.image.random_crop(x, [32, 32, 3])
    return tf.image.random_flip_left_right(x), y


def pipeline(variant: str, x, y, batch: int, threads: int):
    import tensorflow as tf

    if variant == "tree":
        from worker.augment import Augment, train_pipeline

        ds = train_pipeline(tf.data.Dataset.from_tensor_slices((x, y)), len(x), batch, 0, Augment())
    else:
        ds = tf.data.Dataset.from_tensor_slices((x, y)).cache().shuffle(len(x), seed=0, reshuffle_each_iteration=True)
        if variant == "aug":
            ds = ds.batch(batch).map(augment_batch, num_parallel_calls=tf.data.AUTOTUNE)
        else:
            ds = ds.map(augment_image, num_parallel_calls=tf.data.AUTOTUNE).batch(batch)
        ds = ds.prefetch(tf.data.AUTOTUNE)
    opts = tf.data.Options()
    opts.threading.private_threadpool_size = threads
    return ds.with_options(opts)


def measure(variant: str, x, y, *, batch: int, threads: int, epochs: int) -> float:
    ds = pipeline(variant, x, y, batch, threads)
    for _ in ds:  # the first epoch fills the cache
        pass
    t0 = time.perf_counter()
    n = 0
    for _ in range(epochs):
        for xb, _yb in ds:
            n += int(xb.shape[0])
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs after the cache-filling one")
    ap.add_argument("--k", default="1,2,4", help="workers per host (each gets cpus/k threads)")
    ap.add_argument("--variants", default="tree,aug,aug-img")
    args = ap.parse_args()

    import tensorflow as tf

    from bench._common import machine
    from bench.gpu_suite import synthetic

    tf.config.threading.set_inter_op_parallelism_threads(1)  # the pool below does the work
    cpus = os.cpu_count() or 1
    x, y = synthetic(args.images)
    print(f"machine: {machine()}; {args.images} images 32x32x3 float32, batch {args.batch_size}", flush=True)
    for k in [int(v) for v in args.k.split(",")]:
        threads = max(1, cpus // k)
        for variant in args.variants.split(","):
            ips = measure(variant, x, y, batch=args.batch_size, threads=threads, epochs=args.epochs)
            print(f"k={k} ({threads} thread{'s' * (threads > 1)} per worker) {variant:8s} {ips:10,.0f} images/s "
                  f"({ips / GOAL:.1f}x the {GOAL:,}/s per GPU the goal needs)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
