"""The store's foundation: engines for each backend, the one transaction helper, the database clock."""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import create_engine, event, func, literal_column, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from shared.store.rows import as_datetime


def pg_url(url: str) -> str:
    """Normalise a PostgreSQL URL to the psycopg2 driver (SQLAlchemy 2.1 defaults to psycopg 3)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def make_engine(url: str, *, pool_size: int = 2, null_pool: bool = False, connect_timeout: int | None = None) -> Engine:
    """An engine with the settings this project needs on each backend.

    SQLite: WAL and a busy timeout so that several local worker processes can share the
    file, and ``BEGIN IMMEDIATE`` so that a writer never fails half-way through upgrading
    a read lock. PostgreSQL: a small pool with pre-ping (workers hold few connections and
    survive a database restart), and a connect timeout (``PNAS_DB_CONNECT_TIMEOUT`` unless
    given) that covers the TLS handshake and startup too: a server that never answers is an
    error, not a hang.
    """
    url = pg_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if connect_timeout is None:
        from shared.settings import get_settings

        connect_timeout = get_settings().db_connect_timeout
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": int(connect_timeout)}
    if null_pool:
        kwargs["poolclass"] = NullPool
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size)
    return create_engine(url, **kwargs)


class StoreBase:
    """The engine, the one helper that owns every transaction, and the database's clock."""

    def __init__(self, url: str, *, pool_size: int = 2, null_pool: bool = False) -> None:
        self.url = pg_url(url)
        self.engine = make_engine(self.url, pool_size=pool_size, null_pool=null_pool)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._pid = os.getpid()

    def dispose(self) -> None:
        self.engine.dispose()

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        """The one place that commits or rolls back."""
        if os.getpid() != self._pid:  # forked: never reuse the parent's connections
            self.engine.dispose(close=False)
            self._pid = os.getpid()
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def _now(self, plus_seconds: float = 0.0) -> Any:
        """The database's clock (UTC), optionally shifted; an SQL expression."""
        if self.is_sqlite:
            return func.strftime("%Y-%m-%d %H:%M:%f", "now", f"{plus_seconds:+.3f} seconds")
        now: Any = literal_column("(now() at time zone 'utc')")
        if plus_seconds:
            return now + literal_column(f"interval '{float(plus_seconds):.3f} seconds'")
        return now

    def _db_now(self, s: Session) -> datetime:
        return as_datetime(s.execute(select(self._now())).scalar_one())

    def db_now(self) -> datetime:
        with self._tx() as s:
            return self._db_now(s)

    def ping(self) -> None:
        with self._tx() as s:
            s.execute(text("SELECT 1"))
