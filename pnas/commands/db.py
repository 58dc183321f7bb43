"""`pnas db upgrade|current`: the schema, through Alembic."""

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

    app.add_typer(db, name="db")
