"""A head stack and a worker-host stack for real: two compose projects on this machine, TLS on.

The head (docker-compose.yml + head override: PostgreSQL and Redis with TLS, PgBouncer, the
controller, one worker) and a worker host (docker-compose.worker-host.yml: two workers that
reach the head only through its published, TLS-only ports with the private CA of
scripts/make-certs.sh) run as separate projects on the host network with their own ports.
The search must finish with children trained on both; the worker host is killed while one of
its workers trains a child (and rejoins once that child is declared lost), and nothing is lost. PNAS_NODE keeps the two hosts' GPU slots apart.

Runs when PNAS_E2E=1 or `docker info` answers (see test_compose.py); ends with `down -v`.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import psycopg2
import pytest
import redis

from tests.conftest import ROOT
from tests.e2e.test_compose import CONFIG_DIR, RUN_NAME, Compose, _engine_answers, _free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400), pytest.mark.xdist_group("docker")]  # one after the other: the second reuses the first build

HEAD_FILES = ["docker-compose.yml", "docker-compose.hostnet.yml", "docker-compose.cpu.yml",
              "docker-compose.head.yml", "tests/e2e/compose.head-hostnet.yml"]  # fmt: skip
HOST_FILES = ["docker-compose.worker-host.yml", "docker-compose.worker-host.cpu.yml"]


class Stack(Compose):
    def __init__(self, project: str, env_file: Path, files: list[str]) -> None:
        super().__init__(project, env_file)
        self.base = ["docker", "compose", "-p", project, "--env-file", str(env_file)]
        for f in files:
            self.base += ["-f", str(ROOT / f)]


def _ids(stack: Stack, service: str) -> list[str]:
    return [cid[:12] for cid in stack.container_ids(service)]


@pytest.fixture
def stacks(tmp_path):
    if os.environ.get("PNAS_E2E") != "1" and not _engine_answers():
        pytest.skip("no Docker engine answers `docker info` (and PNAS_E2E is not 1): the multi-host test needs one")
    if not _engine_answers():
        pytest.fail("PNAS_E2E=1 but no Docker engine answers `docker info`", pytrace=False)
    certs = tmp_path / "certs"
    subprocess.run([str(ROOT / "scripts" / "make-certs.sh"), str(certs)], check=True, capture_output=True)
    pg, redis_port, bouncer = _free_port(55432), _free_port(56379), _free_port(56432)
    common = [
        "POSTGRES_USER=pnas",
        "POSTGRES_DB=pnas",
        f"POSTGRES_PASSWORD={secrets.token_hex(12)}",
        f"REDIS_PASSWORD={secrets.token_hex(12)}",
        "PNAS_IMAGE=pnas-e2e",  # the image test_compose.py builds: one build for both tests
        "PNAS_VARIANT=cpu",
        f"PNAS_CERTS_DIR={certs}",
        f"PNAS_DB_PORT={bouncer}",
        f"PNAS_REDIS_PORT={redis_port}",
        "PNAS_LEASE_SECONDS=60",  # a killed host's child is declared lost 60 s after its last heartbeat (a loaded machine delays heartbeats)
        "PNAS_HEARTBEAT_SECONDS=4",
        "PNAS_RECONCILE_SECONDS=5",
        "PNAS_WORKER_STOP_GRACE=30s",
    ]
    head_env, host_env = tmp_path / "head.env", tmp_path / "host.env"
    head_env.write_text("\n".join(common + [
        f"FLOWER_BASIC_AUTH=e2e:{secrets.token_hex(8)}",
        f"PNAS_CONFIG_DIR={CONFIG_DIR}",
        "PNAS_CONFIG=tiny.toml",
        f"PNAS_HOST_PG_PORT={pg}",
        f"PNAS_HOST_REDIS_PORT={redis_port}",
        "PNAS_DB_LISTEN=127.0.0.1",
        "PNAS_PG_INTERNAL_HOST=127.0.0.1",
        "PNAS_REDIS_BIND=127.0.0.1",
        "PNAS_DB_HOST=127.0.0.1",
        "PNAS_REDIS_HOST=127.0.0.1",
        "PNAS_NODE=head",
    ]) + "\n")  # fmt: skip
    host_env.write_text("\n".join(common + [
        "PNAS_HEAD=127.0.0.1",  # in the certificate's names (make-certs.sh always adds it)
        "PNAS_NETWORK_MODE=host",
        "PNAS_BUILD_NETWORK=host",
        "PNAS_NODE=gpu-host-2",
    ]) + "\n")  # fmt: skip
    tag = secrets.token_hex(3)
    head = Stack(f"pnas-head-{tag}", head_env, HEAD_FILES)
    host = Stack(f"pnas-host-{tag}", host_env, HOST_FILES)
    head.ports = dict(bouncer=bouncer, redis=redis_port)
    head.certs = certs
    head.env_values = dict(line.split("=", 1) for line in common)
    try:
        yield head, host
    finally:
        host("down", "-v", "--remove-orphans", "--timeout", "20", timeout=300, check=False)
        head("down", "-v", "--remove-orphans", "--timeout", "20", timeout=300, check=False)


def test_head_and_worker_host_with_tls_finish_a_search_and_lose_nothing(stacks, capsys) -> None:
    head, host = stacks
    times: dict[str, float] = {}
    t0 = time.monotonic()
    try:
        head("build", timeout=1800)  # cached layers when test_compose.py built pnas-e2e:cpu already
        times["build"] = time.monotonic() - t0
        head("up", "-d", "--no-build", "--scale", "worker=1", timeout=600)
        host("up", "-d", "--no-build", "--scale", "worker=2", timeout=300)
        head_workers, host_workers = _ids(head, "worker"), _ids(host, "worker")
        assert len(head_workers) == 1 and len(host_workers) == 2

        # Nothing in the clear: Redis speaks TLS only, PgBouncer refuses a connection without it,
        # and a client that does not trust the private CA is refused too.
        pw = head.env_values
        with pytest.raises(redis.ConnectionError):
            redis.Redis(host="127.0.0.1", port=head.ports["redis"], password=pw["REDIS_PASSWORD"], socket_timeout=5).ping()
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(host="127.0.0.1", port=head.ports["bouncer"], user="pnas", dbname="pnas",
                             password=pw["POSTGRES_PASSWORD"], sslmode="disable", connect_timeout=5).close()  # fmt: skip
        other_ca = head.certs.parent / "other-ca"
        subprocess.run([str(ROOT / "scripts" / "make-certs.sh"), str(other_ca)], check=True, capture_output=True)
        with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
            psycopg2.connect(host="127.0.0.1", port=head.ports["bouncer"], user="pnas", dbname="pnas",
                             password=pw["POSTGRES_PASSWORD"], sslmode="verify-full",
                             sslrootcert=str(other_ca / "ca.crt"), connect_timeout=5).close()  # fmt: skip
        ok = psycopg2.connect(host="127.0.0.1", port=head.ports["bouncer"], user="pnas", dbname="pnas",
                              password=pw["POSTGRES_PASSWORD"], sslmode="verify-full",
                              sslrootcert=str(head.certs / "ca.crt"), connect_timeout=5)  # fmt: skip
        ok.close()
        times["up"] = time.monotonic() - t0 - times["build"]

        # PNAS_NODE: each host leases its GPU slots in its own namespace of the shared Redis.
        lease = (
            "from shared.settings import get_settings; from worker.gpu_slot import GpuSlots; "
            "s = get_settings(); g = GpuSlots.from_url(s.broker_url, devices=['0', '1'], scope=s.node, ttl=30); "
            "got = [g.acquire() for _ in range(3)]; print(s.node, [l.device if l else None for l in got]); "
            "[l.release() for l in got if l]"
        )
        for stack, node in ((head, "head"), (host, "gpu-host-2")):
            out = stack("exec", "-T", "worker", "python", "-c", lease, timeout=120).stdout.strip().splitlines()[-1]
            assert out == f"{node} ['0', '1', None]", out  # two slots per host, a third waits

        run_id = wait_for(
            lambda: (head.sql(f"select id from runs where name = '{RUN_NAME}'") or [[None]])[0][0],
            timeout=300,
            what="the controller to create the run",
        )

        def on(ids: list[str], state: str, cond: str = "") -> list[list[str]]:
            names = " or ".join(f"worker like 'pnas-{c}@%'" for c in ids)
            return head.sql(f"select id, worker from jobs where run_id = {run_id} and state = '{state}' and ({names}) {cond} order by id")

        # The worker host trains children: one done there, another in training; then it dies.
        wait_for(lambda: on(host_workers, "succeeded"), timeout=600, every=1, what="a child trained on the worker host")
        # The victim is a child still running on the host once the kill has landed: one seen running
        # before the kill may finish in the moment the kill takes (a child trains for seconds here),
        # so when none was left in flight the host comes back and the next one is tried.
        job_id = None
        for _ in range(4):
            wait_for(
                lambda: on(host_workers, "running", "and started_at < now() at time zone 'utc' - interval '2 seconds'"),
                timeout=600, every=0.5, what="a child in training on the worker host",
            )  # fmt: skip
            host("kill", timeout=120)
            in_flight = on(host_workers, "running")
            if in_flight:
                job_id = int(in_flight[0][0])
                break
            host("up", "-d", "--no-build", "--scale", "worker=2", timeout=300)
        assert job_id is not None, "every child seen training on the worker host finished before the kill landed, 4 times"
        times["until_host_killed"] = time.monotonic() - t0
        # The host comes back once its child has been declared lost (the controller requeued it).
        wait_for(lambda: head.sql(f"select state from jobs where id = {job_id}")[0][0] != "running",
                 timeout=300, every=1, what=f"child {job_id} of the killed host to be declared lost")  # fmt: skip
        host("up", "-d", "--no-build", "--scale", "worker=2", timeout=300)

        ctl = head.container_ids("controller")[0]

        def controller_exited() -> dict | None:
            st = json.loads(subprocess.run(["docker", "inspect", ctl], capture_output=True, text=True).stdout)[0]["State"]
            return st if st["Status"] == "exited" and not st["Restarting"] else None

        state = wait_for(controller_exited, timeout=1500, every=2, what="the controller to finish the search")
        assert state["ExitCode"] == 0, f"controller exited {state['ExitCode']}:\n{head.logs('controller')}"
        assert head.sql(f"select state from runs where id = {run_id}") == [["finished"]]
        times["total"] = time.monotonic() - t0

        # Nothing lost, nothing doubled; both hosts trained children; the killed child came back.
        jobs = head.sql(f"select level, state, count(*) from jobs where run_id = {run_id} and kind = 'search' group by 1, 2 order by 1, 2")
        assert jobs == [["1", "succeeded", "6"], ["2", "succeeded", "4"]], jobs
        assert head.sql(f"select arch_id from jobs where run_id = {run_id} group by arch_id having count(*) > 1") == []
        by_host = len(on(host_workers, "succeeded"))
        by_head = len(on(head_workers, "succeeded"))
        assert by_host >= 1 and by_head >= 1 and by_host + by_head == 10, (by_head, by_host)
        st, attempts, worker = head.sql(f"select state, attempts, worker from jobs where id = {job_id}")[0]
        assert st == "succeeded" and int(attempts) == 2, (st, attempts, worker)
    except BaseException:
        with capsys.disabled():
            print("\n--- head ps ---\n" + head("ps", "-a", check=False).stdout + "\n--- host ps ---\n" + host("ps", "-a", check=False).stdout)
            print("--- head logs ---\n" + head.logs("db", "pgbouncer", "redis", "migrate", "controller", "worker", tail=60))
            print("--- host logs ---\n" + host.logs("worker", tail=60))
        raise
    with capsys.disabled():
        print(
            f"\nmulti-host e2e ({head.project} + {host.project}): "
            + ", ".join(f"{k} {v:.0f}s" for k, v in times.items())
            + f"; children trained on the head {by_head}, on the worker host {by_host}; worker host killed during child {job_id}"
        )
