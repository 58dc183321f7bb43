"""Ask a Celery worker to load a search's dataset before the run's first child is sent.

The controller may lack data its workers have (a volume only they mount), so the workers are
asked: ``pnas.check_dataset(train, reply_to)`` goes on the children's queue, the first worker
free loads the dataset as a child would and answers on a reply queue of the same broker. A
dataset that worker cannot load stops the search with one line saying what was missing on
which host, before anything is queued. Until a worker answers, a line says so every
``wait_seconds``; the wait ends with an answer or Ctrl-C.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable

from shared.config import TrainConfig
from shared.errors import UserError
from shared.queue import DATASET_REPLY_PREFIX, DATASET_TASK

PROBE_EXPIRES = 3600.0  # s: a probe nobody took by then is dropped by the worker that finds it


def ask_a_worker(
    app: Any, *, queue: str, train: TrainConfig, broker: str, wait_seconds: float, say: Callable[[str], None]
) -> str:
    """Return which worker loaded ``train.dataset`` ("worker on host"); `UserError` if the
    worker that answered cannot load it, or the broker cannot be reached."""
    from kombu.exceptions import OperationalError

    reply_to = DATASET_REPLY_PREFIX + uuid.uuid4().hex
    conn = app.connection_for_write()
    try:
        with conn:
            timeout = app.conf.broker_connection_timeout  # PNAS_BROKER_TIMEOUT
            conn.ensure_connection(max_retries=1, interval_start=0.2, timeout=timeout)
            replies = conn.SimpleQueue(reply_to, no_ack=True)
            try:
                answer = _wait(app, replies, queue=queue, train=train, reply_to=reply_to, wait_seconds=wait_seconds, say=say)
            finally:
                replies.queue(conn.default_channel).delete()  # the reply list and its binding
                replies.close()
    except (OperationalError, *conn.connection_errors) as exc:
        raise UserError(
            f"cannot reach the broker at {broker} to check the dataset ({type(exc).__name__}: {exc}); "
            "check PNAS_BROKER_URL (redis:// or rediss:// as the server speaks) and that it runs"
        ) from None
    where = f"worker {answer.get('worker')} on host {answer.get('host')}"
    if not answer.get("ok"):
        raise UserError(f"{answer.get('error')} ({where}); nothing was queued: make the dataset available to the workers")
    return where


def _wait(app: Any, replies: Any, *, queue: str, train: TrainConfig, reply_to: str, wait_seconds: float,
          say: Callable[[str], None]) -> dict:  # fmt: skip
    sent = float("-inf")
    waited = 0.0
    while True:
        if time.monotonic() - sent > PROBE_EXPIRES:  # the last probe expired unanswered: another
            app.send_task(DATASET_TASK, args=[train.model_dump(mode="json"), reply_to], queue=queue,
                          expires=PROBE_EXPIRES, retry=True, retry_policy={"max_retries": 2})  # fmt: skip
            sent = time.monotonic()
        try:
            answer = replies.get(block=True, timeout=wait_seconds).payload
        except replies.Empty:
            waited += wait_seconds
            say(
                f"waiting for a worker to check dataset {train.dataset} ({waited:.0f} s so far; is a `pnas worker` "
                f"consuming queue {queue!r}? Ctrl-C stops)"
            )
            continue
        if isinstance(answer, dict):
            return answer
