"""Child jobs: their states and the immutable values the store hands out.

The broker carries only a job id; everything else a worker needs is read from the store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


def child_seed(run_seed: int, network_id: str) -> int:
    """The seed a child trains with (weights, batch order): from the run's seed and the
    child's network id only, so the same run in another database trains every child alike.
    A 31-bit value (what Keras and TensorFlow accept everywhere)."""
    import numpy as np

    net = int(network_id, 16)
    words = [run_seed % 2**32, run_seed // 2**32 % 2**32, net & 0xFFFFFFFF, net >> 32]
    return int(np.random.SeedSequence(words).generate_state(1)[0]) & 0x7FFFFFFF


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"  # the training code raised, or attempts ran out
    lost = "lost"  # the worker vanished (its lease expired); requeued while attempts remain
    cancelled = "cancelled"  # `pnas cancel` or an abort; the same `pnas search` requeues it


ALL_STATES = tuple(s.value for s in JobState)
# Children that are over (for counts of "done"); cancelled ones wait for a resume.
ENDED_STATES = (JobState.succeeded.value, JobState.failed.value, JobState.lost.value, JobState.cancelled.value)


class Lease(StrEnum):
    """What a heartbeat tells the worker about its attempt."""

    ours = "ours"  # renewed: carry on
    stop = "stop"  # renewed, but `pnas cancel` asked for it to stop: end it as cancelled
    gone = "gone"  # no longer ours (declared lost, re-run elsewhere): abandon without writing


@dataclass(frozen=True)
class Cancelled:
    """What `Store.cancel` did (or would do, on a dry run)."""

    cancelled: list[int]  # queued (or lost, awaiting a requeue) children now cancelled
    stopping: list[int]  # running children whose workers were asked to stop them


class RunState(StrEnum):
    created = "created"
    running = "running"
    stopped = "stopped"  # interrupted (Ctrl-C, crash): the same command resumes
    cancelled = "cancelled"  # `pnas cancel` stopped its children: the same command resumes
    finished = "finished"
    aborted = "aborted"  # too many consecutive failures


class LevelState(StrEnum):
    training = "training"  # until every child of the level is terminal
    done = "done"  # its children are terminal and the predictor was refitted


def finite_or_none(x: float | None) -> float | None:
    """A metric as a float, or None when it is missing, NaN or infinite (stored as unknown)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int  # 1-based
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float

    def line(self) -> str:
        """The one-line form a child's log shows for this epoch."""
        return (
            f"epoch {self.epoch}: loss {self.loss:.4f} acc {self.accuracy:.4f} "
            f"val_loss {self.val_loss:.4f} val_acc {self.val_accuracy:.4f} ({self.seconds:.1f}s)"
        )


@dataclass(frozen=True)
class TrainResult:
    """What training one child produced. ``reward`` is the validation accuracy."""

    reward: float
    reward_epoch: int  # which epoch gave the reward (best or final, per TrainConfig.reward)
    history: list[EpochMetrics]
    params: int
    wall_seconds: float
    device: str
    test_accuracy: float | None = None  # on the test split, when asked; never the reward
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobView:
    """A child job as the store hands it out (never an ORM object)."""

    id: int
    run_id: int
    level: int  # b; 0 for jobs outside the search (final training)
    arch_id: str
    cell: list  # the cell as JSON-ready lists
    kind: str  # "search" or "final"
    state: JobState
    attempts: int
    max_attempts: int
    predicted: float | None
    rank: int | None
    worker: str | None
    reward: float | None
    params: int | None
    wall_seconds: float | None
    device: str | None
    error_class: str | None
    error_message: str | None
    log_tail: str | None
    train: dict  # TrainConfig overrides for this job (final training); {} = the run's
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    lease_until: datetime | None
    stop_requested: bool = False  # `pnas cancel` asked the worker running it to stop
    network_id: str | None = None  # shared by the cells that are the same network
    duplicate_of: int | None = None  # a run made before network ids trained this network first as that job
    test_accuracy: float | None = None  # test split, when measured: reported, never the reward
    resumed_epoch: int | None = None  # the current attempt continued from this epoch's checkpoint
    rung: int = 0  # multi-fidelity: the rung it trains to (0: the first; SearchConfig.rungs())
    epochs_trained: int | None = None  # the epochs its reward is from
    rung_rewards: dict | None = None  # {"epochs": reward} of every rung it completed
    flops: int | None = None  # multiply-adds of one image through the network (shared.space.cost)
    latency_ms: float | None = None  # predicted batch-1 latency on the run's latency table's device (shared.latency)


@dataclass(frozen=True)
class RunView:
    id: int
    name: str
    config: dict
    seed: int
    state: RunState
    level: int  # the level the run is at (0 before it starts)
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    message: str | None = None  # why it stopped or aborted


@dataclass(frozen=True)
class LevelView:
    id: int
    run_id: int
    b: int
    state: LevelState
    candidates: int  # candidates scored to choose this level's children
    spearman_extrapolation: float | None  # predicted vs measured on this level's children
    spearman_insample: float | None  # after refitting on everything so far
    started_at: datetime
    finished_at: datetime | None
    distinct_candidates: int | None = None  # of the candidates, networks new to the run (None: before network ids)
