"""The Celery executor: children go to GPU workers over the broker, results come back through
the store.

Contract (see `controller.executors.Executor`), plus ``reconcile``:
- ``submit(job_ids)`` sends ``pnas.train_child(job_id)`` by name (the controller never imports
  the worker package); a send that fails while the broker is away is kept and retried on
  the next ``check()``;
- ``reconcile(queued_ids)`` resends the queued jobs whose message is no longer in the broker
  (a Redis restarted without persistence loses its lists): with Redis it reads the queue and
  the unacknowledged messages (one delivered more than a lease ago whose child is still queued
  belongs to a worker that died before claiming it, and counts as gone); with another broker it resends jobs sent long ago when the
  queue is empty. A duplicate is harmless: a worker must claim the job in the store first;
- ``check()`` raises `SearchAborted` only when the broker has been unreachable for
  ``broker_outage_seconds`` (the run stops and resumes with the same command).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any, Callable, Iterable, Sequence

from celery import Celery

from shared.errors import SearchAborted, UserError
from shared.queue import TASK_NAME, celery_config
from shared.settings import Settings

log = logging.getLogger("pnas.controller")

SEND_RETRY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2.0}


class CeleryExecutor:
    name = "celery"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = Celery("pnas-controller")
        self.app.conf.update(celery_config(settings))
        assert settings.broker_url  # celery_config refuses a settings object without one
        self.broker_url: str = settings.broker_url
        self.queue = settings.queue
        self.run_id: int | None = None
        self.unsent: set[int] = set()  # submitted while the broker was away
        self.sent_at: dict[int, float] = {}  # job id -> monotonic time of its last send
        self.down_since: float | None = None
        self.resent = 0  # messages re-sent by reconcile (for reports and tests)

    @property
    def safe_broker_url(self) -> str:
        from kombu.utils.url import maybe_sanitize_url

        return maybe_sanitize_url(self.broker_url)

    # --- Executor ------------------------------------------------------------------------
    def start(self, run_id: int) -> None:
        self.run_id = run_id
        self.ready()  # again: a resume may come long after the run was opened

    def ready(self) -> None:
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=2, interval_start=0.2, interval_step=0.5, timeout=5)
        except Exception as exc:
            raise UserError(
                f"cannot reach the broker at {self.safe_broker_url} ({type(exc).__name__}: {exc}); "
                "start Redis or fix PNAS_BROKER_URL"
            ) from None

    def submit(self, job_ids: Sequence[int]) -> None:
        ids = [int(i) for i in job_ids]
        if not ids:
            return
        self.unsent.update(ids)
        self._flush()

    def check(self) -> None:
        if self.unsent:
            self._flush()
        if self.down_since is not None:
            gone = time.monotonic() - self.down_since
            if gone > self.settings.broker_outage_seconds:
                raise SearchAborted(
                    f"the broker at {self.safe_broker_url} has been unreachable for {gone:.0f} s; "
                    "the queued children are kept: fix the broker and run the same command to resume"
                )

    def reconcile(self, queued_ids: Iterable[int], *, recheck: Callable[[], Iterable[int]] | None = None) -> list[int]:
        """Resend queued jobs whose message is gone from the broker. Returns the resent ids.
        ``recheck``: the queued ids read again after the broker was looked at; a child that a
        worker took and finished meanwhile (its message acknowledged) is then no longer queued."""
        # A message sent a moment ago may be between the queue and a worker's unacked set.
        recent = time.monotonic() - 5.0
        queued = {int(i) for i in queued_ids if self.sent_at.get(int(i), 0.0) < recent} - self.unsent
        if not queued:
            return []
        try:
            missing = self._missing(queued)
        except Exception as exc:  # the broker is away: check() resends once it is back
            log.warning("reconcile skipped, broker unreachable: %s", exc)
            return []
        if missing and recheck is not None:
            missing &= {int(i) for i in recheck()}
        if missing:
            log.warning("re-sending %d queued child(ren) whose message is gone: %s", len(missing), sorted(missing)[:10])
            self.resent += len(missing)
            self.submit(sorted(missing))
        return sorted(missing)

    def stop(self) -> None:
        # Nothing to stop: the workers are not ours, and kombu's producer pools are shared by
        # every app on the same broker URL in this process (closing them breaks the next one).
        self.unsent.clear()

    # --- internals -----------------------------------------------------------------------
    def _flush(self) -> None:
        ids = sorted(self.unsent)
        try:
            with self.app.producer_or_acquire() as producer:
                for job_id in ids:
                    self.app.send_task(
                        TASK_NAME,
                        args=[job_id],
                        queue=self.queue,
                        producer=producer,
                        retry=True,
                        retry_policy=SEND_RETRY,
                    )
                    self.unsent.discard(job_id)
                    self.sent_at[job_id] = time.monotonic()
        except Exception as exc:
            if self.down_since is None:
                self.down_since = time.monotonic()
            log.warning("broker unreachable, %d child(ren) wait to be sent: %s", len(self.unsent), exc)
            return
        self.down_since = None

    def _missing(self, queued: set[int]) -> set[int]:
        if self.broker_url.startswith(("redis://", "rediss://", "unix://")):
            return queued - self._redis_job_ids()
        # Another broker (RabbitMQ keeps persistent messages): only when its queue is empty,
        # a job sent long ago and still queued has lost its message.
        with self.app.connection_for_write() as conn:
            depth = conn.default_channel.queue_declare(self.queue, passive=True).message_count
        if depth:
            return set()
        old = time.monotonic() - self.settings.reconcile_seconds
        return {j for j in queued if self.sent_at.get(j, 0.0) < old}

    def _redis_job_ids(self) -> set[int]:
        """Job ids of every message in the queue or delivered and not yet acknowledged."""
        import redis

        client = redis.Redis.from_url(self.broker_url, socket_timeout=5, socket_connect_timeout=5)
        try:
            sep = "\x06\x16"  # kombu's priority-queue separator
            keys = [self.queue] + [f"{self.queue}{sep}{p}" for p in (3, 6, 9)]
            raw = []
            for key in keys:
                raw.extend(client.lrange(key, 0, -1))
            # Delivered and not acknowledged: kept unless it was delivered more than a lease
            # ago and its child is still queued, i.e. the worker that took the message died
            # before it claimed the child (a worker host switched off). Redis would redeliver
            # it only after the visibility timeout (hours), so it counts as gone.
            stale_before = time.time() - self.settings.lease_seconds
            scored: Any = client.zrange("unacked_index", 0, -1, withscores=True)  # [(tag, score), ...]
            delivered: dict[Any, float] = {tag: float(score) for tag, score in scored}
            for tag, v in client.hgetall("unacked").items():
                if delivered.get(tag, time.time()) >= stale_before:
                    raw.append(json.loads(v)[0])
        finally:
            client.close()
        ids: set[int] = set()
        for item in raw:
            job_id = _job_id_of(item)
            if job_id is not None:
                ids.add(job_id)
        return ids


def _job_id_of(message) -> int | None:
    """The job id in a kombu message as stored in Redis (JSON, body base64), or None."""
    try:
        m = json.loads(message) if isinstance(message, (str, bytes)) else message
        if m.get("headers", {}).get("task") != TASK_NAME:
            return None
        body = m["body"]
        if m.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return int(args[0])
    except Exception:
        return None
