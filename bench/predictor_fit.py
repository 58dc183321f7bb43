"""Fitting the surrogate at level 5: the stacked trainer against the Keras one, side by side.

The data of a level-5 fit at the paper's setting (8 operators, B=5, K=256): the 136 one-block
cells and 256 random cells at each of b=2..5, 1,160 rows, rewards from the instant trainer's
synthetic function (`tests/fakes.py`, no noise). For each seed three ways fit a 5-member
LSTM ensemble with the same arguments, one after the other: the Keras trainer (`keras`), the
stacked trainer with Keras' mixed batches (`stacked-mixed`) and the stacked trainer as the
project fits (`stacked`: batches of one cell length, `ensemble.BATCHES`); the script prints wall and CPU seconds
(the first epoch apart: it traces and compiles), the in-sample Spearman and the Spearman on
2,000 unseen random b=5 cells (held out: how well the fit generalises to cells it never saw).

    .venv/bin/python bench/predictor_fit.py [--epochs 200] [--seeds 0,1] [--members 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench._common import machine  # noqa: E402
from bench.scoring import random_beam  # noqa: E402
from controller.predictor import fit_ensemble, spearman  # noqa: E402
from shared.space import SearchSpace  # noqa: E402
from tests.fakes import true_reward  # noqa: E402


ARMS = {"keras": {"trainer": "keras"}, "stacked-mixed": {"trainer": "stacked", "batches": "mixed"}, "stacked": {"trainer": "stacked"}}


def rewards_of(batch) -> np.ndarray:
    return np.array([true_reward(batch.cell(r)) for r in range(len(batch))], np.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=200, help="the default predictor_epochs is 200")
    p.add_argument("--seeds", default="0,1", help="comma-separated fitting seeds")
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--beam", type=int, default=256)
    args = p.parse_args()
    space = SearchSpace()
    rng = np.random.default_rng(0)
    cells = [space.one_block_cells()] + [random_beam(space, b, args.beam, rng) for b in range(2, space.blocks + 1)]
    rewards = np.concatenate([rewards_of(c) for c in cells])
    unseen = random_beam(space, space.blocks, 2000, np.random.default_rng(99))
    unseen_rewards = rewards_of(unseen)
    print(f"{machine()}; {len(rewards)} rows, {args.members} members, {args.epochs} epochs")
    seen: dict[str, list[tuple[float, float, float, float]]] = {arm: [] for arm in ARMS}
    for seed in [int(s) for s in args.seeds.split(",") if s]:
        for trainer, how in ARMS.items():
            marks: list[tuple[float, float]] = []
            load = os.getloadavg()[0]
            t, c = time.perf_counter(), time.process_time()
            ens = fit_ensemble(space, cells, rewards, members=args.members, epochs=args.epochs, seed=seed,
                               **how, on_epoch=lambda e, loss: marks.append((time.perf_counter(), time.process_time())))  # type: ignore[arg-type]  # fmt: skip
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            later = (marks[-1][1] - marks[0][1]) / max(1, len(marks) - 1)
            ins = spearman(ens.predict(cells), rewards)
            out = spearman(ens.predict(unseen), unseen_rewards)
            seen[trainer].append((wall, cpu, ins, out))
            print(
                f"seed {seed} {trainer:>13}: {wall:6.1f} s wall, {cpu:6.1f} s CPU (first epoch {marks[0][1] - c:.1f} s CPU, "
                f"then {later:.2f} s CPU an epoch); Spearman in-sample {ins:.3f}, unseen b=5 {out:.3f}; load {load:.1f}"
            )
    k, sm, s = (np.array(seen[arm]) for arm in ARMS)
    print(
        f"predictor fit: {len(rewards)} rows, {args.members} members, {args.epochs} epochs; stacked against keras "
        f"{np.median(k[:, 0] / s[:, 0]):.1f}x by wall, {np.median(k[:, 1] / s[:, 1]):.1f}x by CPU "
        f"(stacked-mixed {np.median(k[:, 0] / sm[:, 0]):.1f}x, {np.median(k[:, 1] / sm[:, 1]):.1f}x; medians over seeds); "
        f"Spearman in-sample keras {k[:, 2].mean():.3f} stacked-mixed {sm[:, 2].mean():.3f} stacked {s[:, 2].mean():.3f}, "
        f"unseen b=5 keras {k[:, 3].mean():.3f} stacked-mixed {sm[:, 3].mean():.3f} stacked {s[:, 3].mean():.3f}"
    )


if __name__ == "__main__":
    main()
