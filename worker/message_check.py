"""The shape of a task message, checked before Celery unpacks it in the worker's main process.

Celery's protocol-2 body is ``[args, kwargs, embed]``. Celery's own request code unpacks it
unguarded, so a message whose body is any other JSON value (``{"a": 1}``, ``[[7]]``, ``5``)
raises in the consumer and takes the whole worker down; the message, acknowledged late, goes
back to the queue and takes down the next worker too. Here such a message is logged in one
line and rejected for good (not requeued); the worker goes on.

What Celery handles already stays with Celery: a body that is not JSON or not allowed
(pickle) is logged and dropped, a message without a task header or with an unknown task
name is rejected. A well-shaped body whose arguments are wrong is the task's business
(`worker.tasks.parse_job_id`).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from celery.worker.strategy import default

log = logging.getLogger("pnas.worker")


def body_problem(body: Any) -> str | None:
    """What is wrong with a decoded protocol-2 body, or None if it is ``[list, dict, dict]``."""
    if not isinstance(body, (list, tuple)) or len(body) != 3:
        return "the body is not Celery's [args, kwargs, embed]"
    args, kwargs, embed = body
    if not isinstance(args, (list, tuple)):
        return "its args are not a list"
    if not isinstance(kwargs, dict):
        return "its kwargs are not an object"
    if not isinstance(embed, dict):
        return "its embed (callbacks, chain) is not an object"
    return None


def checked(task: Any, app: Any, consumer: Any, **kwargs: Any) -> Callable:
    """Celery's default strategy (``Task.Strategy``), after a check of the body's shape."""
    handle = default(task, app, consumer, **kwargs)

    def on_message(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kw: Any) -> Any:
        if body is None:  # protocol 2: the body is decoded here first (a DecodeError is Celery's)
            problem = body_problem(message.decode())
            if problem is not None:
                headers = message.headers or {}
                text = repr(message.body)
                log.error(
                    "message %s (%s) rejected for good: %s: %s",
                    headers.get("id"), headers.get("task"), problem, text[:200] + ("..." if len(text) > 200 else ""),
                )  # fmt: skip
                message.reject_log_error(log, consumer.connection_errors)
                return None
        return handle(message, body, ack, reject, callbacks, **kw)

    return on_message
