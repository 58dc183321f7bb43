"""Celery's prefork pool, refilled promptly.

Every child trains in a fresh pool process (``max_tasks_per_child=1``: TensorFlow gives GPU
memory back only when its process exits). Celery's pool starts the replacement process on its
maintenance timer, every 5 s, so a worker sat idle for 2.5 s on average between children
(bench/queue_overhead.py, bench/scaling.py). This pool runs the same maintenance every
`REFILL_SECONDS`; it only checks a handful of process sentinels, so it costs nothing.
"""

from __future__ import annotations

from celery.concurrency.asynpool import AsynPool
from celery.concurrency.prefork import TaskPool

REFILL_SECONDS = 0.2  # how soon an exited pool process is replaced


class _PromptRefillPool(AsynPool):
    @property
    def timers(self) -> dict:
        return {self.maintain_pool: REFILL_SECONDS}


class PromptRefillTaskPool(TaskPool):
    """The prefork pool (`--pool prefork`) with `_PromptRefillPool` underneath."""

    Pool = _PromptRefillPool
