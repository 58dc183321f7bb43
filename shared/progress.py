"""What a run and its levels have done, from what happened to their children: one definition
for `pnas status`, `pnas runs` and the dashboard.

A child counts as *trained* once it completed a training: it succeeded, or (multi-fidelity)
it succeeded at a rung and was promoted, and is queued or running again to its next rung
(*training further*: still trained, also pending). Failed and lost ones count as *failed*,
cancelled ones (waiting for a resume) as *cancelled*. A level that is not done is *training*
only while its run runs; otherwise it takes the run's state (``stopped``, ``aborted``). Elapsed
time ends now for a live run and at the last thing that happened otherwise; only a live run
has an ETA.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.jobs import ALL_STATES, JobState, LevelState, RunState

LIVE_RUN_STATES = (RunState.created.value, RunState.running.value)


@dataclass(frozen=True)
class Tally:
    """Children by state, and what the counts mean."""

    counts: dict[str, int]
    further: int = 0  # of the queued and running, those promoted after a rung (training further)

    @classmethod
    def of(cls, counts: dict[str, int] | None, *, further: int = 0) -> Tally:
        return cls({st: int((counts or {}).get(st, 0) or 0) for st in ALL_STATES}, int(further or 0))

    @property
    def trained(self) -> int:
        """Succeeded, or promoted after a rung and training further: a promotion never takes
        a child off the count."""
        return self.counts[JobState.succeeded.value] + self.further

    @property
    def failed(self) -> int:
        return self.counts[JobState.failed.value] + self.counts[JobState.lost.value]

    @property
    def cancelled(self) -> int:
        return self.counts[JobState.cancelled.value]

    @property
    def pending(self) -> int:
        return self.counts[JobState.queued.value] + self.counts[JobState.running.value]

    @property
    def done(self) -> int:
        """Succeeded or failed: the children whose training is over (the rate an ETA uses)."""
        return self.counts[JobState.succeeded.value] + self.failed

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def words(self, expected: int | None = None) -> str:
        """``"17/37 children trained (4 training further), 3 failed, 2 cancelled"`` (zero counts
        left out)."""
        of = f"/{expected}" if expected is not None else ""
        further = f" ({self.further} training further)" if self.further else ""
        extra = [f"{n} {what}" for n, what in ((self.failed, "failed"), (self.cancelled, "cancelled")) if n]
        return ", ".join([f"{self.trained}{of} children trained{further}", *extra])


def best_words(best: float | None, epochs: int | None, full: int | None) -> str:
    """``0.9000``, or ``0.9000 at 2/4 epochs`` while no child reached the full epochs (a
    multi-fidelity run's best so far is then from an earlier rung), or ``-``."""
    if best is None:
        return "-"
    if epochs is None or not full or epochs >= full:
        return f"{best:.4f}"
    return f"{best:.4f} at {epochs}/{full} epochs"


def is_live(run_state: str) -> bool:
    return str(run_state) in LIVE_RUN_STATES


def level_state(level: str | None, run_state: str) -> str:
    """``done`` once the level is done; else ``training`` while the run runs, or the run's state."""
    if level is not None and str(level) == LevelState.done.value:
        return LevelState.done.value
    return LevelState.training.value if is_live(run_state) else str(run_state)


def _latest(*times: datetime | None) -> datetime | None:
    return max((t for t in times if t is not None), default=None)


@dataclass(frozen=True)
class LevelReport:
    state: str
    tally: Tally
    started_at: datetime | None
    elapsed_seconds: float | None
    eta_seconds: float | None

    @property
    def progress(self) -> float:
        """Trained of the level's children (0..1): failed and cancelled ones do not fill it."""
        return self.tally.trained / self.tally.total if self.tally.total else 0.0


def level_report(
    *,
    counts: dict[str, int] | None,
    level_state_value: str | None,
    level_started: datetime | None,
    level_finished: datetime | None,
    first_child_started: datetime | None,
    last_child_finished: datetime | None,
    run_state: str,
    run_stopped_at: datetime | None,
    now: datetime,
    further: int = 0,
) -> LevelReport:
    """A level's state, elapsed time and ETA.

    Elapsed runs from the level's start (its children being chosen included) to: its finish
    when done; now while the run is live; else the later of its last child's finish and the
    moment the run stopped (``run_stopped_at``). The ETA (live runs only, unfinished levels
    only) assumes the remaining children take as long as the ones done so far. ``further``:
    the children training further after a rung (`Tally`)."""
    tally = Tally.of(counts, further=further)
    state = level_state(level_state_value, run_state)
    start = level_started or first_child_started
    if state == LevelState.done.value:
        end = level_finished or last_child_finished
    elif is_live(run_state):
        end = now
    else:
        end = _latest(last_child_finished, run_stopped_at)
    elapsed = max(0.0, (end - start).total_seconds()) if start and end else None
    eta = None
    if state == LevelState.training.value and elapsed is not None:
        if tally.pending == 0:
            eta = 0.0
        elif tally.done:
            eta = elapsed / tally.done * tally.pending
    return LevelReport(state, tally, start, elapsed, eta)


def run_elapsed(
    *, created_at: datetime, run_state: str, stopped_at: datetime | None, last_child_finished: datetime | None, now: datetime
) -> float:
    """From the run's creation to now (live) or to the last thing that happened: its stop or
    finish, or a child finishing after it (workers may finish what they hold after a stop)."""
    end = now if is_live(run_state) else (_latest(stopped_at, last_child_finished) or created_at)
    return max(0.0, (end - created_at).total_seconds())


def run_eta(*, run_state: str, elapsed: float, tally: Tally, expected: int) -> float | None:
    """Seconds left at the rate so far (live runs only); 0 for a finished run."""
    if str(run_state) == RunState.finished.value:
        return 0.0
    if not is_live(run_state) or not tally.done:
        return None
    return elapsed / tally.done * max(0, expected - tally.done)
