"""The Celery executor's pieces that need no broker: payload parsing and message decoding."""

from __future__ import annotations

import base64
import json

import pytest

from controller.celery_executor import _job_id_of
from shared.queue import TASK_NAME


def _redis_message(args, task=TASK_NAME):
    body = base64.b64encode(json.dumps([args, {}, {}]).encode()).decode()
    return json.dumps({"body": body, "headers": {"task": task}, "properties": {"body_encoding": "base64"}})


def test_job_ids_are_read_back_from_redis_messages():
    assert _job_id_of(_redis_message([42])) == 42
    assert _job_id_of(_redis_message([42], task="other.task")) is None
    assert _job_id_of("not json") is None


@pytest.fixture
def tasks(monkeypatch):
    monkeypatch.setenv("PNAS_BROKER_URL", "redis://127.0.0.1:1/0")
    from shared.settings import get_settings

    get_settings.cache_clear()
    import worker.tasks

    yield worker.tasks
    get_settings.cache_clear()


def test_only_one_positive_int_is_a_payload(tasks):
    from shared.errors import UserError

    assert tasks.parse_job_id((7,), {}) == 7
    for args, kwargs in [((), {}), (("7",), {}), ((True,), {}), ((7, 8), {}), ((), {"job_id": 7}), ((-1,), {}), ((7.0,), {})]:
        with pytest.raises(UserError):
            tasks.parse_job_id(args, kwargs)
    assert tasks._salvage_id(("7",), {}) == 7 and tasks._salvage_id((), {"job_id": 9}) == 9
    assert tasks._salvage_id((), {}) is None and tasks._salvage_id(("x",), {}) is None
