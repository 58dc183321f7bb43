"""The controller's run lock: one controller per run, kept alive by a thread for the whole run.

The lock lives in the store (owner and expiry on the database clock). A holder that is a
process of this host and pid namespace which no longer exists is not a holder; anything
else is left to the lock's expiry.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid

from shared.errors import SearchAborted, UserError
from shared.jobs import RunView
from shared.store import Store

LOCK_TTL = 60.0  # seconds a controller's run lock lasts without renewal


def new_owner() -> str:
    """host:pid:pid-namespace:nonce, the identity a controller holds a lock under."""
    return f"{socket.gethostname()}:{os.getpid()}:{_pid_namespace()}:{uuid.uuid4().hex[:8]}"


class RunLock:
    """Held from `acquire` to `release`; `check` raises if another controller took it over."""

    def __init__(self, store: Store, run: RunView, owner: str) -> None:
        self.store, self.run, self.owner = store, run, owner
        self._keeper: _LockKeeper | None = None

    def acquire(self) -> None:
        """Take the lock and start renewing it; UserError when a live controller holds it."""
        run = self.run
        holder = self.store.acquire_run_lock(run.id, owner=self.owner, ttl_seconds=LOCK_TTL)
        if holder is not None and _stale_here(holder):
            self.store.release_run_lock(run.id, owner=holder)
            holder = self.store.acquire_run_lock(run.id, owner=self.owner, ttl_seconds=LOCK_TTL)
        if holder is not None:
            host, pid = (holder.split(":") + ["?", "?"])[:2]
            raise UserError(
                f"run {run.name!r} is already being searched by another controller (pid {pid} on {host}); "
                f"wait for it, or stop it first (its lock expires {int(LOCK_TTL)} s after it stops renewing)"
            )
        self._keeper = _LockKeeper(self.store, run.id, self.owner)
        self._keeper.start()

    def check(self) -> None:
        """Renew now; SearchAborted if another controller holds the run."""
        holder = self._keeper.lost_to if self._keeper is not None else None
        if holder is None:
            holder = self.store.acquire_run_lock(self.run.id, owner=self.owner, ttl_seconds=LOCK_TTL)
        if holder is not None:
            raise SearchAborted(f"another controller ({holder}) took over run {self.run.name!r}; this one stops")

    def stop_renewing(self) -> None:
        if self._keeper is not None:
            self._keeper.stop()

    def release(self) -> None:
        self.stop_renewing()
        self.store.release_run_lock(self.run.id, owner=self.owner)


class _LockKeeper(threading.Thread):
    """Renews the run lock every third of its TTL for the whole run, so that long steps
    (fitting the predictor, scoring 10^5 candidates) never let it expire."""

    def __init__(self, store: Store, run_id: int, owner: str) -> None:
        super().__init__(daemon=True, name=f"run-lock-{run_id}")
        self.store, self.run_id, self.owner = store, run_id, owner
        self.stopped = threading.Event()
        self.lost_to: str | None = None  # set when another controller holds the lock

    def run(self) -> None:
        while not self.stopped.wait(LOCK_TTL / 3):
            try:
                holder = self.store.acquire_run_lock(self.run_id, owner=self.owner, ttl_seconds=LOCK_TTL)
            except Exception:  # the database may be restarting; the poll loop reports that
                continue
            if holder is not None:
                self.lost_to = holder
                return

    def stop(self) -> None:
        self.stopped.set()


def _pid_namespace() -> str:
    """Which pid namespace this process lives in: containers on one host (host networking
    gives them one hostname) each have their own, and their pids overlap."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "-"


def _is_zombie(pid: int) -> bool:
    """Whether ``pid`` has exited but not been reaped yet (``os.kill(pid, 0)`` still succeeds
    on it): the state letter in /proc/PID/stat is Z (zombie) or X (dead)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # "pid (comm) S ...": comm may hold spaces and parentheses, so split after the last ")".
    rest = stat[stat.rfind(b")") + 1 :].split()
    return bool(rest) and rest[0] in (b"Z", b"X")


def _stale_here(holder: str) -> bool:
    """A lock held by a process of this host and pid namespace that no longer exists, or is
    a zombie (killed, not reaped yet), or is this very pid. Anything else is left to the
    lock's expiry."""
    parts = holder.split(":")
    if len(parts) < 4 or parts[0] != socket.gethostname() or parts[2] != _pid_namespace():
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return _is_zombie(pid)
    return _is_zombie(pid)
