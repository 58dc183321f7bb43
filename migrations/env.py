"""Alembic environment: the database URL comes from the settings object (PNAS_DATABASE_URL).

`Store.upgrade()` passes its own engine in `config.attributes["engine"]`; the `alembic`
command line builds one from the settings.
"""

from alembic import context

from shared.db.models import Base
from shared.settings import get_settings

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    from shared.store import pg_url

    return pg_url(config.get_main_option("sqlalchemy.url") or get_settings().database_url)


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from shared.store import make_engine

        engine = make_engine(_url(), null_pool=True)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
