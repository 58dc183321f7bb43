"""Messages on the queue that are not ours, or not Celery's at all, published raw with kombu:
each is logged and dropped for good, and the same `pnas worker` then trains a real child.

Before the shape check (worker/message_check.py), a JSON body that is not Celery's
``[args, kwargs, embed]`` killed the worker's main process and went back to the queue.
"""

from __future__ import annotations

import json
import pickle

import pytest
import redis
from kombu import Connection, Exchange, Queue

from controller.celery_executor import CeleryExecutor
from shared.queue import TASK_NAME
from shared.store import Store
from tests.integration.cluster import trained, wait_for
from tests.integration.test_celery import controller, settings_for

pytestmark = pytest.mark.integration

JSON = "application/json"
# (body, content type, headers, what the worker's log says); a body given as bytes goes as is.
POISON = [
    ({"a": 1}, JSON, {"task": TASK_NAME, "id": "p1"}, "message p1 (pnas.train_child) rejected for good"),
    ([[7]], JSON, {"task": TASK_NAME, "id": "p2"}, "message p2 (pnas.train_child) rejected for good"),
    (5, JSON, {"task": TASK_NAME, "id": "p3"}, "message p3 (pnas.train_child) rejected for good"),
    ([7, {}, {}], JSON, {"task": TASK_NAME, "id": "p4"}, "message p4 (pnas.train_child) rejected for good"),
    (b"not json {", JSON, {"task": TASK_NAME, "id": "p5"}, "Can't decode message body"),
    (pickle.dumps([[7], {}, {}]), "application/x-python-serialize", {"task": TASK_NAME, "id": "p6"}, "ContentDisallowed"),
    ([[7], {}, {}], JSON, {"id": "p7"}, "deleted unknown message"),
    ([[7], {}, {}], JSON, {"task": "pnas.nope", "id": "p8"}, "unregistered task"),
]


def publish(url: str, body, content_type: str, headers: dict) -> None:
    exchange = Exchange("pnas", type="direct")
    with Connection(url) as conn:
        producer = conn.Producer()
        raw = body if isinstance(body, bytes) else json.dumps(body)
        producer.publish(
            raw, exchange=exchange, routing_key="pnas", content_type=content_type, headers=headers,
            content_encoding="binary" if isinstance(body, bytes) else "utf-8",
            declare=[Queue("pnas", exchange, routing_key="pnas")],
        )  # fmt: skip


def test_malformed_messages_are_dropped_for_good_and_the_worker_keeps_serving(pg_url, redis_url, make_workers, tmp_path):
    ctl, run, store = controller(pg_url, redis_url, "poison", blocks=1)
    for body, ctype, headers, _ in POISON:  # queued before the worker starts, as in the report
        publish(redis_url, body, ctype, headers)
    workers = make_workers(pg_url, redis_url)
    (name,) = workers.start(1)
    for _, _, headers, says in POISON:
        wait_for(lambda: says in workers.log(name), timeout=90, what=f"the worker to drop {headers} ({says!r})")
    (proc,) = workers.procs.values()
    assert proc.poll() is None, workers.log(name)[-3000:]
    log = workers.log(name)
    assert "Unrecoverable error" not in log and "not enough values to unpack" not in log
    ours = [line for line in log.splitlines() if "rejected for good" in line]
    assert len(ours) == 4, ours
    client = redis.Redis.from_url(redis_url)
    try:  # nothing went back to the queue, nothing waits unacknowledged
        wait_for(lambda: client.llen("pnas") == 0 and client.hlen("unacked") == 0, timeout=30, what="an empty queue")
    finally:
        client.close()
    # the same worker now trains a real child
    (good,) = store.add_jobs(run.id, level=1, children=[("good", [[-1, "sep3x3", -1, "sep3x3"]], None, None)], max_attempts=3)
    CeleryExecutor(settings_for(pg_url, redis_url)).submit([good])
    wait_for(lambda: Store(pg_url).job(good).state == "succeeded", timeout=90, what="a good child after the bad ones")
    assert sum(trained(tmp_path).values()) == 1
    assert proc.poll() is None
