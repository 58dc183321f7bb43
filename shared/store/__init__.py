"""The store: every read and write of runs, levels and child jobs, on SQLite or PostgreSQL.

Contract:
- one helper (`StoreBase._tx`) owns every transaction; nothing else commits;
- it hands out immutable views (`RunView`, `LevelView`, `JobView`), never ORM objects, with
  states as their enums (`RunState`, `LevelState`, `JobState`);
- expected races return a value instead of raising: `claim` gives the attempt number or
  None, fenced writes (`heartbeat`, `add_epoch`, `finish`, `fail`) give True or False;
- times that decide liveness (leases, run locks) come from the database clock.

One module per audience, combined into the one `Store` front:

    engine      engines per backend, the transaction helper, the database clock
    schema      schema checks, migrations, PostgreSQL roles (`pnas db`)
    runs        runs, the controller's run lock, levels, predictions
    scheduling  the controller's side of child jobs: insert, progress, sweep, requeue, retry
    streaks     the failure streak a search stops on
    attempts    the worker's side: claim, lease, epochs, fenced finish or failure, hand back
    registry    the worker registry
    reports     read-only queries for the operators' tools
    browse      read-only queries for the web dashboard (`pnas dashboard`)
    rows        ORM rows to views, shared query helpers
"""

from __future__ import annotations

from typing import Any

from shared.store.attempts import Attempts
from shared.store.browse import Browse
from shared.store.engine import StoreBase, make_engine, pg_url
from shared.store.reports import Reports
from shared.store.runs import Runs
from shared.store.scheduling import Scheduling
from shared.store.streaks import Streaks
from shared.store.schema import SchemaAdmin

__all__ = ["Store", "make_engine", "pg_url"]


class Store(Attempts, Scheduling, Streaks, Runs, Reports, Browse, SchemaAdmin, StoreBase):
    """Runs, levels and child jobs in one relational database (see the package docstring)."""

    @classmethod
    def from_settings(cls, settings: Any = None, **kw: Any) -> "Store":
        from shared.settings import get_settings

        s = settings or get_settings()
        return cls(s.database_url, pool_size=s.db_pool_size, **kw)
