"""What a checkpoint costs per epoch, and its size: the search child (F=24, N=2) and the final
model (N=3, F=48), 32x32x3 inputs, on this CPU.

Builds each network as `train_child` does, trains one epoch on synthetic images (to time an
epoch), then writes checkpoints the way `worker.checkpoint_keras.CheckpointSaver` does (the
weights and optimizer state encoded, written atomically to a directory) and times them.

    .venv/bin/python bench/checkpoint_cost.py [--train 2048] [--saves 3] [--dir /tmp/pnas-ck-bench]

The epoch time is scaled to the paper's 45,000 training images (it is linear in images), so
the fraction shown is "checkpoint seconds / seconds of one full CIFAR-10 epoch".
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from shared.config import TrainConfig  # noqa: E402
from shared.space import PAPER_OPS, Cell  # noqa: E402
from worker.checkpoints import CheckpointStore, ChildCheckpoints, encode  # noqa: E402
from worker.network import build_network  # noqa: E402

PNASNET5 = [[-2, "sep5x5", -2, "max3x3"], [-1, "sep7x7", -1, "max3x3"], [-1, "sep5x5", -1, "sep3x3"],
            [2, "sep3x3", -1, "max3x3"], [-2, "sep3x3", -1, "identity"]]  # fmt: skip
CIFAR_TRAIN = 45_000


def main() -> None:
    import keras

    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=2048)
    ap.add_argument("--saves", type=int, default=3)
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    cell = Cell.of(PNASNET5, PAPER_OPS)
    root = a.dir or tempfile.mkdtemp(prefix="pnas-ck-bench-")
    store = CheckpointStore(root, database="bench")
    rng = np.random.default_rng(0)
    x = rng.random((a.train, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, a.train)
    for label, n, f in (("search child", 2, 24), ("final model", 3, 48)):
        keras.backend.clear_session()
        t = TrainConfig(cells_per_stage=n, filters=f)
        model = build_network(cell, input_shape=(32, 32, 3), num_classes=10, stem="cifar", cells_per_stage=n, filters=f,
                              drop_path_keep_prob=1.0, total_training_steps=1000, weight_decay=0.0, seed=0)  # fmt: skip
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy")
        model.fit(x[:256], y[:256], batch_size=t.batch_size, epochs=1, verbose=0)  # trace
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=t.batch_size, epochs=1, verbose=0)
        epoch_s = (time.perf_counter() - t0) * CIFAR_TRAIN / a.train
        ck = ChildCheckpoints(store, 0, n * 100 + f, 1, "search", 1)
        times, size = [], 0
        for e in range(1, a.saves + 1):
            t1 = time.perf_counter()
            w = [np.asarray(v) for v in model.get_weights()]
            o = [np.asarray(v.numpy()) for v in model.optimizer.variables]
            blob = encode(e, {"bench": label}, w, o, [])
            assert ck.save(blob, e)
            times.append(time.perf_counter() - t1)
            size = len(blob)
        save_s = min(times)
        print(f"{label} (N={n}, F={f}, {model.count_params():,} params): checkpoint {size / 1e6:.2f} MB, "
              f"{save_s:.3f} s (min of {a.saves}); a 45k-image epoch {epoch_s:.0f} s "
              f"(from {a.train} images); cost {save_s / epoch_s:.2%} of the epoch")  # fmt: skip


if __name__ == "__main__":
    main()
