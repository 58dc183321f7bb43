"""How the search reports progress: a level's counts, best so far and ETA, to a `Reporter`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from shared.progress import Tally


@dataclass
class LevelProgress:
    b: int
    total: int
    counts: dict
    best: float | None
    elapsed: float
    eta: float | None
    further: int = 0  # promoted after a rung, queued or running again (multi-fidelity)
    best_epochs: int | None = None  # what ``best`` is from: below full_epochs while no child reached them
    full_epochs: int = 0

    @property
    def done(self) -> int:
        """Succeeded or failed, as `pnas status` counts them (`shared.progress.Tally`): the
        children whose training is over, the rate the ETA uses."""
        return Tally.of(self.counts).done

    @property
    def trained(self) -> int:
        """Succeeded, or training further after a rung: a promotion never lowers it."""
        return Tally.of(self.counts, further=self.further).trained


@dataclass
class FitProgress:
    """The predictor ensemble's fit after level ``b``: all members train together, one epoch
    at a time over ``rows`` trained children."""

    b: int
    members: int
    epoch: int
    epochs: int
    rows: int
    loss: float
    elapsed: float  # since the fit started (TensorFlow's start-up included)
    since_first: float  # since epoch 1 ended: the ETA's base, start-up excluded

    @property
    def eta(self) -> float | None:
        return self.since_first / (self.epoch - 1) * (self.epochs - self.epoch) if self.epoch > 1 else None


class Reporter(Protocol):
    def level_started(self, b: int, *, total: int, candidates: int, resumed: bool) -> None: ...
    def progress(self, p: LevelProgress) -> None: ...
    def fit_progress(self, p: FitProgress) -> None: ...
    def level_done(self, b: int, *, summary: dict) -> None: ...
    def message(self, text: str) -> None: ...


class SilentReporter:
    def level_started(self, b: int, *, total: int, candidates: int, resumed: bool) -> None: ...
    def progress(self, p: LevelProgress) -> None: ...
    def fit_progress(self, p: FitProgress) -> None: ...
    def level_done(self, b: int, *, summary: dict) -> None: ...
    def message(self, text: str) -> None: ...


class LevelClock:
    """Turns successive aggregates of one level into `LevelProgress`, the ETA from the
    children finished since this controller started waiting (resumed ones do not count)."""

    def __init__(self, b: int) -> None:
        self.b = b
        self.start = time.monotonic()
        self.first_done: int | None = None

    def progress(self, aggregate: dict) -> LevelProgress:
        counts = aggregate["counts"]
        p = LevelProgress(self.b, aggregate["total"], counts, aggregate["best"], time.monotonic() - self.start, None,
                          further=aggregate.get("further", 0), best_epochs=aggregate.get("best_epochs"),
                          full_epochs=aggregate.get("full_epochs", 0))  # fmt: skip
        if self.first_done is None:
            self.first_done = p.done
        new = p.done - self.first_done
        if new > 0:
            p.eta = p.elapsed / new * (p.total - p.done)
        return p
