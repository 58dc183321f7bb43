"""The worker registry: who is there, on which device, training what, last seen when."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.db.models import WorkerRow
from shared.store.engine import StoreBase


def worker_state(w: dict, *, lease: float) -> str:
    """``offline`` once the worker said it exited or its heartbeat is older than the lease (the
    rule that declares its child lost); else ``training`` or ``idle``."""
    if w.get("stopped_at") is not None or w["seconds_ago"] > lease:
        return "offline"
    return "training" if w["job_id"] else "idle"


class WorkerRegistry(StoreBase):
    def register_worker(self, name: str, *, hostname: str, device: str) -> None:
        with self._tx() as s:
            now = self._db_now(s)
            row = s.get(WorkerRow, name)
            if row is None:
                s.add(WorkerRow(name=name, hostname=hostname, device=device, started_at=now, last_seen=now))
            else:
                row.hostname, row.device, row.started_at, row.last_seen, row.job_id = hostname, device, now, now, None
                row.stopped_at = None

    def worker_stopped(self, name: str) -> None:
        """The worker exits: it shows as offline at once (not live and idle for a lease)."""
        with self._tx() as s:
            now = self._db_now(s)
            s.execute(update(WorkerRow).where(WorkerRow.name == name).values(stopped_at=now, last_seen=now, job_id=None))

    def worker_seen(self, name: str) -> None:
        with self._tx() as s:
            s.execute(update(WorkerRow).where(WorkerRow.name == name).values(last_seen=self._now()))

    def workers(self) -> list[dict]:
        """Every worker seen, most recently heard from first; `worker_state` says which are live."""
        with self._tx() as s:
            now = self._db_now(s)
            out = []
            for w in s.scalars(select(WorkerRow).order_by(WorkerRow.last_seen.desc())):
                out.append(
                    dict(
                        name=w.name,
                        hostname=w.hostname,
                        device=w.device,
                        started_at=w.started_at,
                        last_seen=w.last_seen,
                        seconds_ago=max(0.0, (now - w.last_seen).total_seconds()),
                        job_id=w.job_id,
                        stopped_at=w.stopped_at,
                    )
                )
            return out

    def _touch_worker(self, s: Session, worker: str, job_id: int | None) -> None:
        res = s.execute(update(WorkerRow).where(WorkerRow.name == worker).values(last_seen=self._now(), job_id=job_id, stopped_at=None))
        if res.rowcount == 0:  # type: ignore[attr-defined]
            now = self._db_now(s)
            try:
                with s.begin_nested():
                    s.add(WorkerRow(name=worker, hostname=None, device=None, started_at=now, last_seen=now, job_id=job_id))
            except IntegrityError:
                pass

    def _ended(self, s: Session, res: Any, job_id: int) -> bool:
        """After a fenced write that ends an attempt: free its worker if the write took."""
        if res.rowcount != 1:
            return False
        s.execute(update(WorkerRow).where(WorkerRow.job_id == job_id).values(job_id=None, last_seen=self._now()))
        return True
