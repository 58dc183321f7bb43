"""The worker's side of child jobs: claim, lease, epochs, fenced finish or failure, hand back.

Every write after the claim is fenced by (job, attempt, state): a worker whose attempt is no
longer current (declared lost, re-run elsewhere) changes nothing and is told so by a False.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select, update

from shared.db.models import ChildJob, EpochRow
from shared.jobs import EpochMetrics, JobState, TrainResult, finite_or_none
from shared.store.registry import WorkerRegistry

_Q, _R = JobState.queued.value, JobState.running.value


def _current(job_id: int, attempt: int) -> tuple[Any, ...]:
    """The fence: this job, this attempt, still running."""
    return (ChildJob.id == job_id, ChildJob.attempts == attempt, ChildJob.state == _R)


class Attempts(WorkerRegistry):
    def claim(self, job_id: int, *, worker: str, lease_seconds: float) -> int | None:
        """Take a queued job. Returns the attempt number, or None if someone else has it (or it
        is finished, or out of attempts)."""
        with self._tx() as s:
            res = s.execute(
                update(ChildJob)
                .where(ChildJob.id == job_id, ChildJob.state == _Q, ChildJob.attempts < ChildJob.max_attempts)
                .values(
                    state=_R,
                    attempts=ChildJob.attempts + 1,
                    worker=worker,
                    lease_until=self._now(lease_seconds),
                    started_at=self._now(),
                    finished_at=None,
                    error_class=None,
                    error_message=None,
                    resumed_epoch=None,
                )
                .returning(ChildJob.attempts)
            ).first()
            if res is not None:
                self._touch_worker(s, worker, job_id)
            return res[0] if res else None

    def claim_next(self, *, worker: str, lease_seconds: float, run_id: int | None = None) -> tuple[int, int] | None:
        """Take the oldest queued job (of a run, or any). Returns (job id, attempt) or None."""
        for _ in range(5):
            with self._tx() as s:
                q = select(ChildJob.id).where(ChildJob.state == _Q, ChildJob.attempts < ChildJob.max_attempts)
                if run_id is not None:
                    q = q.where(ChildJob.run_id == run_id)
                q = q.order_by(ChildJob.level.desc(), ChildJob.id).limit(1)
                if not self.is_sqlite:
                    q = q.with_for_update(skip_locked=True)
                job_id = s.scalar(q)
            if job_id is None:
                return None
            attempt = self.claim(job_id, worker=worker, lease_seconds=lease_seconds)
            if attempt is not None:
                return job_id, attempt
        return None

    def heartbeat(self, job_id: int, *, attempt: int, worker: str, lease_seconds: float) -> bool:
        """Renew the lease. False means the job is no longer ours: stop working on it."""
        with self._tx() as s:
            res = s.execute(update(ChildJob).where(*_current(job_id, attempt)).values(lease_until=self._now(lease_seconds)))
            self._touch_worker(s, worker, job_id)
            return res.rowcount == 1  # type: ignore[attr-defined]

    def add_epoch(self, job_id: int, *, attempt: int, metrics: EpochMetrics) -> bool:
        """Record one epoch of the running attempt (fenced)."""
        with self._tx() as s:
            ok = s.scalar(select(func.count()).select_from(ChildJob).where(*_current(job_id, attempt)))
            if not ok:
                return False
            s.execute(delete(EpochRow).where(EpochRow.job_id == job_id, EpochRow.attempt == attempt, EpochRow.epoch == metrics.epoch))
            s.add(
                EpochRow(
                    job_id=job_id,
                    attempt=attempt,
                    epoch=metrics.epoch,
                    loss=finite_or_none(metrics.loss),
                    accuracy=finite_or_none(metrics.accuracy),
                    val_loss=finite_or_none(metrics.val_loss),
                    val_accuracy=finite_or_none(metrics.val_accuracy),
                    seconds=metrics.seconds,
                )
            )
            return True

    def mark_resumed(self, job_id: int, *, attempt: int, epoch: int) -> bool:
        """The running attempt continues from an earlier attempt's checkpoint of ``epoch`` (fenced)."""
        with self._tx() as s:
            res = s.execute(update(ChildJob).where(*_current(job_id, attempt)).values(resumed_epoch=epoch))
            return res.rowcount == 1  # type: ignore[attr-defined]

    def finish(self, job_id: int, *, attempt: int, result: TrainResult) -> bool:
        """Record success, fenced by job id, attempt and state. False: a newer attempt owns it."""
        with self._tx() as s:
            res = s.execute(
                update(ChildJob)
                .where(*_current(job_id, attempt))
                .values(
                    state=JobState.succeeded.value,
                    reward=float(result.reward),
                    reward_epoch=result.reward_epoch,
                    params=int(result.params),
                    wall_seconds=float(result.wall_seconds),
                    device=result.device[:200],
                    finished_at=self._now(),
                    lease_until=None,
                    error_class=None,
                    error_message=None,
                )
            )
            return self._ended(s, res, job_id)

    def fail(
        self,
        job_id: int,
        *,
        attempt: int,
        error_class: str,
        message: str,
        log_tail: str | None = None,
        retryable: bool = False,
    ) -> bool:
        """Record a failure (fenced). A retryable one goes back to queued while attempts remain."""
        with self._tx() as s:
            row = s.execute(select(ChildJob.max_attempts).where(*_current(job_id, attempt))).first()
            if row is None:
                return False
            values: dict[str, Any] = dict(error_class=error_class[:100], error_message=message, log_tail=log_tail, lease_until=None)
            if retryable and attempt < row[0]:
                values.update(state=_Q, worker=None, queued_at=self._now())
            else:
                values.update(state=JobState.failed.value, finished_at=self._now())
            res = s.execute(update(ChildJob).where(*_current(job_id, attempt)).values(**values))
            return self._ended(s, res, job_id)

    def hand_back(self, job_id: int, *, attempt: int) -> bool:
        """A worker shutting down returns its running child to the queue; the attempt is not
        counted (fenced, so a job that was meanwhile declared lost is left alone)."""
        with self._tx() as s:
            res = s.execute(
                update(ChildJob)
                .where(*_current(job_id, attempt))
                .values(state=_Q, attempts=ChildJob.attempts - 1, worker=None, lease_until=None, queued_at=self._now())
            )
            return self._ended(s, res, job_id)

    def reject(self, job_id: int, *, error_class: str, message: str) -> bool:
        """Fail a queued job that must never run (a malformed cell or payload). Final."""
        with self._tx() as s:
            res = s.execute(
                update(ChildJob)
                .where(ChildJob.id == job_id, ChildJob.state == _Q)
                .values(state=JobState.failed.value, error_class=error_class[:100], error_message=message, finished_at=self._now())
            )
            return res.rowcount == 1  # type: ignore[attr-defined]
