"""What one worker process holds for its whole life: its store, and the job it is training.

Shared by the Celery app (its bootstep) and the task (its stop signals), so that neither
imports the other.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Iterator

from billiard.common import TERM_SIGNAL

from shared.settings import get_settings
from shared.store import Store
from worker.runner import StopFlag

_training: list[int] = []  # the job this process is training (SIGTERM hands it back)
_stop_asked = StopFlag()  # set by a stop signal while training


def _stop(signum: int, _frame: Any) -> None:
    """A stop signal in a pool process: idle, exit; training, ask the runner to hand back."""
    if not _training:
        os._exit(0)  # idle: nothing to hand back
    _stop_asked.set()  # the runner's next check (after every batch) hands the child back


@contextmanager
def training(job_id: int) -> Iterator[StopFlag]:
    """Mark ``job_id`` as the one this process trains, for as long as the block runs; yields
    the event a stop signal sets (give it to `worker.runner.run_job` as ``stop``).

    A stop signal only sets the event: raising from the handler could interrupt any
    statement (an import, a database write) and lose the child instead of handing it back.
    The handler is set here, at the task, not when the pool process starts: billiard
    replaces a pool process's SIGTERM/SIGQUIT handlers after Celery's worker_process_init
    with one that exits (and exits at once on a second signal). Celery cancels a running
    task with billiard's TERM_SIGNAL (SIGQUIT when `pnas worker` remaps SIGTERM); a plain
    SIGTERM may come from a person. Celery waits for the pool process to exit.
    """
    _stop_asked.clear()
    for sig in {signal.SIGTERM, TERM_SIGNAL}:
        signal.signal(sig, _stop)
    _training.append(job_id)
    try:
        yield _stop_asked
    finally:
        _training.pop()


@lru_cache(maxsize=1)
def store() -> Store:
    """This process's store (one connection pool per process)."""
    return Store.from_settings(get_settings())
