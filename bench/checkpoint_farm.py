"""GPU time saved by resuming from checkpoints, in a simulated farm with preemptible workers.

A paper-size search (Liu et al. 2018: B=5, K=256, 8 operators -> 136 + 4 x 256 = 1160
children, 20 epochs each) on W workers, every epoch of equal length (one time unit). Levels
run one after the other, as the controller runs them. At every time unit each busy worker is
killed with probability p (a preemption, at a uniform moment inside the epoch, whose partial
epoch is wasted); a fresh worker takes its place, and the child goes back to the queue as
its next attempt (at most `max_attempts`, as PNAS_MAX_ATTEMPTS, default 3). With resume, the
next attempt starts after the last completed epoch (a checkpoint every epoch, as for
children whose epoch takes over a minute); without, at epoch 1.
p is given as the fraction of workers killed per child length (20 epochs): p = f / 20.

This models the queue discipline of `worker/runner.py` (a lost child is requeued; a resumed
attempt continues from its checkpoint), not the network code: it runs in a second.

    python bench/checkpoint_farm.py [--workers 50] [--fractions 0.05,0.2,0.5] [--seeds 5]
"""

from __future__ import annotations

import argparse
import random
import statistics

LEVELS = [136, 256, 256, 256, 256]
EPOCHS = 20


def simulate(workers: int, f: float, resume: bool, seed: int, max_attempts: int = 3) -> tuple[float, int, int]:
    """Returns (GPU time in epochs, children that ran out of attempts, elapsed time units)."""
    rng = random.Random(seed)
    p = f / EPOCHS
    gpu = 0.0
    failed = 0
    clock = 0
    for n in LEVELS:
        queue = [[0, 0] for _ in range(n)]  # [epochs done, attempts used]
        busy: list[list[int]] = []
        while queue or busy:
            while queue and len(busy) < workers:
                child = queue.pop(0)
                child[1] += 1
                if not resume:
                    child[0] = 0
                busy.append(child)
            clock += 1
            still = []
            for child in busy:
                if rng.random() < p:  # killed inside this epoch
                    gpu += rng.random()
                    if child[1] < max_attempts:
                        queue.append(child)
                    else:
                        failed += 1
                    continue
                gpu += 1
                child[0] += 1
                if child[0] < EPOCHS:
                    still.append(child)
            busy = still
    return gpu, failed, clock


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=50)
    ap.add_argument("--fractions", default="0.05,0.2,0.5")
    ap.add_argument("--seeds", type=int, default=5)
    a = ap.parse_args()
    ideal = sum(LEVELS) * EPOCHS
    print(f"{sum(LEVELS)} children x {EPOCHS} epochs = {ideal} child-epochs without failures; {a.workers} workers; "
          f"mean of {a.seeds} seeds")  # fmt: skip
    print("killed per child length | child-epochs without resume | with resume | saved | children out of attempts (without / with)")
    for f in (float(x) for x in a.fractions.split(",")):
        runs = {r: [simulate(a.workers, f, r, s) for s in range(a.seeds)] for r in (False, True)}
        g = {r: statistics.mean(x[0] for x in runs[r]) for r in runs}
        fl = {r: statistics.mean(x[1] for x in runs[r]) for r in runs}
        print(f"{f:>23.0%} | {g[False]:>27,.0f} | {g[True]:>11,.0f} | {1 - g[True] / g[False]:>5.1%} | "
              f"{fl[False]:.1f} / {fl[True]:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
