"""A broker or database that never answers is one line within the connect timeout, naming the
scheme, host and port: never a silent hang.

``rediss://`` against the plain test Redis: the TLS handshake gets no answer (Redis waits for
a command line). A PostgreSQL port nobody listens on, and one whose listener accepts and
never answers (a tiny server in this test).
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

import pytest

from shared.store import Store
from tests.conftest import REDIS_URL
from tests.integration.cluster import base_env, free_port
from tests.integration.test_celery import cli

pytestmark = pytest.mark.integration

TIMEOUT = 2  # PNAS_BROKER_TIMEOUT / PNAS_DB_CONNECT_TIMEOUT in these tests
BOUND = 60  # s a command may take in all: interpreter start-up on a loaded machine, then the timeout


def tls_on_plain_redis() -> tuple[str, str]:
    u = urlsplit(REDIS_URL)
    where = f"rediss://{u.hostname}:{u.port or 6379}"
    return f"{where}{u.path or '/0'}", where


def one_line(res, says: str) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stdout + res.stderr
    assert says in lines[-1] and "Traceback" not in res.stderr, res.stderr
    assert all(line.startswith("using --preset") for line in lines[:-1]), res.stderr
    return lines[-1]


@pytest.mark.parametrize("command", [["worker", "--gpu", "none"], ["search", "--executor", "celery", "--blocks", "1"]])
def test_rediss_on_a_plain_redis_fails_in_one_line_within_the_timeout(pg_url, redis_url, tmp_path, command):
    store = Store(pg_url)
    store.ensure_schema(auto_upgrade=True)
    url, where = tls_on_plain_redis()
    env = base_env(db_url=pg_url, broker_url=url, tmp=tmp_path, PNAS_BROKER_TIMEOUT=str(TIMEOUT))
    start = time.monotonic()
    res = cli(command, env, timeout=BOUND + 60)
    took = time.monotonic() - start
    line = one_line(res, f"cannot reach the broker at {where}")
    assert took < BOUND, f"{took:.0f} s: {line}"
    assert store.get_run(None) is None, "no run left behind"


class Silent:
    """A TCP listener that accepts every connection and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.mark.parametrize("server", ["silent", "nobody"])
def test_a_database_that_never_answers_fails_in_one_line_within_the_timeout(tmp_path, server):
    silent = Silent() if server == "silent" else None
    port = silent.port if silent else free_port()
    env = base_env(db_url=f"postgresql://postgres@127.0.0.1:{port}/pnas", broker_url="", tmp=tmp_path,
                   PNAS_DB_CONNECT_TIMEOUT=str(TIMEOUT))  # fmt: skip
    del env["PNAS_BROKER_URL"]
    try:
        for command in (["search", "--blocks", "1"], ["runs"]):
            start = time.monotonic()
            res = cli(command, env, timeout=BOUND + 60)
            took = time.monotonic() - start
            line = one_line(res, f"cannot reach the database at postgresql+psycopg2://postgres@127.0.0.1:{port}/pnas")
            assert took < BOUND, f"{took:.0f} s: {line}"
            assert ("timeout expired" if silent else "Connection refused") in line, line
    finally:
        if silent:
            silent.close()
