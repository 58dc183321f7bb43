"""The one Celery task: ``pnas.train_child(job_id)``. Thin: decode, claim, train, record.

Delivery is at least once, so the task is idempotent through the store: `run_job` claims
the job with one conditional update and drops a message whose job is taken, finished or out
of attempts. A payload that is not exactly one positive integer is never executed; if a job
id can still be read from it, that job gets a final failure saying why. A body that is not
Celery's ``[args, kwargs, embed]`` never reaches the task: `worker.message_check` drops it.
"""

from __future__ import annotations

import logging
import re
import socket
from typing import Any

from shared.errors import UserError
from shared.queue import DATASET_REPLY_PREFIX, DATASET_TASK, TASK_NAME
from shared.settings import get_settings
from worker.celery_app import app
from worker.process import store, training
from worker.runner import retry_db, run_job

log = logging.getLogger("pnas.worker")


def parse_job_id(args: tuple, kwargs: dict) -> int:
    """The job id of a well-formed payload (``args=[id]``); UserError says what is wrong."""
    if kwargs or len(args) != 1:
        raise UserError(f"expected args=[job_id] and no kwargs, got args={args!r} kwargs={kwargs!r}")
    job_id = args[0]
    if type(job_id) is not int or job_id <= 0:  # bool is an int: excluded on purpose
        raise UserError(f"job id must be a positive integer, got {job_id!r}")
    return job_id


def _salvage_id(args: tuple, kwargs: dict) -> int | None:
    """A job id a malformed payload still names ("12", {"job_id": 12}), to fail that job."""
    for v in list(args) + list(kwargs.values()):
        if isinstance(v, str) and v.strip().isdigit():
            return int(v)
        if type(v) is int and v > 0:
            return v
    return None


def _gpu_trainer(job_id: int):
    """The trainer under this worker's GPU share (worker/gpu_share.py); None = the plain one."""
    from worker.gpu_share import Share, guard

    share = Share.from_env()
    if share is None:
        return None
    import redis

    from worker.runner import load_trainer

    settings = get_settings()
    assert settings.broker_url, "a GPU share is set only for Celery workers, which have a broker"
    client = redis.Redis.from_url(settings.broker_url, socket_timeout=10, socket_connect_timeout=10)
    return guard(load_trainer(settings.trainer), job_id, share, client, queue=settings.queue, ttl=settings.gpu_slot_ttl)


@app.task(name=TASK_NAME, bind=True, Strategy="worker.message_check:checked")
def train_child(self: Any, *args: Any, **kwargs: Any) -> str:
    try:
        job_id = parse_job_id(args, kwargs)
    except UserError as exc:
        msg = f"malformed payload: {exc}"
        log.error("message %s dropped: %s", self.request.id, msg)
        bad = _salvage_id(args, kwargs)
        if bad is not None:
            retry_db(lambda: store().reject(bad, error_class="invalid_payload", message=msg), what="reject the job")
        return "dropped"
    settings = get_settings()
    with training(job_id) as stop:
        outcome = run_job(store(), job_id, settings=settings, worker=self.request.hostname,
                          trainer=_gpu_trainer(job_id), stop=stop)  # fmt: skip
    if outcome.state in ("handed_back", "requeued"):
        # Back in the queue in the store; send it again at once rather than wait for the
        # broker or the controller's reconcile (a duplicate is dropped by the claim). A child
        # requeued after an out-of-memory then waits for more room on whichever GPU takes it.
        try:
            self.app.send_task(TASK_NAME, args=[job_id], retry=True, retry_policy={"max_retries": 2})
        except Exception as exc:
            log.warning("job %s handed back but not re-sent (%s); the controller's reconcile will", job_id, exc)
    log.info("job %s: %s %s", job_id, outcome.state, outcome.detail)
    return outcome.state


@app.task(name=DATASET_TASK, bind=True, Strategy="worker.message_check:checked")
def check_dataset(self: Any, train: Any = None, reply_to: Any = None) -> str:
    """Load a search's dataset as its children will (``train``: its TrainConfig as JSON) and
    answer on the reply queue ``reply_to``: {"ok", "error", "worker", "host"}."""
    from pydantic import ValidationError

    from shared.config import TrainConfig
    from shared.errors import DatasetError
    from worker.datasets import load_for_child

    if not (isinstance(reply_to, str) and re.fullmatch(re.escape(DATASET_REPLY_PREFIX) + "[0-9a-f]{32}", reply_to)):
        log.error("message %s dropped: the dataset check names no reply queue (%r)", self.request.id, reply_to)
        return "dropped"
    answer = {"ok": True, "error": None, "worker": self.request.hostname, "host": socket.gethostname()}
    try:
        load_for_child(TrainConfig.model_validate(train), get_settings().data_dir)
    except (ValidationError, TypeError) as exc:
        answer.update(ok=False, error=f"the dataset check's settings are not valid here ({exc.__class__.__name__})")
    except DatasetError as exc:
        answer.update(ok=False, error=str(exc))
    with self.app.connection_for_write() as conn:
        replies = conn.SimpleQueue(reply_to, no_ack=True)
        try:
            replies.put(answer, serializer="json")
        finally:
            replies.close()
    log.info("dataset check for %s: %s", reply_to, "ok" if answer["ok"] else answer["error"])
    return "ok" if answer["ok"] else "missing"
