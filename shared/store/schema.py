"""Schema checks and migrations, and PostgreSQL role administration."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from shared.db.models import DatabaseIdentity
from shared.errors import UserError, first_line
from shared.store.engine import StoreBase

if TYPE_CHECKING:
    from alembic.config import Config


# What a worker writes: its child's row, the epochs, its own row in the registry.
WORKER_WRITES = {"jobs": ("SELECT", "UPDATE"), "epochs": ("INSERT", "DELETE"), "workers": ("INSERT", "UPDATE")}


class SchemaAdmin(StoreBase):
    _identity: str | None = None  # database_identity(), once read

    def _alembic_config(self) -> Config:
        from alembic.config import Config

        cfg = Config()
        # `migrations` is installed beside `shared` (source tree, editable or wheel alike).
        cfg.set_main_option("script_location", str(Path(__file__).resolve().parents[2] / "migrations"))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        cfg.attributes["engine"] = self.engine
        return cfg

    def schema_revision(self) -> tuple[str | None, str]:
        """(current revision in the database, head revision of the code)."""
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        assert head is not None, "the migrations folder has no head revision"
        try:
            with self.engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
        except OperationalError as exc:
            raise self._unreachable(exc) from None
        return current, head

    def _unreachable(self, exc: OperationalError) -> UserError:
        """One line for a database that cannot be connected to; how to create a missing one."""
        u = self.engine.url
        if not self.is_sqlite and re.search(r'database ".*" does not exist', str(exc)):
            host, port, user = u.host or "localhost", u.port or 5432, u.username or "postgres"
            return UserError(
                f"the PostgreSQL database {u.database!r} does not exist on {host}:{port}; create it first with "
                f"`createdb -h {host} -p {port} -U {user} {u.database}` (or `CREATE DATABASE \"{u.database}\";` "
                "in psql), then run `pnas db upgrade`"
            )
        return UserError(f"cannot reach the database at {self.safe_url}: {first_line(exc)}")

    def upgrade(self) -> tuple[str | None, str]:
        """Apply every migration (``alembic upgrade head``); returns (before, after)."""
        from alembic import command

        before, head = self.schema_revision()
        command.upgrade(self._alembic_config(), "head")
        return before, head

    def ensure_schema(self, *, auto_upgrade: bool | None = None) -> None:
        """SQLite: create or upgrade the file. PostgreSQL: refuse a schema that is not current."""
        if auto_upgrade is None:
            auto_upgrade = self.is_sqlite
        current, head = self.schema_revision()
        if current == head:
            return
        if auto_upgrade:
            self.upgrade()
            return
        state = "has no pnas tables" if current is None else f"is at revision {current}, the code needs {head}"
        raise UserError(f"the database {self.safe_url} {state}; run `pnas db upgrade` first")

    def database_identity(self) -> str:
        """The random id this database was given when its schema was made (migration
        0009_database_identity): what its checkpoints are stored under. Read once."""
        if self._identity is None:
            with self._tx() as s:
                found = s.scalar(select(DatabaseIdentity.identity).where(DatabaseIdentity.one == 1))
            if found is None:
                raise UserError(f"the database {self.safe_url} has no identity row; run `pnas db upgrade` first")
            self._identity = found
        return self._identity

    def missing_worker_privileges(self) -> tuple[str, list[str]]:
        """PostgreSQL: (the connecting role, the privileges a worker needs that it lacks, as
        "UPDATE on jobs"); nothing missing on SQLite. Asks the catalogue, writes nothing."""
        if self.is_sqlite:
            return "", []
        with self._tx() as s:
            role = s.scalar(text("SELECT current_user"))
            missing = [
                f"{priv} on {table}"
                for table, privs in WORKER_WRITES.items()
                for priv in privs
                if not s.scalar(text("SELECT has_table_privilege(:t, :p)"), {"t": table, "p": priv})
            ]
            seq = s.scalar(text("SELECT pg_get_serial_sequence('epochs', 'id')"))
            if seq and not s.scalar(text("SELECT has_sequence_privilege(:q, 'USAGE')"), {"q": seq}):
                missing.append(f"USAGE on {seq}")
        return str(role), missing

    def grant_readonly(self, role: str, *, password: str | None = None, login: bool = True) -> list[str]:
        """PostgreSQL: create ``role`` if missing and let it SELECT every table and view of the
        current database, now and later. Idempotent. Returns the statements it ran (a
        password is shown as '***'). UserError on SQLite or a role name that is not a plain
        identifier."""
        if self.is_sqlite:
            raise UserError("roles exist only on PostgreSQL; an SQLite file is read-only with `sqlite3 -readonly FILE`")
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
            raise UserError(f"role name {role!r} must be lower-case letters, digits and _ (a plain SQL identifier)")
        shown: list[str] = []
        with self._tx() as s:
            exists = s.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
            stmts: list[tuple[str, str]] = []  # (SQL, what to show of it; "" = the SQL itself)
            if not exists:
                stmts.append((f"CREATE ROLE {role} {'LOGIN' if login else 'NOLOGIN'}", ""))
            if password is not None:
                # A bind parameter cannot be used in ALTER ROLE; quote_literal on the server does it.
                quoted = s.scalar(text("SELECT quote_literal(:p)"), {"p": password})
                stmts.append((f"ALTER ROLE {role} PASSWORD {quoted}", f"ALTER ROLE {role} PASSWORD '***'"))
            dbname = s.scalar(text("SELECT current_database()"))
            stmts += [
                (f'GRANT CONNECT ON DATABASE "{dbname}" TO {role}', ""),
                (f"GRANT USAGE ON SCHEMA public TO {role}", ""),
                (f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}", ""),
                (f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {role}", ""),
            ]
            for sql, show in stmts:
                s.execute(text(sql))
                shown.append(show or sql)
        return shown
