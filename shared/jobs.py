"""Child jobs: their states and the immutable values the store hands out.

The broker carries only a job id; everything else a worker needs is read from the store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"  # the training code raised, or attempts ran out
    lost = "lost"  # the worker vanished (its lease expired); requeued while attempts remain


ALL_STATES = tuple(s.value for s in JobState)


class RunState(StrEnum):
    created = "created"
    running = "running"
    stopped = "stopped"  # interrupted (Ctrl-C, crash): the same command resumes
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
    resumed_epoch: int | None = None  # the current attempt continued from this epoch's checkpoint


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
