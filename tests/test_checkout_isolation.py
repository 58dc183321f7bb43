"""Two checkouts on one machine run their tests side by side (issue 23): each has a
PostgreSQL database and a Redis database number of its own, the same in scripts/services.sh
and in tests/conftest.py, and the environment still overrides both."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, checkout_names, worker_redis_url


def _script_names(root: Path) -> tuple[str, int]:
    out = subprocess.run(["bash", str(root / "scripts" / "services.sh"), "--names"], capture_output=True, text=True,
                         check=True, timeout=30).stdout.split()  # fmt: skip
    return out[0], int(out[1])


def _conftest_urls(root: Path, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PNAS_TEST_", "PYTEST_XDIST_"))}
    code = "from tests.conftest import PG_URL, REDIS_URL; print(PG_URL); print(REDIS_URL)"
    p = subprocess.run([sys.executable, "-c", code], cwd=root, env={**clean, "PYTHONPATH": str(root), **env},
                       capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    return p.stdout.split()


def test_each_checkout_has_names_of_its_own(tmp_path) -> None:
    other = tmp_path / "second-checkout"
    (other / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "services.sh", other / "scripts")
    shutil.copytree(ROOT / "tests", other / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    mine, theirs = checkout_names(ROOT), checkout_names(other.resolve())
    assert mine[0] != theirs[0] and mine[0] != "pnas_test" and 1 <= mine[1] <= 15
    assert _script_names(ROOT) == mine and _script_names(other) == theirs
    pg, redis = _conftest_urls(other)
    assert pg.endswith(f"/{theirs[0]}") and redis.endswith(f"/{theirs[1]}")
    assert _conftest_urls(other, PNAS_TEST_PG_URL="postgresql://u@h:1/x", PNAS_TEST_REDIS_URL="redis://h:2/3") == [
        "postgresql://u@h:1/x", "redis://h:2/3"]  # fmt: skip


def test_each_test_process_has_a_redis_database_of_its_own() -> None:
    assert worker_redis_url("redis://127.0.0.1:6379/5", None) == "redis://127.0.0.1:6379/5"
    assert worker_redis_url("redis://127.0.0.1:6379/5", "gw0") == "redis://127.0.0.1:6379/5"
    assert worker_redis_url("redis://127.0.0.1:6379/5", "gw1") == "redis://127.0.0.1:6379/6"
    assert worker_redis_url("redis://:pw@h:2/15", "gw1") == "redis://:pw@h:2/1"  # stays within 1-15
    assert worker_redis_url("redis://h:2", "gw1") == "redis://h:2"  # no number given: left alone
