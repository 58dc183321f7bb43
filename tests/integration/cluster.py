"""Real services for the Celery integration tests: `pnas worker` processes, a private Redis, a
private PostgreSQL, and a controller run in a thread of the test process.

Every process is started in its own session and killed (by its own process group) at
teardown; nothing here touches a process it did not start.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from tests.conftest import ROOT

def _pg_bin() -> Path:
    """The newest installed PostgreSQL's binaries (Debian layout), or PNAS_TEST_PG_BIN."""
    if os.environ.get("PNAS_TEST_PG_BIN"):
        return Path(os.environ["PNAS_TEST_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
SMALL = dict(strategy="random", ops="sep3x3,max3x3", blocks=2, beam=4, epochs=1, dataset="digits")


def redis_or_fail(url: str):
    """A client of the Redis at ``url`` that answered a ping, or a clear test failure (never a skip)."""
    import pytest
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        pytest.fail(f"Redis is needed at {url} (set PNAS_TEST_REDIS_URL): {exc}", pytrace=False)
    return client


def wait_for(cond, *, timeout: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = cond()
        except Exception:  # a service being restarted
            value = None
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(*, db_url: str, broker_url: str, tmp: Path, **extra: str) -> dict:
    """The whole environment of a worker or CLI process: nothing inherited but PATH and HOME."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(tmp)),
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PNAS_DATABASE_URL": db_url,
        "PNAS_BROKER_URL": broker_url,
        "PNAS_TRAINER": "tests.fakes:instant_trainer",
        "PNAS_LEASE_SECONDS": "3",
        "PNAS_HEARTBEAT_SECONDS": "0.5",
        "PNAS_SOFT_SHUTDOWN_SECONDS": "0",
        "PNAS_RECONCILE_SECONDS": "2",
        "PNAS_POLL_SECONDS": "0.2",
        "PNAS_FAKE_LOG": str(tmp / "trained.log"),
    }
    env.update(extra)
    return env


def trained(tmp: Path) -> Counter:
    """How often each architecture was trained to the end (the fake trainer's log)."""
    path = tmp / "trained.log"
    if not path.exists():
        return Counter()
    return Counter(line.split()[0] for line in path.read_text().splitlines() if line.strip())


class Workers:
    """`pnas worker --gpu none` processes, each in its own process group."""

    def __init__(self, env: dict, tmp: Path) -> None:
        self.env, self.tmp = env, tmp
        self.procs: dict[str, subprocess.Popen] = {}
        self.n = 0

    def start(self, count: int = 1, *, wait_store=None, args: tuple[str, ...] = (), **extra_env: str) -> list[str]:
        names = []
        for _ in range(count):
            self.n += 1
            name = f"w{self.n}-{os.getpid()}@test"
            log = open(self.tmp / f"worker{self.n}.log", "w")
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "pnas.cli", "worker", "--gpu", "none", "--name", name, "--loglevel", "INFO", *args],
                env={**self.env, **extra_env},
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            names.append(name)
        if wait_store is not None:
            wait_for(
                lambda: set(names) <= {w["name"] for w in wait_store.workers()},
                timeout=60,
                what=f"workers {names} to register",
            )
            # registered before the consumer starts: give it a moment to subscribe
            wait_for(lambda: all("ready." in self.log(n) for n in names), timeout=30, what="workers ready")
        return names

    def log(self, name: str) -> str:
        i = list(self.procs).index(name) + 1
        return (self.tmp / f"worker{i}.log").read_text(errors="replace")

    def pool_children(self, name: str) -> list[int]:
        pid = self.procs[name].pid
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout

        def is_log_filter(child: int) -> bool:  # `pnas worker`'s stderr filter (shared.tf_noise), not a pool child
            try:
                return b"shared.tf_noise" in Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                return False

        return [int(x) for x in out.split() if not is_log_filter(int(x))]

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        p = self.procs[name]
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
        if sig == signal.SIGKILL:
            p.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.kill(name, signal.SIGKILL)


class ControllerThread(threading.Thread):
    """A Controller with a CeleryExecutor, run in a thread; ``error`` holds what it raised."""

    def __init__(self, ctl, run) -> None:
        super().__init__(daemon=True, name="controller")
        self.ctl, self.run_view = ctl, run
        self.result = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.ctl.run(self.run_view)
        except BaseException as exc:  # noqa: BLE001
            self.error = exc

    def finish(self, timeout: float) -> None:
        self.join(timeout)
        assert not self.is_alive(), f"the search did not finish within {timeout:.0f}s"
        if self.error is not None:
            raise self.error


class PrivateRedis:
    """A redis-server of our own, without persistence, that a test may restart."""

    def __init__(self, tmp: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.tmp), "--logfile", str(self.tmp / f"redis-{self.port}.log")],
            stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        import redis

        wait_for(lambda: redis.Redis(port=self.port, socket_timeout=1).ping(), timeout=15, what="redis-server")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class PrivatePostgres:
    """A PostgreSQL cluster of our own (initdb in a temporary directory, as user postgres)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pnas-pg-"))
        self.data = self.dir / "data"
        self.started = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/pnas"

    def _as_postgres(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run(prefix + list(cmd), capture_output=True, text=True, check=check, stdin=subprocess.DEVNULL)

    def init(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(f"initdb not found in {PG_BIN} (set PNAS_TEST_PG_BIN)")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()
        self._as_postgres(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "pnas")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w", "start")
        self.started = True

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)
        self.started = False

    def destroy(self) -> None:
        if self.started:
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
