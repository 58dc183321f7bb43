"""Executors hand child jobs to workers; the controller learns results from the store.

Contract (`Executor`):
- ``start(run_id)`` before the first submit; ``stop()`` when the search ends or is
  interrupted (it must leave no worker of its own running);
- ``submit(job_ids)`` delivers queued jobs; delivering one twice is harmless because a
  worker must claim a job in the store before it trains it;
- ``check()`` raises `SearchAborted` if the executor can no longer make progress;
- ``reconcile(queued_ids)`` re-delivers queued jobs whose delivery was lost (a broker
  restarted without persistence); returns the ids it re-sent.
The controller never waits on an executor: it waits by reading the store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Callable, Iterable, Protocol, Sequence

from shared.errors import SearchAborted
from shared.tf_noise import is_noise


class Executor(Protocol):
    name: str

    def ready(self) -> None:
        """Raise `UserError` when it cannot work (the broker is unreachable); called before
        the run is created, so a failed check leaves nothing stored."""

    def start(self, run_id: int) -> None: ...

    def submit(self, job_ids: Sequence[int]) -> None: ...

    def check(self) -> None: ...

    def reconcile(self, queued_ids: Iterable[int], *, recheck: Callable[[], Iterable[int]] | None = None) -> list[int]:
        """Re-deliver queued jobs whose delivery was lost; ``recheck`` reads the queued ids again
        after the broker was looked at, and only those still queued are re-delivered."""

    def stop(self) -> None: ...


def _relay(stream) -> None:
    """Pass a worker's stderr on to ours, without TensorFlow's start-up chatter."""
    for line in stream:
        if not is_noise(line):
            sys.stderr.write(line)
            sys.stderr.flush()


class LocalExecutor:
    """N worker processes on this machine, started by command (``python -m worker.local``).

    They take queued jobs from the database themselves, so `submit` has nothing to send.
    A worker process that dies is restarted, up to a limit.
    """

    name = "local"

    def __init__(self, *, workers: int = 1, env: dict | None = None, max_restarts: int = 20) -> None:
        self.workers = max(1, workers)
        self.env = {**os.environ, **(env or {})}
        self.max_restarts = max_restarts
        self.restarts = 0
        self.procs: list[subprocess.Popen] = []
        self.run_id: int | None = None

    def _spawn(self) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "worker.local", "--run", str(self.run_id), "--parent-pid", str(os.getpid())]
        # A session of its own: Ctrl-C reaches only the controller, which stops the workers
        # once, so each hands its child back exactly once.
        proc = subprocess.Popen(
            cmd, env=self.env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace",
            start_new_session=True,
        )
        threading.Thread(target=_relay, args=(proc.stderr,), daemon=True).start()
        return proc

    def ready(self) -> None:
        pass  # local processes need nothing the run's creation should wait for

    def start(self, run_id: int) -> None:
        self.run_id = run_id
        self.procs = [self._spawn() for _ in range(self.workers)]

    def submit(self, job_ids: Sequence[int]) -> None:
        pass  # the database is the queue

    def reconcile(self, queued_ids: Iterable[int], *, recheck: Callable[[], Iterable[int]] | None = None) -> list[int]:
        return []  # nothing is delivered, so nothing can be lost on the way

    def check(self) -> None:
        for i, p in enumerate(self.procs):
            if p.poll() is None:
                continue
            if self.restarts >= self.max_restarts:
                raise SearchAborted(
                    f"local worker processes exited {self.restarts} times (last exit code {p.returncode}); "
                    "see the messages above"
                )
            self.restarts += 1
            self.procs[i] = self._spawn()

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 30
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []
