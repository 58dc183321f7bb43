"""One small finished search per backend (SQLite and PostgreSQL), made once for the whole
folder with the instant trainer through the real `pnas search` command, plus a random-search
run on the same dataset (for `pnas plot`'s comparison) and one planted failure (for
`pnas show`, `failed_jobs`).

`cli` runs a `pnas` command in this process (the commands are registered once), with the
exit status `pnas.cli.main` gives: 0 ok, 1 nothing found, 2 user error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.space import Cell
from tests.conftest import ROOT, fresh_pg_database
from tests.cli import run_cli
from tests.fakes import fake_search_env

OPS = ["sep3x3", "max3x3", "identity"]
CONFIG = """
ops = ["sep3x3", "max3x3", "identity"]
blocks = 3
beam = 4
ensemble = 2
predictor_epochs = 30
seed = 3
[train]
dataset = "digits"
validation_size = 0.2
epochs = 2
"""
# A one-block cell whose training raises: a failed child with an error and a log tail.
PLANTED_FAILURE = Cell.of([[-2, "max3x3", -2, "max3x3"]], OPS).arch_id


@dataclass(frozen=True)
class Finished:
    backend: str
    url: str
    env: dict
    dir: Path


def _env(url: str, tmp: Path) -> dict:
    return fake_search_env(url, PNAS_FAKE_FAIL=PLANTED_FAILURE, PNAS_POLL_SECONDS="0.2")


def _pnas(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pnas.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _wait(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, f"{p.args}: {err[-3000:]}"


@pytest.fixture(scope="session")
def finished_runs(tmp_path_factory) -> dict[str, Finished]:
    """Both backends' runs, searched at the same time: 't' (pnas) then 'r' (random)."""
    runs = {}
    for backend in ("sqlite", "postgresql"):
        d = tmp_path_factory.mktemp(f"tools-{backend}")
        url = f"sqlite:///{d / 'pnas.db'}" if backend == "sqlite" else fresh_pg_database()
        runs[backend] = Finished(backend, url, _env(url, d), d)
        (d / "search.toml").write_text(CONFIG)
    subprocess.run([sys.executable, "-m", "pnas.cli", "db", "upgrade"], cwd=ROOT,
                   env=runs["postgresql"].env, check=True, capture_output=True)  # fmt: skip
    for name, extra in (("t", []), ("r", ["--strategy", "random"])):
        _wait([_pnas(f.env, "search", "--config", str(f.dir / "search.toml"), "--name", name, "--workers", "2", *extra)
               for f in runs.values()])  # fmt: skip
    return runs


@pytest.fixture(params=["sqlite", "postgresql"])
def finished(request, finished_runs) -> Finished:
    return finished_runs[request.param]


_registered = False


@pytest.fixture
def cli(finished, monkeypatch, capsys):
    """``cli(*args) -> (exit status, stdout, stderr)`` against the finished run's database."""
    import pnas.cli
    from shared.settings import get_settings

    global _registered
    if not _registered:
        pnas.cli._register()
        _registered = True
    monkeypatch.setattr(pnas.cli, "_register", lambda: None)
    for k in [k for k in os.environ if k.startswith("PNAS_")]:
        monkeypatch.delenv(k)
    for k, v in finished.env.items():
        if k.startswith("PNAS_"):
            monkeypatch.setenv(k, v)
    get_settings.cache_clear()

    def run(*args: str) -> tuple[int, str, str]:
        return run_cli(capsys, *args)

    yield run
    get_settings.cache_clear()


def as_json(text: str):
    return json.loads(text)
