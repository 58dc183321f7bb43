"""Run one child job through the store: claim, heartbeat, train, record.

The same path serves a job id delivered by Celery and a job a local worker process picked
from the database queue. Training itself (`settings.trainer`) knows nothing of either.

Outcomes:
- success: `store.finish`, fenced by (job id, attempt, running);
- `ChildFailed`, or any other exception of the training code: a final failure with the
  error text and the tail of the child's log;
- `ChildRetryable`: back to the queue while attempts remain;
- `Shutdown` (SIGTERM/SIGINT while training): the child is handed back, not counted;
- `pnas cancel` (seen at a heartbeat): training stops and the child is recorded cancelled.

The trainer is asked to stop through ``check``, a callable it calls between steps (the real
trainer: after every batch) that raises to stop it: `Shutdown`, `_NotOurs` (the lease was
lost) or `_Cancelled`. A trainer that does not take ``check`` is stopped at its next epoch.
"""

from __future__ import annotations

import inspect
import io
import logging
import os
import socket
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Callable

from sqlalchemy.exc import DBAPIError, OperationalError

from shared.config import SearchConfig, TrainConfig
from shared.errors import ChildFailed, ChildRetryable, UserError
from shared.jobs import EpochMetrics, Lease, TrainResult, child_seed
from shared.plugins import load_callable
from shared.settings import Settings
from shared.space import Cell
from shared.space.network import network_id
from shared.store import Store

log = logging.getLogger("pnas.worker")


class Shutdown(BaseException):
    """Raised in the training thread when the worker is asked to stop."""


class StopFlag:
    """"Stop at the next check", set from a signal handler: a plain attribute and no lock.

    A handler runs on the main thread between two bytecodes, perhaps while that thread holds
    a lock; `threading.Event.set` takes the event's lock, so a signal that arrives while the
    main thread waits on the same event deadlocks the process (seen: local workers that
    never exited after their controller was killed).
    """

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set


class _NotOurs(Exception):
    """The job was declared lost and handed to another attempt: stop training it."""


class _Cancelled(_NotOurs):
    """`pnas cancel` asked for this child to stop: stop training it, record it cancelled."""


@dataclass(frozen=True)
class Outcome:
    job_id: int
    state: str  # succeeded | failed | requeued | handed_back | cancelled | skipped | not_ours
    detail: str = ""


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def load_trainer(path: str) -> Callable[..., TrainResult]:
    return load_callable(path, what="PNAS_TRAINER")


