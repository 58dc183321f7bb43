"""The worker's side of child jobs: claim, lease, epochs, fenced finish or failure, hand back.

Every write after the claim is fenced by (job, attempt, state): a worker whose attempt is no
longer current (declared lost, re-run elsewhere) changes nothing and is told so by a False.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select, update

from shared.db.models import ChildJob, EpochRow
from shared.jobs import EpochMetrics, JobState, Lease, TrainResult, finite_or_none
from shared.logtails import appended
from shared.store.registry import WorkerRegistry

_Q, _R = JobState.queued.value, JobState.running.value
_PICK = ChildJob.__table__.alias("pick")  # the row claim_next picks, apart from the one it updates


def _current(job_id: int, attempt: int) -> tuple[Any, ...]:
    """The fence: this job, this attempt, still running."""
    return (ChildJob.id == job_id, ChildJob.attempts == attempt, ChildJob.state == _R)


class Attempts(WorkerRegistry):
    def _claim_values(self, worker: str, lease_seconds: float) -> dict[str, Any]:
        return dict(
            state=_R,
            attempts=ChildJob.attempts + 1,
            worker=worker,
            lease_until=self._now(lease_seconds),
            started_at=self._now(),
            finished_at=None,
            error_class=None,
            error_message=None,
            stop_requested=False,
            resumed_epoch=None,
        )

    def claim(self, job_id: int, *, worker: str, lease_seconds: float) -> int | None:
        """Take a queued job. Returns the attempt number, or None if someone else has it (or it
        is finished, or out of attempts)."""
        with self._tx() as s:
            res = s.execute(
                update(ChildJob)
                .where(ChildJob.id == job_id, ChildJob.state == _Q, ChildJob.attempts < ChildJob.max_attempts)
                .values(**self._claim_values(worker, lease_seconds))
                .returning(ChildJob.attempts)
            ).first()
            if res is not None:
                self._touch_worker(s, worker, job_id)
            return res[0] if res else None

    def claim_next(self, *, worker: str, lease_seconds: float, run_id: int | None = None) -> tuple[int, int] | None:
        """Take the oldest queued job (of a run, or any). Returns (job id, attempt) or None.

        One statement picks and claims: on PostgreSQL the pick locks its row with
        `FOR UPDATE SKIP LOCKED`, so concurrent claimers take different rows instead of
        queueing on one, and nobody can take the row between the pick and the claim (a pick
        in its own transaction would be free again before the claim). None means no queued
        job is left, not that a race was lost. The pick reads the head of `ix_jobs_queued`.
        """
        j = _PICK.c  # a Core alias: an ORM alias costs milliseconds of Python per claim
        pick = select(j.id).where(j.state == _Q, j.attempts < j.max_attempts)
        if run_id is not None:
            pick = pick.where(j.run_id == run_id)
        pick = pick.order_by(j.level.desc(), j.id).limit(1)
        if not self.is_sqlite:
            pick = pick.with_for_update(skip_locked=True)
        with self._tx() as s:
            res = s.execute(
                update(ChildJob)
                .where(ChildJob.id == pick.scalar_subquery(), ChildJob.state == _Q)
                .values(**self._claim_values(worker, lease_seconds))
                .returning(ChildJob.id, ChildJob.attempts)
            ).first()
            if res is None:
                return None
            self._touch_worker(s, worker, res[0])
            return res[0], res[1]

    def heartbeat(self, job_id: int, *, attempt: int, worker: str, lease_seconds: float) -> bool:
        """Renew the lease. False means the job is no longer ours: stop working on it."""
        return self.renew(job_id, attempt=attempt, worker=worker, lease_seconds=lease_seconds) != Lease.gone

    def renew(self, job_id: int, *, attempt: int, worker: str, lease_seconds: float) -> Lease:
        """Renew the lease (fenced) and say whether to go on: `Lease.stop` when `pnas cancel`
        asked for this child to stop (end it with `end_cancelled`), `Lease.gone` when it is no
        longer ours."""
        with self._tx() as s:
            row = s.execute(
                update(ChildJob)
                .where(*_current(job_id, attempt))
                .values(lease_until=self._now(lease_seconds))
                .returning(ChildJob.stop_requested)
            ).first()
            self._touch_worker(s, worker, job_id)
            if row is None:
                return Lease.gone
            return Lease.stop if row[0] else Lease.ours

    def end_cancelled(self, job_id: int, *, attempt: int, log_tail: str | None = None) -> bool:
        """Record that this attempt stopped because it was cancelled (fenced). Final until a
        resume (`requeue_cancelled`)."""
        with self._tx() as s:
            previous = s.execute(select(ChildJob.log_tail).where(*_current(job_id, attempt))).first()
            if previous is None:
                return False
            res = s.execute(
                update(ChildJob)
                .where(*_current(job_id, attempt))
                .values(
                    state=JobState.cancelled.value,
                    error_class="cancelled",
                    error_message=func.coalesce(ChildJob.error_message, "cancelled"),
                    log_tail=appended(previous[0], attempt=attempt, outcome="cancelled", text=log_tail),
                    lease_until=None,
                    stop_requested=False,
                    finished_at=self._now(),
                )
            )
            return self._ended(s, res, job_id)

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

    def finish(self, job_id: int, *, attempt: int, result: TrainResult, log_tail: str | None = None) -> bool:
        """Record success, fenced by job id, attempt and state. False: a newer attempt owns it.

        ``log_tail`` (this attempt's) is added under its own label after earlier attempts' tails.
        The epochs of its last history entry are recorded as the epochs it was trained to, and
        its reward as that rung's (``rung_rewards``, the controller's promotion decisions)."""
        epochs = result.history[-1].epoch if result.history else None
        with self._tx() as s:
            previous = s.execute(select(ChildJob.log_tail, ChildJob.rung_rewards).where(*_current(job_id, attempt))).first()
            if previous is None:
                return False
            outcome = f"succeeded (accuracy {float(result.reward):.4f})"
            rung_rewards = dict(previous[1] or {})
            if epochs is not None:
                rung_rewards[str(epochs)] = float(result.reward)
            res = s.execute(
                update(ChildJob)
                .where(*_current(job_id, attempt))
                .values(
                    state=JobState.succeeded.value,
                    reward=float(result.reward),
                    reward_epoch=result.reward_epoch,
                    epochs_trained=epochs,
                    rung_rewards=rung_rewards or None,
                    test_accuracy=None if result.test_accuracy is None else float(result.test_accuracy),
                    params=int(result.params),
                    wall_seconds=float(result.wall_seconds),
                    device=result.device[:200],
                    finished_at=self._now(),
                    lease_until=None,
                    error_class=None,
                    error_message=None,
                    log_tail=appended(previous[0], attempt=attempt, outcome=outcome, text=log_tail)
                    if previous[0] or log_tail else None,
                    stop_requested=False,  # a stop asked too late: it ended anyway
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
            row = s.execute(select(ChildJob.max_attempts, ChildJob.log_tail).where(*_current(job_id, attempt))).first()
            if row is None:
                return False
            again = retryable and attempt < row[0]
            outcome = f"failed{', to be retried' if again else ''} ({error_class}: {message})"
            values: dict[str, Any] = dict(error_class=error_class[:100], error_message=message, lease_until=None,
                                          log_tail=appended(row[1], attempt=attempt, outcome=outcome, text=log_tail),
                                          stop_requested=False)  # fmt: skip
            if again:
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
