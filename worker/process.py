"""What one worker process holds for its whole life: its store, and the job it is training.

Shared by the Celery app (its bootstep and signal handlers) and the task, so that neither
imports the other.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator

from shared.settings import get_settings
from shared.store import Store

_training: list[int] = []  # the job this process is training (SIGTERM hands it back)


def training_job() -> int | None:
    """The job this process is training now, or None when it is idle."""
    return _training[-1] if _training else None


@contextmanager
def training(job_id: int) -> Iterator[None]:
    """Mark ``job_id`` as the one this process trains, for as long as the block runs."""
    _training.append(job_id)
    try:
        yield
    finally:
        _training.pop()


@lru_cache(maxsize=1)
def store() -> Store:
    """This process's store (one connection pool per process)."""
    return Store.from_settings(get_settings())
