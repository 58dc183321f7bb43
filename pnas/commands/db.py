"""`pnas db upgrade|current|grant-readonly`: the schema, through Alembic, and a read-only role."""

from __future__ import annotations

import typer

from shared.settings import get_settings


def register(app: typer.Typer) -> None:
    db = typer.Typer(help="The database schema (Alembic migrations).", no_args_is_help=True)

    @db.command()
    def upgrade() -> None:
        """Apply every migration to PNAS_DATABASE_URL (the same as `alembic upgrade head`)."""
        from shared.store import Store

        store = Store.from_settings(get_settings())
        before, head = store.upgrade()
        if before == head:
            print(f"{store.safe_url}: schema already at {head}")
        else:
            print(f"{store.safe_url}: schema upgraded from {before or 'empty'} to {head}")

    @db.command()
    def current() -> None:
        """Print the schema revision of the database and of the code."""
        from shared.store import Store

        store = Store.from_settings(get_settings())
        cur, head = store.schema_revision()
        print(f"{store.safe_url}: database at {cur or 'empty'}, code at {head}")

    @db.command("grant-readonly")
    def grant_readonly(
        role: str = typer.Argument(..., help="Role to create or update, e.g. analyst."),
        password_env: str = typer.Option(None, "--password-env", help="Name of an environment variable holding the role's password (never typed on the command line)."),
        nologin: bool = typer.Option(False, "--nologin", help="A group role: grant it to people with GRANT ROLE TO user."),
    ) -> None:
        """PostgreSQL: let ROLE read every table and view (SELECT only), now and later."""
        import os

        from shared.errors import UserError
        from shared.store import Store

        password = None
        if password_env:
            password = os.environ.get(password_env)
            if not password:
                raise UserError(f"--password-env {password_env}: that environment variable is empty or not set")
        store = Store.from_settings(get_settings())
        store.ensure_schema()
        for stmt in store.grant_readonly(role, password=password, login=not nologin):
            print(stmt)
        if password is None and not nologin:
            print(f"-- no password set: give one with ALTER ROLE {role} PASSWORD '...' (or \\password {role} in psql)")

    app.add_typer(db, name="db")
