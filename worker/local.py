"""A local worker process: takes queued children of one run from the database and trains them.

Started by the controller's local executor as ``python -m worker.local --run ID``; the
database is the queue (claim with a conditional update), so a child goes through the same
claim, lease and fenced-write path as one delivered by Celery. The process exits when its
parent (the controller) dies, handing its running child back first.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

from shared.settings import get_settings
from shared.store import Store
from worker.runner import Shutdown, StopFlag, load_trainer, retry_db, run_job, worker_name

log = logging.getLogger("pnas.worker")


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the parent dies (no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _too_many_failures(store: Store, run_id: int, settings) -> bool:
    """The controller's abort rule (`Search._check_failures`), read by the worker: as many
    dataset failures in a row as PNAS_MAX_DATASET_FAILURES, or any failures as
    PNAS_MAX_CONSECUTIVE_FAILURES."""
    data = retry_db(lambda: store.consecutive_failures(run_id, error_class="dataset"), what="count failures")
    if data >= settings.max_dataset_failures:
        return True
    return retry_db(lambda: store.consecutive_failures(run_id), what="count failures") >= settings.max_consecutive_failures


def serve(run_id: int, *, max_children: int | None = None, parent_pid: int | None = None) -> int:
    settings = get_settings()
    store = Store.from_settings(settings)
    trainer = load_trainer(settings.trainer)
    name = worker_name()
    retry_db(lambda: store.register_worker(name, hostname=os.uname().nodename, device="cpu (local)"), what="register")
    done, idle = 0, 0.05
    stopping = StopFlag()  # the training sees it at its next check and hands back

    def _stop(signum: int, _frame: object) -> None:
        # Only a flag: an exception raised from a signal handler lands wherever the main
        # thread happens to be (a __del__, a finally) and is printed as "Exception ignored".
        # The trainer stops at its next check (after a batch) and the child is handed back;
        # anywhere else (a claim, a result being written) the loop finishes the write and exits.
        stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while (max_children is None or done < max_children) and not stopping.is_set():
            if parent_pid and os.getppid() != parent_pid:
                log.info("controller is gone; worker %s exits", name)
                return 0
            claimed = retry_db(
                lambda: store.claim_next(worker=name, lease_seconds=settings.lease_seconds, run_id=run_id),
                what="take a job",
            )
            if claimed is None:
                retry_db(lambda: store.worker_seen(name), what="renew the worker's heartbeat")
                time.sleep(idle)  # a signal's handler sets the flag; the loop sees it next
                idle = min(idle * 2, 1.0)
                continue
            idle = 0.05
            job_id, attempt = claimed
            outcome = run_job(store, job_id, settings=settings, worker=name, attempt=attempt, trainer=trainer, stop=stopping)
            if outcome.state == "handed_back":
                break
            done += 1
            if outcome.state == "failed" and _too_many_failures(store, run_id, settings):
                # What the controller aborts on at its next poll: take no more children
                # meanwhile (a child failing in milliseconds would drain the level), unless
                # another worker's success ends the streak first.
                log.info("worker %s: too many children failed in a row; waiting for the controller", name)
                while not stopping.is_set() and _too_many_failures(store, run_id, settings):
                    if parent_pid and os.getppid() != parent_pid:
                        return 0
                    retry_db(lambda: store.worker_seen(name), what="renew the worker's heartbeat")
                    time.sleep(0.5)
    except Shutdown:
        log.info("worker %s stopping", name)
    finally:
        _say_stopped(store, name)
    log.info("worker %s stopped", name)
    return 0


def _say_stopped(store: Store, name: str) -> None:
    try:
        store.worker_stopped(name)
    except Exception as exc:  # the database is away: the lease rule marks it offline later
        log.warning("could not mark worker %s offline: %s", name, exc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m worker.local")
    p.add_argument("--run", type=int, required=True, help="run id whose children to train")
    p.add_argument("--max-children", type=int, default=None)
    p.add_argument("--parent-pid", type=int, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(
        level=get_settings().log_level.upper(),
        # its lines land in the search's own output (the executor relays them): its style
        format="  local worker %(process)d: %(message)s",
    )
    _die_with_parent()
    return serve(args.run, max_children=args.max_children, parent_pid=args.parent_pid)


if __name__ == "__main__":
    sys.exit(main())
