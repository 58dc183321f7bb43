"""Read-only reports for the operators' tools (pnas runs/status/top/show/plot/history)."""

from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import case, func, or_, select

from shared.db.models import ChildJob, EpochRow, Run
from shared.jobs import ALL_STATES, JobState, JobView
from shared.store.engine import StoreBase
from shared.store.rows import as_datetime, best_reward, job_view, jobs_where, level_bests, run_view, training_further

_S = JobState.succeeded.value


class Reports(StoreBase):
    def jobs(
        self,
        run_id: int,
        *,
        level: int | None = None,
        states: Iterable[str] | None = None,
        kind: str | None = "search",
        ids: Iterable[int] | None = None,
    ) -> list[JobView]:
        with self._tx() as s:
            q = jobs_where(select(ChildJob), run_id, level=level, states=states, kind=kind)
            if ids is not None:
                q = q.where(ChildJob.id.in_(list(ids)))
            return [job_view(r) for r in s.scalars(q.order_by(ChildJob.id))]

    def children_of_networks(self, run_id: int, network_ids: Iterable[str]) -> dict[str, JobView]:
        """The search child that stands for each network id the run has (the first, for runs
        made before network ids)."""
        ids = list(set(network_ids))
        with self._tx() as s:
            q = select(ChildJob).where(
                ChildJob.run_id == run_id,
                ChildJob.kind == "search",
                ChildJob.duplicate_of.is_(None),
                ChildJob.network_id.in_(ids),
            )
            return {r.network_id: job_view(r) for r in s.scalars(q) if r.network_id is not None}

    def job(self, job_id: int) -> JobView | None:
        with self._tx() as s:
            row = s.get(ChildJob, job_id)
            return job_view(row) if row else None

    def top(self, run_id: int, *, k: int = 5, level: int | None = None, kind: str | None = "search") -> list[JobView]:
        """The best succeeded children: those trained to the run's full epochs first (a
        multi-fidelity run stops some early), then by reward."""
        with self._tx() as s:
            full = self._full_epochs(s, run_id)
            q = select(ChildJob).where(ChildJob.run_id == run_id, ChildJob.state == _S)
            if level is not None:
                q = q.where(ChildJob.level == level)
            if kind is not None:
                q = q.where(ChildJob.kind == kind)
            at_full = or_(ChildJob.kind != "search", ChildJob.epochs_trained.is_(None), ChildJob.epochs_trained >= full)
            q = q.order_by(case((at_full, 0), else_=1), ChildJob.reward.desc(), ChildJob.id).limit(k)
            return [job_view(r) for r in s.scalars(q)]

    def best_child(self, run_id: int) -> JobView | None:
        """The run's best search child by the rule of `best_per_level` (`rows.level_bests`), so
        `pnas status`'s best line agrees with its level table: of the children with a reward
        (one promoted and training further keeps its rung's), those trained to the full epochs
        first, then by reward."""
        with self._tx() as s:
            full = self._full_epochs(s, run_id)
            q = select(ChildJob).where(ChildJob.run_id == run_id, ChildJob.kind == "search", ChildJob.reward.is_not(None))
            at_full = or_(ChildJob.epochs_trained.is_(None), ChildJob.epochs_trained >= full)
            row = s.scalars(q.order_by(case((at_full, 0), else_=1), ChildJob.reward.desc(), ChildJob.id).limit(1)).first()
            return job_view(row) if row is not None else None

    def best_per_level(self, run_id: int, *, kind: str = "search") -> dict[int, dict]:
        """{level: ``best``, ``best_epochs``} as the live line and `pnas runs` give a best
        (`rows.level_bests`): of the level's children trained to the run's full epochs, else
        of any completed rung (then ``best_epochs`` is below them)."""
        with self._tx() as s:
            return level_bests(s, run_id, self._full_epochs(s, run_id), kind=kind)

    def further_counts(self, run_id: int) -> dict[int, int]:
        """{level: search children promoted after a rung, queued or running again} (a child
        training further still counts as trained: `shared.progress.Tally`)."""
        with self._tx() as s:
            q = select(ChildJob.level, func.count())
            q = q.where(ChildJob.run_id == run_id, ChildJob.kind == "search", training_further())
            return {int(lv): int(n) for lv, n in s.execute(q.group_by(ChildJob.level))}

    def _full_epochs(self, s: Any, run_id: int) -> int:
        """The epochs a search child of the run is trained to at full fidelity."""
        config = s.scalar(select(Run.config).where(Run.id == run_id))
        return int(((config or {}).get("train") or {}).get("epochs", 0))

    def child_epochs(self, run_id: int) -> dict:
        """Epochs the run's search children were trained to, summed (each child's epochs once,
        whatever attempts it took), against the same children trained to the full epochs."""
        with self._tx() as s:
            full = self._full_epochs(s, run_id)
            spent, trained = s.execute(
                select(func.sum(ChildJob.epochs_trained), func.count(ChildJob.epochs_trained)).where(
                    ChildJob.run_id == run_id, ChildJob.kind == "search"
                )
            ).one()
        return {"spent": int(spent or 0), "full_fidelity": int(trained or 0) * full, "children": int(trained or 0)}

    def epochs(self, job_id: int) -> list[dict]:
        with self._tx() as s:
            q = select(EpochRow).where(EpochRow.job_id == job_id).order_by(EpochRow.attempt, EpochRow.epoch)
            return [
                dict(
                    attempt=e.attempt,
                    epoch=e.epoch,
                    loss=e.loss,
                    accuracy=e.accuracy,
                    val_loss=e.val_loss,
                    val_accuracy=e.val_accuracy,
                    seconds=e.seconds,
                )
                for e in s.scalars(q)
            ]

    def run_summaries(self) -> list[dict]:
        """One dict per run (oldest first): the run's columns, its search children by state
        and those of them training further after a rung (``further``), the time of the last
        finished child, the children per level (``level_totals``) and the best reward
        (``best``), in three aggregate queries.

        ``best`` is as `top` ranks: the best child trained to the run's full epochs; while a
        multi-fidelity run has none yet, the best reward of any child's completed rung (one
        training further included), and then ``best_epochs`` (the epochs it is from) is below
        ``full_epochs``."""
        with self._tx() as s:
            agg = (
                select(
                    ChildJob.run_id.label("run_id"),
                    *[func.sum(case((ChildJob.state == st, 1), else_=0)).label(st) for st in ALL_STATES],
                    func.max(ChildJob.finished_at).label("last_finished"),
                    func.sum(case((training_further(), 1), else_=0)).label("further"),
                )
                .where(ChildJob.kind == "search")
                .group_by(ChildJob.run_id)
                .subquery()
            )
            q = select(Run, *[agg.c[st] for st in ALL_STATES], agg.c.last_finished, agg.c.further).outerjoin(
                agg, agg.c.run_id == Run.id
            )
            per_level: dict[int, dict[int, int]] = {}
            q2 = select(ChildJob.run_id, ChildJob.level, func.count()).where(ChildJob.kind == "search")
            for run_id, level, n in s.execute(q2.group_by(ChildJob.run_id, ChildJob.level)):
                per_level.setdefault(run_id, {})[int(level)] = int(n)
            by_epochs: dict[int, list[tuple[int | None, float]]] = {}  # the best reward per epochs trained
            q3 = select(ChildJob.run_id, ChildJob.epochs_trained, func.max(ChildJob.reward)).where(
                ChildJob.kind == "search", ChildJob.reward.is_not(None)
            )
            for run_id, epochs, best in s.execute(q3.group_by(ChildJob.run_id, ChildJob.epochs_trained)):
                by_epochs.setdefault(run_id, []).append((epochs, float(best or 0.0)))  # never None: rewards only
            out = []
            for row in s.execute(q.order_by(Run.id)):
                run = run_view(row[0])
                counts = {st: int(row[1 + i] or 0) for i, st in enumerate(ALL_STATES)}
                full = int(((run.config or {}).get("train") or {}).get("epochs", 0))
                out.append({"run": run, "jobs": counts, "further": int(row[-1] or 0), "last_finished": as_datetime(row[-2]),
                            "level_totals": per_level.get(run.id, {}), "full_epochs": full,
                            **best_reward(by_epochs.get(run.id, []), full)})  # fmt: skip
            return out

    def level_timing(self, run_id: int, *, kind: str = "search") -> dict[int, dict]:
        """{level: first start, last finish, finished children, summed child seconds, mean
        reward} over a run's children, in one aggregate query (for elapsed time and ETA)."""
        ended = [JobState.succeeded.value, JobState.failed.value, JobState.lost.value]
        with self._tx() as s:
            q = (
                select(
                    ChildJob.level,
                    func.min(ChildJob.started_at),
                    func.max(ChildJob.finished_at),
                    func.sum(case((ChildJob.state.in_(ended), 1), else_=0)),
                    func.sum(ChildJob.wall_seconds),
                    func.avg(case((ChildJob.state == _S, ChildJob.reward), else_=None)),
                )
                .where(ChildJob.run_id == run_id, ChildJob.kind == kind)
                .group_by(ChildJob.level)
            )
            return {
                lv: {
                    "first_started": as_datetime(a),
                    "last_finished": as_datetime(b),
                    "finished": int(n or 0),
                    "child_seconds": float(sec or 0.0),
                    "mean": m,
                }
                for lv, a, b, n, sec, m in s.execute(q)
            }

    def trained_children(self, run_id: int, *, kind: str = "search") -> list[JobView]:
        """Succeeded children in the order they finished (ties by id): history and curves."""
        with self._tx() as s:
            q = (
                select(ChildJob)
                .where(ChildJob.run_id == run_id, ChildJob.kind == kind, ChildJob.state == _S)
                .order_by(ChildJob.finished_at, ChildJob.id)
            )
            return [job_view(r) for r in s.scalars(q)]
