"""The workers' Celery app: ``celery -A worker.celery_app worker`` (or `pnas worker`).

Its configuration comes from `shared.queue.celery_config`, the one the controller uses too.
This module imports neither TensorFlow nor the training code: the prefork parent must not
initialise CUDA before it forks; the pool child imports TensorFlow when it trains.

Besides the task (`worker.tasks`), two pieces of worker life live here:
- a bootstep registers the worker in the store and renews its ``last_seen`` on the event
  loop's timer (no thread in the parent, so forking stays safe);
- (`worker.process.training`) each pool child turns a stop signal into
  `worker.runner.Shutdown` while it trains, so that a cold or soft shutdown hands the running
  child back instead of losing it.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from celery import Celery, bootsteps

from shared.queue import celery_config
from shared.settings import get_settings
from worker.process import store

log = logging.getLogger("pnas.worker")

app = Celery("pnas")
app.conf.update(celery_config(get_settings()))
app.conf.include = ["worker.tasks"]
# Workers only (the controller never forks a pool): the prefork pool, replacing each exited
# one-child process at once instead of on Celery's 5-second timer.
app.conf.worker_pool = "worker.pool:PromptRefillTaskPool"


class Registration(bootsteps.StartStopStep):
    """Put this worker in the store's workers table and keep its ``last_seen`` fresh."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker: Any) -> None:
        settings = get_settings()
        device = os.environ.get("PNAS_WORKER_DEVICE", "unknown (started without `pnas worker`)")
        try:
            store().register_worker(worker.hostname, hostname=socket.gethostname(), device=device)
        except Exception as exc:  # the database may be restarting; the first claim registers it
            log.warning("could not register worker %s: %s", worker.hostname, exc)
        log.info("worker %s ready on %s", worker.hostname, device)
        self.tref = worker.timer.call_repeatedly(settings.heartbeat_seconds, self._seen, (worker.hostname,))

    @staticmethod
    def _seen(name: str) -> None:
        try:
            store().worker_seen(name)
        except Exception as exc:
            log.debug("worker heartbeat skipped: %s", exc)

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
        try:  # offline at once, not live and idle until the heartbeat is a lease old
            store().worker_stopped(worker.hostname)
        except Exception as exc:
            log.warning("could not mark worker %s offline: %s", worker.hostname, exc)

    def terminate(self, worker: Any) -> None:  # a cold shutdown (a second signal, SIGQUIT)
        self.stop(worker)


app.steps["worker"].add(Registration)
