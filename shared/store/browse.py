"""Read-only queries for the web dashboard (`pnas dashboard`): each page's data in a few
aggregate queries, as plain values (dicts and views), never ORM objects.

Every query is bounded for a run of 10,000 children: per-level aggregates, one narrow
column list for the charts, and one page of the children table (sorted and filtered in SQL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Text, case, cast, func, or_, select

from shared.db.models import ChildJob, Run
from shared.jobs import ALL_STATES, JobState
from shared.store.engine import StoreBase
from shared.store.rows import as_datetime, level_bests

_S = JobState.succeeded.value

# The children table's sortable columns, by the name the API takes.
SORTABLE: dict[str, Any] = {
    "id": ChildJob.id,
    "level": ChildJob.level,
    "state": ChildJob.state,
    "accuracy": ChildJob.reward,
    "test_accuracy": ChildJob.test_accuracy,
    "params": ChildJob.params,
    "predicted": ChildJob.predicted,
    "rank": ChildJob.rank,
    "worker": ChildJob.worker,
    "attempts": ChildJob.attempts,
    "epochs": ChildJob.epochs_trained,
    "seconds": ChildJob.wall_seconds,
    "finished": ChildJob.finished_at,
}


def full_epochs(s: Any, run_id: int) -> int:
    """The epochs a search child of the run is trained to at full fidelity (its ``train.epochs``; 0 if unset)."""
    config = s.scalar(select(Run.config).where(Run.id == run_id))
    return int(((config or {}).get("train") or {}).get("epochs") or 0)


def trained_to_full(full: int) -> Any:
    """SQL: a search child's accuracy is from ``full`` epochs (or from before epochs were
    recorded), as `pnas top` and the leaderboard view rank it first."""
    return or_(ChildJob.epochs_trained.is_(None), ChildJob.epochs_trained >= full)


@dataclass(frozen=True)
class ChildrenQuery:
    """One page of a run's children: sorted by ``sort`` (a key of `SORTABLE`), optionally
    only one level and one state, and ``text`` found in the arch id, worker or cell JSON."""

    sort: str = "id"
    descending: bool = False
    level: int | None = None
    state: str | None = None
    text: str | None = None
    offset: int = 0
    limit: int = 100


class Browse(StoreBase):
    def level_overview(self, run_id: int, *, kind: str = "search") -> dict[int, dict]:
        """{level: children by state, total, best (and ``best_epochs``) and mean accuracy,
        first start, last finish, summed child seconds}, in two aggregate queries. The best is
        `pnas status`'s (`rows.level_bests`): of the children trained to the run's full epochs,
        else, labelled with its epochs, of any completed rung; the mean is of every succeeded
        child, as `pnas status` has it."""
        with self._tx() as s:
            bests = level_bests(s, run_id, full_epochs(s, run_id), kind=kind)
            q = (
                select(
                    ChildJob.level,
                    *[func.sum(case((ChildJob.state == st, 1), else_=0)) for st in ALL_STATES],
                    func.count(ChildJob.id),
                    func.avg(case((ChildJob.state == _S, ChildJob.reward), else_=None)),
                    func.min(ChildJob.started_at),
                    func.max(ChildJob.finished_at),
                    func.sum(ChildJob.wall_seconds),
                )
                .where(ChildJob.run_id == run_id, ChildJob.kind == kind)
                .group_by(ChildJob.level)
            )
            out: dict[int, dict] = {}
            n = len(ALL_STATES)
            for row in s.execute(q):
                out[int(row[0])] = {
                    "states": {st: int(row[1 + i] or 0) for i, st in enumerate(ALL_STATES)},
                    "total": int(row[1 + n]),
                    **(bests.get(int(row[0])) or {"best": None, "best_epochs": None}),
                    "mean": row[2 + n],
                    "first_started": as_datetime(row[3 + n]),
                    "last_finished": as_datetime(row[4 + n]),
                    "child_seconds": float(row[5 + n] or 0.0),
                }
            return out

    def trained_points(self, run_id: int, *, kind: str = "search") -> list[tuple[int, int, float, float | None, bool]]:
        """(job id, level, accuracy, predicted, full) of every succeeded child in the order
        they finished: the charts' data (best so far, accuracy per level, predicted vs
        measured). ``full``: its accuracy is from the run's full epochs (`trained_to_full`);
        a multi-fidelity run stops some children early."""
        with self._tx() as s:
            full = full_epochs(s, run_id)
            q = (
                select(ChildJob.id, ChildJob.level, ChildJob.reward, ChildJob.predicted, trained_to_full(full))
                .where(ChildJob.run_id == run_id, ChildJob.kind == kind, ChildJob.state == _S)
                .order_by(ChildJob.finished_at, ChildJob.id)
            )
            # succeeded: r is set
            return [(int(i), int(lv), float(r or 0.0), p, bool(f)) for i, lv, r, p, f in s.execute(q)]

    def children_page(self, run_id: int, query: ChildrenQuery, *, kind: str = "search") -> tuple[int, list[dict]]:
        """(children matching the filters, one page of them as dicts) for the children table.
        By accuracy, descending, it ranks as `pnas top`: children trained to the run's full
        epochs first (a multi-fidelity run stops some early), then the others; ascending is the
        reverse; children without an accuracy come last either way."""
        col = SORTABLE[query.sort]
        order = col.desc() if query.descending else col.asc()
        with self._tx() as s:
            first: list[Any] = []
            if query.sort == "accuracy":
                full, short = (0, 1) if query.descending else (1, 0)
                first.append(case((ChildJob.reward.is_(None), 2), (trained_to_full(full_epochs(s, run_id)), full), else_=short))
            where = [ChildJob.run_id == run_id, ChildJob.kind == kind]
            if query.level is not None:
                where.append(ChildJob.level == query.level)
            if query.state:
                where.append(ChildJob.state == query.state)
            if query.text:
                like = f"%{query.text}%"
                where.append(or_(ChildJob.arch_id.like(like), ChildJob.worker.like(like), cast(ChildJob.cell, Text).like(like)))
            total = int(s.scalar(select(func.count(ChildJob.id)).where(*where)) or 0)
            cols = (ChildJob.id, ChildJob.level, ChildJob.state, ChildJob.reward, ChildJob.test_accuracy, ChildJob.params, ChildJob.predicted,
                    ChildJob.rank, ChildJob.worker, ChildJob.attempts, ChildJob.max_attempts, ChildJob.wall_seconds,
                    ChildJob.arch_id, ChildJob.cell, ChildJob.finished_at, ChildJob.epochs_trained, ChildJob.rung)  # fmt: skip
            q = (
                select(*cols)
                .where(*where)
                .order_by(*first, order.nulls_last(), ChildJob.id)
                .offset(max(0, query.offset))
                .limit(max(1, query.limit))
            )
            rows = []
            for r in s.execute(q):
                rows.append(
                    {"id": r.id, "level": r.level, "state": r.state, "accuracy": r.reward, "test_accuracy": r.test_accuracy, "params": r.params,
                     "predicted": r.predicted, "rank": r.rank, "worker": r.worker, "attempts": r.attempts,
                     "max_attempts": r.max_attempts, "seconds": r.wall_seconds, "arch_id": r.arch_id,
                     "cell_json": r.cell, "finished_at": as_datetime(r.finished_at), "epochs": r.epochs_trained,
                     "rung": r.rung}  # fmt: skip
                )
            return total, rows

    def rung_progress(self, run_id: int, *, kind: str = "search") -> dict[int, dict]:
        """{level: children, ``completed`` {epochs: children whose training to that rung's
        epochs succeeded}, ``pending`` {rung index: children queued or running toward it}}:
        the run page's rungs (multi-fidelity), from one narrow query."""
        pending_states = (JobState.queued.value, JobState.running.value)
        out: dict[int, dict] = {}
        with self._tx() as s:
            q = select(ChildJob.level, ChildJob.state, ChildJob.rung, ChildJob.rung_rewards).where(
                ChildJob.run_id == run_id, ChildJob.kind == kind
            )
            for level, state, rung, rewards in s.execute(q):
                lv = out.setdefault(int(level), {"children": 0, "completed": {}, "pending": {}})
                lv["children"] += 1
                for epochs in rewards or {}:
                    lv["completed"][int(epochs)] = lv["completed"].get(int(epochs), 0) + 1
                if state in pending_states:
                    lv["pending"][int(rung or 0)] = lv["pending"].get(int(rung or 0), 0) + 1
        return out

    def cost_points(self, run_id: int, *, kind: str = "search") -> tuple[int, list[dict]]:
        """(the run's full epochs, every succeeded child as {id, level, accuracy, params,
        flops, epochs, full}): the accuracy-against-cost chart; ``full``: trained to the
        full epochs (or from before epochs were recorded), the only ones on a front."""
        with self._tx() as s:
            full = full_epochs(s, run_id)
            cols = (ChildJob.id, ChildJob.level, ChildJob.reward, ChildJob.params, ChildJob.flops, ChildJob.epochs_trained)
            q = (
                select(*cols, trained_to_full(full))
                .where(ChildJob.run_id == run_id, ChildJob.kind == kind, ChildJob.state == _S)
                .order_by(ChildJob.id)
            )
            rows = [{"id": int(i), "level": int(lv), "accuracy": float(r or 0.0), "params": p, "flops": f, "epochs": e,
                     "full": bool(at_full)} for i, lv, r, p, f, e, at_full in s.execute(q)]  # fmt: skip
        return full, rows

    def baseline_run(self, run_id: int) -> int | None:
        """The newest other run on the same dataset with another strategy (pnas, random, evolution)
        that has a succeeded child: the baseline the run page compares against; None if none."""
        with self._tx() as s:
            runs = [(r.id, r.config or {}, r.updated_at) for r in s.scalars(select(Run))]
            mine = next((c for i, c, _ in runs if i == run_id), None)
            if mine is None:
                return None

            def key(c: dict) -> tuple:
                return ((c.get("train") or {}).get("dataset"), c.get("strategy", "pnas"))

            dataset, strategy = key(mine)
            others = [(u, i) for i, c, u in runs if i != run_id and key(c)[0] == dataset and key(c)[1] != strategy]
            for _, i in sorted(others, reverse=True):
                has = s.scalar(select(ChildJob.id).where(ChildJob.run_id == i, ChildJob.kind == "search",
                                                         ChildJob.state == _S).limit(1))  # fmt: skip
                if has is not None:
                    return i
            return None
