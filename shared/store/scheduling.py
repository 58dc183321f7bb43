"""The controller's side of child jobs: insert, progress, sweep, requeue, retry."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Sequence

from sqlalchemy import String, and_, case, cast, func, or_, select, update

from shared.db.models import ChildJob, Run
from shared.errors import UserError
from shared.jobs import ALL_STATES, Cancelled, JobState, RunState
from shared.space.network import network_id_of
from shared.store.engine import StoreBase
from shared.store.browse import full_epochs
from shared.store.rows import best_reward, chunks, jobs_where, level_bests, training_further

_RETRYABLE = (JobState.failed, JobState.lost)


def _network_id(cell: list) -> str | None:
    """The cell's network id; None for a malformed cell (stored so that workers refuse it)."""
    try:
        return network_id_of(cell)
    except (UserError, TypeError, ValueError, KeyError):
        return None


class Scheduling(StoreBase):
    def add_jobs(
        self,
        run_id: int,
        *,
        level: int,
        children: Sequence[tuple[str, list, float | None, int | None]],
        max_attempts: int,
        kind: str = "search",
        train: dict | None = None,
        costs: Sequence[tuple[int, int] | tuple[int, int, float | None]] | None = None,
    ) -> list[int]:
        """Insert child jobs (arch_id, cell, predicted, rank) idempotently; return their ids.

        ``costs``: (params, flops[, latency_ms]) per child, in the same order, stored with each
        (None: unknown; a latency of None: the run has no latency table).

        One job per (run, kind, architecture[, settings]): inserting an existing one is a no-op,
        so a controller that crashed between insert and enqueue can simply insert again. Each
        job gets its cell's network id; a search child whose network the run already has is
        not inserted (the database refuses it) and the existing child's id is returned.
        """
        train = train or {}
        suffix = ""
        if train:
            suffix = ":" + hashlib.sha1(json.dumps(train, sort_keys=True).encode()).hexdigest()[:10]
        rows: list[dict[str, Any]] = [
            dict(
                run_id=run_id,
                level=level,
                kind=kind,
                key=f"{kind}:{arch}{suffix}",
                arch_id=arch,
                network_id=_network_id(cell),
                cell=cell,
                train=train,
                predicted=pred,
                rank=rank,
                state=JobState.queued.value,
                attempts=0,
                max_attempts=max_attempts,
            )
            for arch, cell, pred, rank in children
        ]
        for r, c in zip(rows, costs or []):
            r["params"], r["flops"] = int(c[0]), int(c[1])
            if len(c) > 2 and c[2] is not None:
                r["latency_ms"] = float(c[2])
        keys = [r["key"] for r in rows]
        with self._tx() as s:
            now = self._db_now(s)
            for r in rows:
                r["queued_at"] = now
            if rows:
                if self.is_sqlite:
                    from sqlalchemy.dialects.sqlite import insert as dialect_insert
                else:
                    from sqlalchemy.dialects.postgresql import insert as dialect_insert  # type: ignore[assignment]
                for chunk in chunks(rows, 500):
                    # No conflict target: a clash on the key or on the network is a no-op.
                    s.execute(dialect_insert(ChildJob).on_conflict_do_nothing(), chunk)
            ids: dict[str, int] = {}
            for key_chunk in chunks(keys, 500):
                q = select(ChildJob.key, ChildJob.id).where(ChildJob.run_id == run_id, ChildJob.key.in_(key_chunk))
                ids.update((k, i) for k, i in s.execute(q))
            missing = {r["network_id"]: r["key"] for r in rows if r["key"] not in ids}
            for net_chunk in chunks(list(missing), 500):
                by_net = select(ChildJob.network_id, ChildJob.id).where(
                    ChildJob.run_id == run_id,
                    ChildJob.kind == kind,
                    ChildJob.duplicate_of.is_(None),
                    ChildJob.network_id.in_(net_chunk),
                )
                ids.update((missing[n], i) for n, i in s.execute(by_net) if n is not None)
        return [ids[k] for k in keys]

    def network_ids(self, run_id: int, *, kind: str = "search") -> set[str]:
        """The network ids a run already has children of (trained, training or queued)."""
        with self._tx() as s:
            q = select(ChildJob.network_id).where(ChildJob.run_id == run_id, ChildJob.kind == kind)
            return {n for n in s.scalars(q) if n is not None}

    def job_ids(
        self, run_id: int, *, level: int | None = None, states: Iterable[str] | None = None, kind: str | None = None
    ) -> list[int]:
        with self._tx() as s:
            q = jobs_where(select(ChildJob.id), run_id, level=level, states=states, kind=kind)
            return list(s.scalars(q.order_by(ChildJob.id)))

    def state_counts(self, run_id: int, *, kind: str | None = "search") -> dict[int, dict[str, int]]:
        """{level: {state: count}} for every level of a run, in one aggregate query."""
        with self._tx() as s:
            q = select(ChildJob.level, ChildJob.state, func.count()).where(ChildJob.run_id == run_id)
            if kind is not None:
                q = q.where(ChildJob.kind == kind)
            out: dict[int, dict[str, int]] = {}
            for lvl, state, n in s.execute(q.group_by(ChildJob.level, ChildJob.state)):
                out.setdefault(lvl, {st: 0 for st in ALL_STATES})[state] = n
            return out

    def level_progress(self, run_id: int, level: int, *, kind: str = "search") -> dict:
        """In one aggregate, counts by state, requeueable lost ones, those training further
        after a rung (``further``, `shared.progress.Tally`); then the best reward so far as
        `pnas runs` gives it (`rows.level_bests`): of the children trained to the run's
        ``full_epochs``, else of any completed rung, from ``best_epochs``."""
        lost_with_attempts = and_(ChildJob.state == JobState.lost.value, ChildJob.attempts < ChildJob.max_attempts)
        with self._tx() as s:
            q = select(
                *[func.sum(case((ChildJob.state == st, 1), else_=0)) for st in ALL_STATES],
                func.sum(case((lost_with_attempts, 1), else_=0)),
                func.sum(case((training_further(), 1), else_=0)),
                func.count(),
            ).where(ChildJob.run_id == run_id, ChildJob.level == level, ChildJob.kind == kind)
            row = s.execute(q).one()
            full = full_epochs(s, run_id)
            best = level_bests(s, run_id, full, kind=kind, level=level).get(level) or best_reward([], full)
        n = len(ALL_STATES)
        return {
            "counts": {st: int(row[i] or 0) for i, st in enumerate(ALL_STATES)},
            "requeueable": int(row[n] or 0),
            "further": int(row[n + 1] or 0),
            "total": int(row[-1] or 0),
            "full_epochs": full,
            **best,
        }

    def sweep_expired(self, run_id: int | None = None) -> list[int]:
        """Running jobs whose lease ran out become lost (cancelled, when a stop had been asked
        for: nobody wants them run again). Returns the ids of the lost ones."""
        with self._tx() as s:
            expired = and_(ChildJob.state == JobState.running.value, ChildJob.lease_until < self._now())
            stopped = update(ChildJob).where(expired, ChildJob.stop_requested.is_(True))
            if run_id is not None:
                stopped = stopped.where(ChildJob.run_id == run_id)
            s.execute(stopped.values(**self._cancel_values("its worker stopped renewing its lease after a cancel")))
            q = (
                update(ChildJob)
                .where(expired)
                .values(
                    state=JobState.lost.value,
                    error_class="lost",
                    error_message="the worker stopped renewing its lease",
                    finished_at=self._now(),
                    # this attempt's labelled section (`shared.logtails`): nothing came back from it
                    log_tail=func.coalesce(ChildJob.log_tail, "") + "\n=== attempt " + cast(ChildJob.attempts, String)
                    + ": lost (worker " + func.coalesce(ChildJob.worker, "?") + " stopped renewing its lease) ===\n",
                )
                .returning(ChildJob.id)
            )
            if run_id is not None:
                q = q.where(ChildJob.run_id == run_id)
            return list(s.scalars(q))

    def extend_leases(self, run_id: int, *, lease_seconds: float) -> int:
        """Give every running child of a run a fresh lease (after the database was away, its
        workers could not renew theirs). Returns how many."""
        with self._tx() as s:
            res = s.execute(
                update(ChildJob)
                .where(ChildJob.run_id == run_id, ChildJob.state == JobState.running.value)
                .values(lease_until=self._now(lease_seconds))
            )
            return res.rowcount  # type: ignore[attr-defined]

    def requeue_lost(self, run_id: int | None = None) -> list[int]:
        """Lost jobs with attempts left go back to queued (their identity kept)."""
        with self._tx() as s:
            q = (
                update(ChildJob)
                .where(ChildJob.state == JobState.lost.value, ChildJob.attempts < ChildJob.max_attempts)
                .values(state=JobState.queued.value, worker=None, lease_until=None, queued_at=self._now())
                .returning(ChildJob.id)
            )
            if run_id is not None:
                q = q.where(ChildJob.run_id == run_id)
            return list(s.scalars(q))

    def retry(
        self,
        run_id: int,
        *,
        level: int | None = None,
        job_ids: Sequence[int] | None = None,
        states: Sequence[str] = _RETRYABLE,
        extra_attempts: int = 1,
        dry_run: bool = False,
    ) -> list[int]:
        """Put selected failed/lost children back in the queue, identity kept; returns ids.

        Each gets ``extra_attempts`` more attempts than it has used, so a child that ran out
        of attempts can run again; its history of attempts is kept.
        """
        bad = [st for st in states if st not in _RETRYABLE]
        if bad:
            raise UserError(f"only failed or lost children can be retried, not {str(bad[0])!r}")
        wanted = [str(st) for st in states]
        with self._tx() as s:
            q = select(ChildJob.id).where(ChildJob.run_id == run_id, ChildJob.state.in_(wanted))
            if level is not None:
                q = q.where(ChildJob.level == level)
            if job_ids:
                q = q.where(ChildJob.id.in_(list(job_ids)))
            ids = list(s.scalars(q.order_by(ChildJob.id)))
            if ids and not dry_run:
                s.execute(
                    update(ChildJob)
                    .where(ChildJob.id.in_(ids), ChildJob.state.in_(wanted))  # not one claimed meanwhile
                    .values(
                        state=JobState.queued.value,
                        worker=None,
                        lease_until=None,
                        queued_at=self._now(),
                        max_attempts=ChildJob.attempts + extra_attempts,
                    )
                )
                s.execute(update(Run).where(Run.id == run_id).values(updated_at=self._now()))
            return ids

    def promote(self, children: Sequence[tuple[int, int, int]]) -> list[int]:
        """Send succeeded search children (job id, rung, its epochs) on to their next rung, in
        one transaction: queued again, identity, results so far and checkpoints kept, with one
        more attempt each (a promotion uses none of its attempts). Conditional on that state,
        so repeating a decision (a restarted controller) promotes nobody twice. Returns the
        ids promoted."""
        done = []
        with self._tx() as s:
            for job_id, rung, epochs in children:
                res = s.execute(
                    update(ChildJob)
                    .where(
                        ChildJob.id == job_id,
                        ChildJob.state == JobState.succeeded.value,
                        ChildJob.rung == rung,
                        ChildJob.epochs_trained == epochs,
                    )
                    .values(
                        state=JobState.queued.value,
                        rung=rung + 1,
                        max_attempts=ChildJob.max_attempts + 1,
                        worker=None,
                        lease_until=None,
                        finished_at=None,
                        queued_at=self._now(),
                    )
                )
                if res.rowcount == 1:  # type: ignore[attr-defined]
                    done.append(job_id)
        return done

    # --- cancel, abort, resume ----------------------------------------------------------
    def _cancel_values(self, why: str) -> dict:
        return dict(
            state=JobState.cancelled.value,
            error_class="cancelled",
            error_message=why,
            lease_until=None,
            stop_requested=False,
            finished_at=self._now(),
        )

    def cancel(
        self,
        run_id: int,
        *,
        level: int | None = None,
        job_ids: Sequence[int] | None = None,
        dry_run: bool = False,
        why: str = "cancelled by `pnas cancel`",
    ) -> Cancelled:
        """Cancel a run's queued children (and lost ones awaiting a requeue) and ask the workers
        of its running ones to stop (they see it at their next heartbeat and end the child as
        cancelled). Narrowed to a level and/or job ids where given. Fenced by state, so a child
        claimed meanwhile is asked to stop rather than cancelled under its worker."""
        with self._tx() as s:
            return self._cancel_in(s, run_id, level=level, job_ids=job_ids, dry_run=dry_run, why=why)

    def _cancel_in(
        self, s: Any, run_id: int, *, level: int | None, job_ids: Sequence[int] | None, dry_run: bool, why: str
    ) -> Cancelled:
        waiting = or_(
            ChildJob.state == JobState.queued.value,
            and_(ChildJob.state == JobState.lost.value, ChildJob.attempts < ChildJob.max_attempts),
        )
        running = ChildJob.state == JobState.running.value

        def narrowed(q: Any) -> Any:
            q = q.where(ChildJob.run_id == run_id)
            if level is not None:
                q = q.where(ChildJob.level == level)
            if job_ids:
                q = q.where(ChildJob.id.in_(list(job_ids)))
            return q

        if dry_run:
            cancelled = list(s.scalars(narrowed(select(ChildJob.id).where(waiting)).order_by(ChildJob.id)))
            stopping = list(s.scalars(narrowed(select(ChildJob.id).where(running)).order_by(ChildJob.id)))
            return Cancelled(cancelled, stopping)
        cancelled = sorted(s.scalars(narrowed(update(ChildJob).where(waiting)).values(**self._cancel_values(why)).returning(ChildJob.id)))
        stopping = sorted(
            s.scalars(narrowed(update(ChildJob).where(running)).values(stop_requested=True, error_message=why).returning(ChildJob.id))
        )
        s.execute(update(Run).where(Run.id == run_id).values(updated_at=self._now()))
        return Cancelled(cancelled, stopping)

    def abort_run(self, run_id: int, *, message: str) -> Cancelled:
        """Mark the run aborted and, in the same transaction, cancel every child still to
        train and ask the running ones to stop: an aborted run spends no more GPU time."""
        with self._tx() as s:
            done = self._cancel_in(s, run_id, level=None, job_ids=None, dry_run=False, why=f"the run was aborted: {message}")
            now = self._now()
            s.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(state=RunState.aborted.value, message=message, updated_at=now, finished_at=now)
            )
            return done

    def requeue_cancelled(self, run_id: int, *, max_attempts: int) -> list[int]:
        """Resume: cancelled children go back to the queue, identity kept, with ``max_attempts``
        fresh attempts each (their history of attempts is kept). Returns their ids."""
        with self._tx() as s:
            return sorted(
                s.scalars(
                    update(ChildJob)
                    .where(ChildJob.run_id == run_id, ChildJob.state == JobState.cancelled.value)
                    .values(
                        state=JobState.queued.value,
                        worker=None,
                        lease_until=None,
                        stop_requested=False,
                        error_class=None,
                        error_message=None,
                        finished_at=None,
                        queued_at=self._now(),
                        max_attempts=ChildJob.attempts + max_attempts,
                    )
                    .returning(ChildJob.id)
                )
            )

    def rewards(self, run_id: int, *, max_level: int | None = None) -> list[tuple[int, list, float]]:
        """(level, cell, reward) of every succeeded search child: the predictor's data."""
        with self._tx() as s:
            q = select(ChildJob.level, ChildJob.cell, ChildJob.reward).where(
                ChildJob.run_id == run_id, ChildJob.kind == "search", ChildJob.state == JobState.succeeded.value
            )
            if max_level is not None:
                q = q.where(ChildJob.level <= max_level)
            return [(lv, c, r) for lv, c, r in s.execute(q.order_by(ChildJob.level, ChildJob.id))]