def retry_db(fn: Callable, *, what: str, give_up_after: float = 600.0):
    """Call ``fn`` until the database answers (it may be restarting), up to ``give_up_after`` s."""
    delay, start = 0.5, time.monotonic()
    while True:
        try:
            return fn()
        except (OperationalError, DBAPIError) as exc:
            if isinstance(exc, DBAPIError) and not exc.connection_invalidated and not isinstance(exc, OperationalError):
                raise
            if time.monotonic() - start > give_up_after:
                raise
            log.warning("database unavailable while trying to %s (%s); retrying in %.1fs", what, type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


class _LogTail(logging.Handler):
    """Keeps the last few KB of what the child logged, for the database."""

    def __init__(self, limit: int) -> None:
        super().__init__(logging.INFO)
        self.limit = limit
        self.lines: deque[str] = deque()
        self.size = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.add(self.format(record))

    def add(self, line: str) -> None:
        self.lines.append(line)
        self.size += len(line) + 1
        while self.size > self.limit and len(self.lines) > 1:
            self.size -= len(self.lines.popleft()) + 1

    def text(self) -> str:
        return "\n".join(self.lines)[-self.limit :]


class _Heartbeat(threading.Thread):
    """Renews the lease every `heartbeat_seconds` on the database clock."""

    def __init__(self, store: Store, job_id: int, attempt: int, worker: str, settings: Settings) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{job_id}")
        self.store, self.job_id, self.attempt, self.worker, self.settings = store, job_id, attempt, worker, settings
        self.stopped = threading.Event()
        self.lost = False  # the job is no longer ours (declared lost and re-run elsewhere)
        self.cancel = False  # `pnas cancel` asked for it to stop

    def run(self) -> None:
        while not self.stopped.wait(self.settings.heartbeat_seconds):
            self.beat()

    def beat(self) -> None:
        """Renew the lease once and note a cancel or the loss of the job."""
        try:
            lease = self.store.renew(
                self.job_id, attempt=self.attempt, worker=self.worker, lease_seconds=self.settings.lease_seconds
            )
            if lease == Lease.gone and not self.lost:
                self.lost = True
                log.warning("job %s attempt %s is no longer ours; its result will be discarded", self.job_id, self.attempt)
            elif lease == Lease.stop and not self.cancel:
                self.cancel = True
                log.warning("job %s attempt %s: cancel requested; stopping it", self.job_id, self.attempt)
        except Exception as exc:  # the DB may be restarting: keep trying
            log.warning("heartbeat failed: %s", exc)

    def stop(self) -> None:
        self.stopped.set()


def _takes(fn: Callable, name: str) -> bool:
    """Whether ``fn`` accepts the keyword ``name`` (by name or through ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def train_config_for(run_config: dict, overrides: dict) -> tuple[SearchConfig, TrainConfig]:
    cfg = SearchConfig.from_json(run_config)
    train = cfg.train.model_copy(update=overrides) if overrides else cfg.train
    return cfg, TrainConfig.model_validate(train.model_dump())


def run_job(
    store: Store,
    job_id: int,
    *,
    settings: Settings,
    worker: str | None = None,
    attempt: int | None = None,
    trainer: Callable[..., TrainResult] | None = None,
    stop: StopFlag | None = None,
) -> Outcome:
    """Claim (unless ``attempt`` says it is claimed already), train and record one child.

    ``stop``, when set (the worker is shutting down), stops the training at its next check and
    hands the child back."""
    worker = worker or worker_name()
    if attempt is None:
        attempt = retry_db(lambda: store.claim(job_id, worker=worker, lease_seconds=settings.lease_seconds), what="claim")
        if attempt is None:
            return Outcome(job_id, "skipped", "taken by another worker, finished, or out of attempts")
    job = retry_db(lambda: store.job(job_id), what="read the job")
    tail = _LogTail(settings.log_tail_bytes)
    tail.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    # A malformed job is a final failure that never reaches the trainer.
    try:
        run_cfg = retry_db(lambda: store.run_config(job.run_id), what="read the run")
        cfg, train = train_config_for(run_cfg, job.train)
        cell = cfg.space().validate(Cell.from_json(job.cell, cfg.ops)) if job.kind == "search" else Cell.from_json(job.cell)
    except (UserError, ValueError) as exc:
        msg = f"invalid job: {exc}"
        log.error("job %s: %s", job_id, msg)
        retry_db(
            lambda: store.fail(job_id, attempt=attempt, error_class="invalid_job", message=msg, log_tail=msg),
            what="record the failure",
        )
        return Outcome(job_id, "failed", msg)

    heartbeat = _Heartbeat(store, job_id, attempt, worker, settings)
    heartbeat.start()
    root = logging.getLogger()
    root.addHandler(tail)
    seed = child_seed(int(run_cfg.get("seed", 0)), job.network_id or network_id(cell))
    log.info("job %s attempt %s: training %s (level %s) on %s", job_id, attempt, cell.arch_id, job.level, worker)

    def check() -> None:
        """Raise to stop the training: the worker stops, the lease is lost, or a cancel."""
        if stop is not None and stop.is_set():
            raise Shutdown("stopping")
        if heartbeat.lost:
            raise _NotOurs(f"job {job_id} attempt {attempt} is no longer ours")
        if heartbeat.cancel:
            raise _Cancelled(f"job {job_id} attempt {attempt} was cancelled")

    def on_epoch(m: EpochMetrics) -> None:  # the trainer logs the epoch's line itself
        check()
        if not retry_db(lambda: store.add_epoch(job_id, attempt=attempt, metrics=m), what="record an epoch"):
            raise _NotOurs(f"job {job_id} attempt {attempt} is no longer ours")
        check()

    until = rung_epochs(cfg, train, job)
    staged = cfg.fidelity != "full" and job.kind == "search"  # resumes across rungs need checkpoints
    ckpts = _checkpoints_for(store, job, attempt, train, settings, until=until, staged=staged)
    try:
        heartbeat.beat()  # a stop asked since the claim ends the child before TensorFlow loads
        check()
        fn = trainer or _load_watching(settings.trainer, check)
        kwargs: dict = dict(seed=seed, on_epoch=on_epoch, log=tail.add)
        if _takes(fn, "check"):
            kwargs["check"] = check
        if until is not None and _takes(fn, "until_epoch"):
            kwargs["until_epoch"] = until
        if ckpts is not None and _takes(fn, "checkpoints"):
            kwargs["checkpoints"] = ckpts
        result = fn(cell, train, **kwargs)
    except Shutdown:
        heartbeat.stop()
        root.removeHandler(tail)
        retry_db(lambda: store.hand_back(job_id, attempt=attempt), what="hand the job back", give_up_after=20)
        log.info("job %s handed back", job_id)
        return Outcome(job_id, "handed_back")
    except _Cancelled as exc:
        heartbeat.stop()
        root.removeHandler(tail)
        tail.add(str(exc))
        ok = retry_db(lambda: store.end_cancelled(job_id, attempt=attempt, log_tail=tail.text()), what="record the cancel")
        log.info("%s; stopped%s", exc, "" if ok else " (it was no longer ours)")
        return Outcome(job_id, "cancelled" if ok else "not_ours", str(exc))
    except _NotOurs as exc:
        heartbeat.stop()
        root.removeHandler(tail)
        log.warning("%s; abandoned without writing", exc)
        return Outcome(job_id, "not_ours", str(exc))
    except BaseException as exc:
        # The heartbeat keeps the lease until the failure is recorded (the DB may be restarting).
        root.removeHandler(tail)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            heartbeat.stop()
            retry_db(lambda: store.hand_back(job_id, attempt=attempt), what="hand the job back", give_up_after=20)
            raise
        retryable = isinstance(exc, ChildRetryable)
        if not retryable and ckpts is not None:  # a final failure: never resume from this attempt
            _quietly(ckpts.failed_for_good, "drop the checkpoints of a failed attempt")
        # "final", "retryable", "dataset" (a ChildFailed subclass's own class), else the type
        cls = exc.error_class if isinstance(exc, (ChildFailed, ChildRetryable)) else type(exc).__name__
        buf = io.StringIO()
        traceback.print_exception(exc, file=buf)
        tail.add(buf.getvalue())
        message = f"{type(exc).__name__}: {exc}"
        log.error("job %s attempt %s failed: %s", job_id, attempt, message)
        try:
            ok = retry_db(
                lambda: store.fail(
                    job_id, attempt=attempt, error_class=cls, message=message, log_tail=tail.text(), retryable=retryable
                ),
                what="record the failure",
            )
        finally:
            heartbeat.stop()
        if not ok:
            return Outcome(job_id, "not_ours", message)
        return Outcome(job_id, "requeued" if retryable else "failed", message)

    root.removeHandler(tail)
    try:  # the heartbeat keeps the lease until the result is recorded (the DB may be restarting)
        ok = retry_db(lambda: store.finish(job_id, attempt=attempt, result=result, log_tail=tail.text()), what="record the result")
    finally:
        heartbeat.stop()
    if not ok:
        log.warning("job %s attempt %s finished but a newer attempt owns it; result discarded", job_id, attempt)
        return Outcome(job_id, "not_ours")
    if ckpts is not None and until is not None and result.history and result.history[-1].epoch < train.epochs:
        _quietly(ckpts.paused, "keep the checkpoint of the rung")  # a promotion continues from it
    elif ckpts is not None:
        _quietly(ckpts.succeeded, "clean up the checkpoints")
    log.info("job %s succeeded: reward %.4f in %.1fs", job_id, result.reward, result.wall_seconds)
    return Outcome(job_id, "succeeded", f"{result.reward:.4f}")


def _load_watching(path: str, check: Callable[[], None]) -> Callable[..., TrainResult]:
    """`load_trainer`, whose import of TensorFlow takes seconds (17 s on a busy host), in a
    thread, while ``check`` is called every 0.2 s: a cancel or an abort meanwhile stops the
    child at once instead of after the import (the thread finishes on its own)."""
    out: list = []

    def load() -> None:
        try:
            out.append(load_trainer(path))
        except BaseException as exc:
            out.append(exc)

    loader = threading.Thread(target=load, daemon=True, name="load-trainer")
    loader.start()
    while loader.is_alive():
        loader.join(0.2)
        check()
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def _quietly(fn: Callable[[], None], what: str) -> None:
    try:
        fn()
    except Exception as exc:  # the checkpoint store is an aid: its trouble never fails a child
        log.warning("could not %s: %s", what, exc)


def rung_epochs(cfg: SearchConfig, train: TrainConfig, job) -> int | None:
    """The epoch a multi-fidelity search child stops at this attempt (its rung's), when that is
    before ``train.epochs``; None: train to the end. The controller moves ``job.rung`` on."""
    if cfg.fidelity == "full" or job.kind != "search" or train.epochs != cfg.train.epochs:
        return None
    rungs = cfg.rungs()
    epochs = rungs[min(job.rung, len(rungs) - 1)]
    return epochs if epochs < train.epochs else None


def _checkpoints_for(store: Store, job, attempt: int, train: TrainConfig, settings: Settings, *,
                     until: int | None = None, staged: bool = False):
    """This attempt's checkpoints (None when ``checkpoint_every`` is 0 or the store is unusable).
    A multi-fidelity child (``staged``) always has them: it saves at its rung's epoch
    (``until``) and continues from there when promoted, whatever ``checkpoint_every`` says."""
    if (train.checkpoint_every == 0 and not staged) or train.epochs == 0:
        return None
    from worker.checkpoints import CheckpointStore, ChildCheckpoints

    try:
        cs = CheckpointStore.from_settings(settings, database=store.database_identity())
    except Exception as exc:
        log.warning("job %s: checkpoint store %s unusable (%s); training without checkpoints",
                    job.id, settings.checkpoint_location, exc)
        return None

    def on_resume(epoch: int) -> None:
        retry_db(lambda: store.mark_resumed(job.id, attempt=attempt, epoch=epoch), what="record the resume")

    return ChildCheckpoints(cs, job.run_id, job.id, attempt, job.kind, train.checkpoint_every, on_resume=on_resume,
                            force_epoch=until)
