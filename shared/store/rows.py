"""ORM rows to immutable views, and the small query helpers every part of the store shares."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Iterable, Iterator, TypeVar

from sqlalchemy import and_, func, select

from shared.db.models import ChildJob, Level, Run
from shared.jobs import JobState, JobView, LevelState, LevelView, RunState, RunView

T = TypeVar("T")

# The view field that holds each view's state, and the enum that state is.
_STATE_ENUM: dict[type, type[StrEnum]] = {JobView: JobState, RunView: RunState, LevelView: LevelState}


def as_datetime(v: Any) -> Any:
    """SQLite hands some timestamps back as ISO text; everything else passes through."""
    if isinstance(v, str):
        return datetime.fromisoformat(v)
    return v


def _view(cls: type[T], row: Any) -> T:
    """An immutable view of an ORM row: every field of ``cls`` read from the row's attribute
    of the same name, timestamps as datetimes and the state as its enum."""
    values = {}
    for f in fields(cls):  # type: ignore[arg-type]
        v = getattr(row, f.name)
        if "datetime" in str(f.type):
            v = as_datetime(v)
        elif f.name == "state":
            v = _STATE_ENUM[cls](v)
        values[f.name] = v
    return cls(**values)


def run_view(r: Run) -> RunView:
    return _view(RunView, r)


def level_view(r: Level) -> LevelView:
    return _view(LevelView, r)


def job_view(r: ChildJob) -> JobView:
    view = _view(JobView, r)
    return view if view.train is not None else replace(view, train={})


def jobs_where(q: Any, run_id: int, *, level: int | None, states: Iterable[str] | None, kind: str | None) -> Any:
    """Narrow a query on jobs to a run and, where given, a level, states and a kind."""
    q = q.where(ChildJob.run_id == run_id)
    if level is not None:
        q = q.where(ChildJob.level == level)
    if states is not None:
        q = q.where(ChildJob.state.in_([str(x) for x in states]))
    if kind is not None:
        q = q.where(ChildJob.kind == kind)
    return q


def chunks(rows: list[T], n: int) -> Iterator[list[T]]:
    for i in range(0, len(rows), n):
        yield rows[i : i + n]


def training_further() -> Any:
    """A search child promoted after a rung, queued or running again to its next rung (still a
    trained child: `shared.progress.Tally`)."""
    return and_(ChildJob.state.in_([JobState.queued.value, JobState.running.value]), ChildJob.rung > 0)


def best_reward(rewards: list[tuple[int | None, float]], full: int) -> dict:
    """``best`` and ``best_epochs`` from (epochs trained, best reward) pairs: of the children
    trained to the full epochs (no epochs recorded: a run from before multi-fidelity) if any,
    else of any completed rung (as `Reports.top` ranks them: by reward)."""
    at_full = [r for e, r in rewards if e is None or e >= full]
    if at_full or not rewards:
        return {"best": max(at_full, default=None), "best_epochs": full if at_full else None}
    epochs, best = max(rewards, key=lambda er: er[1])
    return {"best": best, "best_epochs": epochs}


def level_bests(s: Any, run_id: int, full: int, *, kind: str = "search", level: int | None = None) -> dict[int, dict]:
    """{level: its `best_reward` (``best``, ``best_epochs``)} over the children with a reward
    (one training further after a rung keeps its rung's), in one aggregate query: the
    per-level best that the live line, `pnas status` and the dashboard's run page show."""
    q = select(ChildJob.level, ChildJob.epochs_trained, func.max(ChildJob.reward)).where(
        ChildJob.run_id == run_id, ChildJob.kind == kind, ChildJob.reward.is_not(None)
    )
    if level is not None:
        q = q.where(ChildJob.level == level)
    by_epochs: dict[int, list[tuple[int | None, float]]] = {}  # the best reward per epochs trained
    for lv, epochs, best in s.execute(q.group_by(ChildJob.level, ChildJob.epochs_trained)):
        by_epochs.setdefault(int(lv), []).append((epochs, float(best or 0.0)))  # never None: rewards only
    return {lv: best_reward(pairs, full) for lv, pairs in by_epochs.items()}
