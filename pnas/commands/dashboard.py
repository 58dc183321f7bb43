"""`pnas dashboard [--host 127.0.0.1] [--port 8080] [--allow-actions]`: the web dashboard.

Reads through PNAS_DASHBOARD_DATABASE_URL when set (e.g. the role `pnas db grant-readonly`
makes), else PNAS_DATABASE_URL. Needs PNAS_DASHBOARD_TOKEN whenever it binds beyond
loopback or allows actions, and refuses to start without it.
"""

from __future__ import annotations

import typer

from pnas.render import require_database
from shared.errors import UserError
from shared.settings import get_settings

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_exposure(host: str, allow_actions: bool, token: str | None) -> None:
    """UserError (one line) when the dashboard would be open to others without a token."""
    if token:
        return
    if allow_actions:
        raise UserError("--allow-actions needs a token: set PNAS_DASHBOARD_TOKEN (clients send it as a Bearer token, "
                        "the password of basic auth, or ?token= once)")  # fmt: skip
    if host not in LOOPBACK:
        raise UserError(f"--host {host} serves other machines and needs a token: set PNAS_DASHBOARD_TOKEN, "
                        "or keep the default --host 127.0.0.1")  # fmt: skip


def register(app: typer.Typer) -> None:
    @app.command()
    def dashboard(
        host: str = typer.Option("127.0.0.1", help="Address to bind (anything beyond loopback needs PNAS_DASHBOARD_TOKEN)."),
        port: int = typer.Option(8080, help="TCP port."),
        allow_actions: bool = typer.Option(False, "--allow-actions",
                                           help="Offer retry and cancel on run and child pages (needs PNAS_DASHBOARD_TOKEN)."),
    ) -> None:
        """A live web dashboard of the runs, children and workers (read-only by default)."""
        from shared.store import Store

        settings = get_settings()
        if not 0 < port < 65536:
            raise UserError(f"--port must be between 1 and 65535, not {port}")
        token = settings.dashboard_token or None
        check_exposure(host, allow_actions, token)
        # It only looks (retry aside): a database that is not there is one line, never a new empty one.
        if settings.dashboard_database_url:
            require_database(settings.dashboard_database_url)
        if allow_actions or not settings.dashboard_database_url:
            require_database(settings.database_url)
        writer = Store.from_settings(settings)
        if settings.dashboard_database_url:
            reader = Store(settings.dashboard_database_url, pool_size=settings.db_pool_size)
            reader.ensure_schema(auto_upgrade=False)
        else:
            reader = writer
            writer.ensure_schema()
        if allow_actions and settings.dashboard_database_url:
            writer.ensure_schema()

        import uvicorn

        from pnas.dashboard import create_app

        web = create_app(reader, settings, allow_actions=allow_actions, token=token, action_store=writer)
        mode = "retry and cancel allowed" if allow_actions else "read-only"
        shown = f"[{host}]" if ":" in host else host
        print(f"pnas dashboard on http://{shown}:{port}/ ({mode}{', token required' if token else ''}), "
              f"reading {reader.safe_url}", flush=True)  # fmt: skip
        uvicorn.run(web, host=host, port=port, log_level="warning", access_log=False)
