"""Small shared pieces of the operators' commands: a cell's readable line, one child as a
JSON-ready dict, durations and numbers for tables, and how a command opens the store."""

from __future__ import annotations

import json
from datetime import datetime

from shared.jobs import JobView
from shared.space import Block, Cell


def cell_of(cell: list) -> Cell:
    """The stored block lists as a `Cell`, in their stored order (no re-canonicalising, so
    the line is the same one the SQL views print)."""
    return Cell(tuple(Block(*blk) for blk in cell))


def readable(cell: list) -> str:
    return cell_of(cell).readable()


def job_dict(j: JobView, *, rank: int | None = None) -> dict:
    """One child for `--json`: the keys scripts rely on (id, level, accuracy, cell) first."""
    out = {
        "id": j.id,
        "level": j.level,
        "accuracy": j.reward,
        "cell": readable(j.cell),
        "test_accuracy": j.test_accuracy,  # reported only: cells are chosen by accuracy
        "arch_id": j.arch_id,
        "network_id": j.network_id,
        "params": j.params,
        "flops": j.flops,  # multiply-adds of one image (shared.space.cost)
        "latency_ms": j.latency_ms,  # predicted from the run's latency table (shared.latency)
        "cell_json": j.cell,
        "predicted": j.predicted,
        "kind": j.kind,
        "state": j.state,
        "wall_seconds": j.wall_seconds,
        "epochs": j.epochs_trained,  # what its accuracy is from (a multi-fidelity run stops some early)
    }
    if rank is not None:
        out = {"rank": rank, **out}
    return out


def latency_text(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.3g}"


def iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def num(x: float | None, fmt: str = ".4f") -> str:
    return "-" if x is None else format(x, fmt)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s"


def dumps(obj: object) -> str:
    return json.dumps(obj, default=lambda o: o.isoformat() if isinstance(o, datetime) else str(o))


def open_store():
    """The store of PNAS_DATABASE_URL with its schema checked (SQLite is upgraded in place).

    For the commands that only look: an SQLite file that does not exist is `NothingToShow`
    (saying where it looked), never a new empty database."""
    from shared.settings import get_settings
    from shared.store import Store

    settings = get_settings()
    require_database(settings.database_url)
    store = Store.from_settings(settings)
    store.ensure_schema()
    return store


def require_database(url: str) -> None:
    """`NothingToShow` when ``url`` is an SQLite file that does not exist (nothing created)."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    from shared.errors import NothingToShow

    u = make_url(url)
    if not u.drivername.startswith("sqlite") or u.database in (None, "", ":memory:"):
        return
    path = Path(u.database)
    if not path.exists():
        raise NothingToShow(
            f"no database at {path.absolute()} (PNAS_DATABASE_URL={url}): no runs to show yet; "
            "start one here with `pnas search`, or point PNAS_DATABASE_URL at your runs' database "
            "(sqlite:////abs/path/pnas.db or postgresql://...)"
        )


def console():
    """A rich console for stdout; wide when piped, so a table in a log is not squeezed to 80."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=220, soft_wrap=False)
