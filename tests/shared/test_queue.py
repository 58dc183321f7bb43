"""The Celery configuration every process shares (a plain dict: no Celery import in shared/)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shared.errors import UserError
from shared.queue import TASK_NAME, celery_config
from shared.settings import Settings
from tests.conftest import ROOT


def test_the_shared_config_is_safe_and_one_child_per_process():
    c = celery_config(Settings(broker_url="redis://127.0.0.1:6379/0", visibility_timeout=7200, task_time_limit=3600))
    assert c["accept_content"] == ["json"] and c["task_serializer"] == "json"
    assert c["task_acks_late"] and c["worker_prefetch_multiplier"] == 1
    assert c["task_reject_on_worker_lost"] is False
    assert c["broker_transport_options"] == {"visibility_timeout": 7200, "socket_connect_timeout": 10.0, "socket_timeout": 10.0}
    assert c["broker_connection_timeout"] == 10.0
    assert c["worker_max_tasks_per_child"] == 1 and c["task_ignore_result"]
    assert c["task_soft_time_limit"] == 3600 and c["task_time_limit"] == 3660
    assert c["task_routes"] == {TASK_NAME: {"queue": "pnas"}}


def test_a_visibility_timeout_below_the_time_limit_is_refused():
    with pytest.raises(UserError, match="VISIBILITY_TIMEOUT"):
        celery_config(Settings(broker_url="redis://x", visibility_timeout=600, task_time_limit=600))
    with pytest.raises(UserError, match="PNAS_BROKER_URL"):
        celery_config(Settings(broker_url=None))


def test_packages_keep_their_import_direction():
    """shared imports no Celery; the worker app does not load TensorFlow in the prefork parent;
    the controller never imports the worker package and vice versa."""
    code = (
        "import sys, shared.queue, shared.store\n"
        "assert 'celery' not in sys.modules, 'shared imported celery'\n"
        "import controller.celery_executor, controller.search\n"
        "assert not [m for m in sys.modules if m == 'worker' or m.startswith('worker.')], 'controller -> worker'\n"
        "import worker.celery_app, worker.tasks\n"
        "assert 'tensorflow' not in sys.modules, 'TensorFlow loaded in the worker parent'\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "PNAS_BROKER_URL": "redis://127.0.0.1:1/0"}
    res = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    for pkg, forbidden in (("controller", "worker"), ("worker", "controller")):
        hits = [
            str(p.relative_to(ROOT))
            for p in (ROOT / pkg).rglob("*.py")
            if f"from {forbidden}" in p.read_text() or f"import {forbidden}" in p.read_text()
        ]
        assert not hits, f"{pkg} imports {forbidden}: {hits}"
