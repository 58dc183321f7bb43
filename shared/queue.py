"""What the controller, the workers and any monitor must agree on about the Celery queue.

One plain dict (no Celery import here): `worker/celery_app.py` and
`controller/celery_executor.py` both build their app from `celery_config(settings)`, so the
serializer, the acknowledgement mode and, above all, Redis' visibility timeout are the same
in every process (with several values on one Redis, the shortest wins).

The message carries only the job id: ``TASK_NAME`` with ``args=[job_id]``.
"""

from __future__ import annotations

from shared.errors import UserError
from shared.settings import Settings

TASK_NAME = "pnas.train_child"  # the controller sends by this name; it never imports the worker
# Before a run's first child: one worker loads the dataset and answers on a reply queue
# (``DATASET_REPLY_PREFIX`` + a random hex), so a dataset no worker has stops the search;
# the controller sends it to the queue its children go to.
DATASET_TASK = "pnas.check_dataset"
DATASET_REPLY_PREFIX = "pnas.reply."
TIME_LIMIT_GRACE = 60  # seconds between the soft limit (the child fails cleanly) and the hard kill


def celery_config(settings: Settings) -> dict:
    """The Celery settings every process of a deployment must share."""
    if not settings.broker_url:
        raise UserError("PNAS_BROKER_URL is not set (e.g. redis://127.0.0.1:6379/0)")
    limit = settings.task_time_limit
    if limit is not None and limit + TIME_LIMIT_GRACE >= settings.visibility_timeout:
        raise UserError(
            f"PNAS_VISIBILITY_TIMEOUT ({settings.visibility_timeout} s) must exceed PNAS_TASK_TIME_LIMIT "
            f"({limit} s) + {TIME_LIMIT_GRACE} s, or Redis redelivers children that are still training"
        )
    return dict(
        broker_url=settings.broker_url,
        # JSON only: pickle over a broker lets anyone who can write to Redis run code on workers.
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        # Results live in the database; Celery keeps none.
        result_backend=None,
        task_ignore_result=True,
        # Acknowledge after the child ran, hold no second unstarted message.
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        # A child that kills its worker (out of memory) must not loop forever; the database
        # bounds attempts instead (lease -> lost -> requeued while attempts remain).
        task_reject_on_worker_lost=False,
        # Connect, TLS handshake and each reply bounded (PNAS_BROKER_TIMEOUT): rediss:// on a
        # plain Redis is an error to retry, not a silent hang.
        broker_connection_timeout=settings.broker_timeout,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "socket_connect_timeout": settings.broker_timeout,
            "socket_timeout": settings.broker_timeout,
        },
        # One child per fresh process: TensorFlow gives GPU memory back only when it exits.
        worker_max_tasks_per_child=1,
        worker_concurrency=1,
        task_soft_time_limit=limit,
        task_time_limit=None if limit is None else limit + TIME_LIMIT_GRACE,
        # SIGTERM (remapped to a cold shutdown by `pnas worker`): wait this long, then the
        # running child is handed back and its message requeued.
        worker_soft_shutdown_timeout=settings.soft_shutdown_seconds,
        # Keep reconnecting: Redis may restart under a long search.
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        task_default_queue=settings.queue,
        task_routes={TASK_NAME: {"queue": settings.queue}},
        task_track_started=False,
        # Flower and `celery events` need task events from the workers.
        worker_send_task_events=True,
        task_send_sent_event=False,
    )
