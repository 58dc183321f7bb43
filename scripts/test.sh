#!/usr/bin/env bash
# The test command: set up .venv, make sure PostgreSQL and Redis run, then run every test.
# Extra arguments go to pytest (e.g. scripts/test.sh -k store; -n 0 runs the tests in one process). The compose end-to-end test
# runs when a Docker engine answers (or PNAS_E2E=1); it is skipped with a reason otherwise.
# The tests use a PostgreSQL database and a Redis database number of this checkout's own
# (PNAS_TEST_PG_URL / PNAS_TEST_REDIS_URL override them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
PNAS_TEST_PG_URL=$(bash scripts/services.sh)
export PNAS_TEST_PG_URL
# this checkout's own Redis database number (tests/conftest.py derives the same one)
export PNAS_TEST_REDIS_URL=${PNAS_TEST_REDIS_URL:-redis://127.0.0.1:6379/$(bash scripts/services.sh --names | cut -d' ' -f2)}
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
# pyflakes' checks (undefined names, unused imports): cheap, and they catch real bugs
.venv/bin/ruff check --no-cache --quiet --select F shared controller worker pnas migrations tests bench
# the type checker (config and cache dir in pyproject.toml [tool.mypy]): wrong Optional, wrong argument types
.venv/bin/mypy shared controller worker pnas
# Two test processes (pytest-xdist): most tests wait on processes, databases and containers,
# so two share this machine's cores; the Docker end-to-end tests stay in one of them, one after
# the other. Each process has a Redis database of its own (tests/conftest.py); `-n 0` runs
# everything in one process.
exec .venv/bin/python -m pytest -n "${PNAS_TEST_PROCESSES:-2}" --dist loadgroup "$@"
