"""What the benchmarks share: a throw-away PostgreSQL database, `pnas worker` processes,
percentiles and a one-line description of the machine.

Every process started here runs in its own session and is killed by its own process group;
nothing here touches a process it did not start.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
PG_SERVER = os.environ.get("PNAS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")  # trust auth, user postgres


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def machine() -> str:
    """CPU model, cores and the 1-minute load average: the figures depend on all three."""
    model = platform.processor() or "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"


@contextlib.contextmanager
def fresh_pg_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on PG_SERVER for one benchmark; dropped afterwards."""
    from sqlalchemy import create_engine, text

    from shared.store import pg_url

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url(f"{PG_SERVER}/postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def start_pnas_workers(n: int, env: dict, *, tag: str, logdir: Path) -> dict[str, subprocess.Popen]:
    """``n`` real `pnas worker --gpu none` processes (one child per fresh pool process)."""
    procs = {}
    for i in range(n):
        name = f"{tag}-{i}-{os.getpid()}@bench"
        log = open(logdir / f"{name}.log", "w")
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "pnas.cli", "worker", "--gpu", "none", "--name", name, "--loglevel", "INFO"],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    return procs


def wait_ready(procs: dict[str, subprocess.Popen], logdir: Path, *, timeout: float = 120) -> None:
    """Until every worker's consumer is subscribed (Celery logs 'ready.')."""
    deadline = time.monotonic() + timeout
    while True:
        logs = {n: (logdir / f"{n}.log").read_text(errors="replace") for n in procs}
        if all("ready." in text for text in logs.values()):
            return
        dead = [n for n, p in procs.items() if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            raise RuntimeError(f"workers {dead or list(procs)} did not start; see the logs in {logdir}")
        time.sleep(0.2)


def stop_workers(procs: dict[str, subprocess.Popen]) -> None:
    for p in procs.values():
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
