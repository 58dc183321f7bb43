"""The failure streak the controller and local workers stop on (`Settings.max_consecutive_failures`)."""

from __future__ import annotations

from sqlalchemy import and_, func, or_, select

from shared.db.models import ChildJob
from shared.jobs import JobState
from shared.store.engine import StoreBase
from shared.store.rows import as_datetime

_S, _F = JobState.succeeded.value, JobState.failed.value


class Streaks(StoreBase):
    def consecutive_failures(self, run_id: int, *, error_class: str | None = None) -> int:
        """Failed children since the last success, newest first (a failed attempt counts);
        with ``error_class``, only the latest failures of that class in a row.

        A success is a child's: its finish, or a rung it completed before it was promoted
        (multi-fidelity). A promoted child that is not succeeded now (queued or running to its
        next rung, or failed there) succeeded at its last rung before its promotion queued it
        again (``queued_at``, at most a poll after that success): that success counts there, and
        a later failure of the same child counts after it."""
        ended = and_(ChildJob.state.in_([_S, _F]), ChildJob.finished_at.is_not(None))
        promoted = and_(ChildJob.rung > 0, ChildJob.state != _S, ChildJob.queued_at.is_not(None))
        with self._tx() as s:
            rows = s.execute(
                select(ChildJob.id, ChildJob.state, ChildJob.error_class, ChildJob.finished_at, ChildJob.queued_at,
                       ChildJob.rung)  # fmt: skip
                .where(ChildJob.run_id == run_id, or_(ended, promoted))
                .order_by(func.coalesce(ChildJob.finished_at, ChildJob.queued_at).desc(), ChildJob.id.desc())
                .limit(1000)
            ).all()
        events = []  # (when, job id, failed, its class)
        for job_id, state, cls, finished, queued, rung in rows:
            if state in (_S, _F) and finished is not None:
                events.append((as_datetime(finished), job_id, state == _F, cls))
            if rung > 0 and state != _S and queued is not None:
                events.append((as_datetime(queued), job_id, False, None))
        n = 0
        for _, _, failed, cls in sorted(events, key=lambda e: (e[0], e[1]), reverse=True):
            if not failed or (error_class is not None and cls != error_class):
                break
            n += 1
        return n
