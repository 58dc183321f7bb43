"""Multi-fidelity inside a level: asynchronous successive halving (ASHA, Li et al. 2020).

A search child of a ``fidelity = "asha"`` run is trained to its rung's epochs
(`SearchConfig.rungs()`: r, r*eta, ..., the full epochs) and stops there. The controller
decides, reading the store (a worker knows no search): a child that completed rung k goes on
to rung k+1 when it is among the best 1/eta of the children that completed rung k so far
(no waiting for the rung to fill). When the level has nothing queued or running, the rule
is applied with at least one child per rung, so the level ends as synchronous successive
halving would: nobody it would have continued is left behind, and at least one child is
trained to the full epochs.

A promotion (`Store.promote`) queues the same job again at the next rung, conditional on its
state, so repeating a decision (two controllers, a restart) promotes nobody twice; the worker
continues it from its rung's checkpoint with the full epochs' learning-rate schedule.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from shared.config import SearchConfig
from shared.jobs import JobState, JobView
from shared.store import Store


def reward_at(job: JobView, epochs: int) -> float | None:
    """The child's reward when it was trained to ``epochs`` (None: it never completed that rung)."""
    return (job.rung_rewards or {}).get(str(epochs))


def predicted_and_measured(jobs: list[JobView], cfg: SearchConfig) -> list[tuple[float, float]]:
    """(predicted, measured accuracy) of the children with both, the accuracies of one training
    length, for the level's extrapolation Spearman: at full fidelity the children's; in a
    multi-fidelity run their first rung's, which every child completed (their highest rungs'
    would set 1-epoch accuracies against 4-epoch ones)."""
    first = cfg.rungs()[0]
    measured = [(j.predicted, j.reward if cfg.fidelity == "full" else reward_at(j, first)) for j in jobs]
    return [(p, r) for p, r in measured if p is not None and r is not None]


def promotions(jobs: list[JobView], rungs: list[int], eta: int, *, drained: bool) -> list[tuple[JobView, int]]:
    """(child, its rung) for every child due a promotion now. ``drained``: the level has
    nothing queued or running, so each rung continues at least its best child."""
    due = []
    for k, epochs in enumerate(rungs[:-1]):
        completed = [j for j in jobs if reward_at(j, epochs) is not None]
        quota = len(completed) // eta
        if drained and completed:
            quota = max(quota, 1)
        best = sorted(completed, key=lambda j: (-(reward_at(j, epochs) or 0.0), j.id))[:quota]
        due += [(j, k) for j in best if j.state == JobState.succeeded and j.rung == k and j.epochs_trained == epochs]
    return due


@dataclass
class Promoter:
    """Applies `promotions` to one level of a run; `step` returns the ids queued again."""

    store: Store
    cfg: SearchConfig
    seconds: float = 0.0  # spent deciding and promoting (the controller's overhead)
    promoted: int = 0
    rounds: int = 0  # decisions made (the level read)
    _seen: tuple = field(default=(), repr=False)

    @property
    def active(self) -> bool:
        return self.cfg.fidelity == "asha" and len(self.cfg.rungs()) > 1

    def step(self, run_id: int, b: int, *, succeeded: int, drained: bool) -> list[int]:
        """Promote the children of level b due a promotion. Reads the level only when the
        number of succeeded children changed since the last call, or when it drained."""
        if not self.active or (not drained and self._seen == (b, succeeded)):
            return []
        self._seen = (b, succeeded)
        t0 = time.perf_counter()
        self.rounds += 1
        rungs = self.cfg.rungs()
        jobs = self.store.jobs(run_id, level=b, kind="search")
        due = promotions(jobs, rungs, self.cfg.reduction_factor, drained=drained)
        ids = self.store.promote([(j.id, k, rungs[k]) for j, k in due]) if due else []
        self._seen = (b, succeeded - len(ids))  # what the next poll counts if nothing else ends
        self.promoted += len(ids)
        self.seconds += time.perf_counter() - t0
        return ids
