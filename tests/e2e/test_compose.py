"""The compose stack for real: build, `up --scale worker=3`, kill a worker mid-child, finish.

Runs when PNAS_E2E=1 (CI sets it after starting an engine) or when `docker info` answers;
skipped with the reason otherwise. Uses the host-network and CPU override files (the build
machines have no bridge networking and no GPU), its own compose project name, its own
ports when the defaults are taken, and always ends with `docker compose down -v`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400), pytest.mark.xdist_group("docker")]  # one after the other: the second reuses the first build

FILES = ["docker-compose.yml", "docker-compose.hostnet.yml", "docker-compose.cpu.yml"]
CONFIG_DIR = Path(__file__).parent / "configs"
RUN_NAME = "e2e-tiny"  # tests/e2e/configs/tiny.toml: 6 + 4 children
WORKERS = 3


def _engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _free_port(preferred: int) -> int:
    """``preferred`` when nothing listens on it, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port")


class Compose:
    """`docker compose` for one project, with the test's env file and override files."""

    def __init__(self, project: str, env_file: Path) -> None:
        self.project = project
        self.base = ["docker", "compose", "-p", project, "--env-file", str(env_file)]
        for f in FILES:
            self.base += ["-f", str(ROOT / f)]
        self.env = dict(os.environ)
        # The docker-here engine has no BuildKit; harmless elsewhere.
        self.env.setdefault("DOCKER_BUILDKIT", "0")
        self.env.setdefault("COMPOSE_BAKE", "false")

    def __call__(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        res = subprocess.run(
            [*self.base, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and res.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        return res

    def sql(self, query: str) -> list[list[str]]:
        """Rows of ``query`` through `docker compose exec db psql` (as an operator would)."""
        out = self(
            "exec", "-T", "db", "psql", "-U", "pnas", "-d", "pnas",
            "-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-F", "|", "-c", query,
        ).stdout  # fmt: skip
        return [line.split("|") for line in out.splitlines() if line.strip()]

    def container_ids(self, service: str) -> list[str]:
        return self("ps", "-a", "-q", service).stdout.split()

    def logs(self, *services: str, tail: int = 60) -> str:
        return self("logs", "--no-color", "--tail", str(tail), *services, check=False, timeout=60).stdout


def wait_for(cond, *, timeout: float, what: str, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


@pytest.fixture
def compose(tmp_path):
    if os.environ.get("PNAS_E2E") != "1" and not _engine_answers():
        pytest.skip("no Docker engine answers `docker info` (and PNAS_E2E is not 1): the compose end-to-end test needs one")
    if not _engine_answers():
        pytest.fail("PNAS_E2E=1 but no Docker engine answers `docker info`", pytrace=False)
    env_file = tmp_path / "e2e.env"
    env_file.write_text(
        "\n".join(
            [
                "POSTGRES_USER=pnas",
                "POSTGRES_DB=pnas",
                f"POSTGRES_PASSWORD={secrets.token_hex(12)}",
                f"REDIS_PASSWORD={secrets.token_hex(12)}",
                f"FLOWER_BASIC_AUTH=e2e:{secrets.token_hex(8)}",
                "PNAS_IMAGE=pnas-e2e",  # keeps an operator's pnas:cpu alone; kept for a fast rebuild
                f"PNAS_CONFIG_DIR={CONFIG_DIR}",
                "PNAS_CONFIG=tiny.toml",
                f"PNAS_HOST_PG_PORT={_free_port(55432)}",
                f"PNAS_HOST_REDIS_PORT={_free_port(56379)}",
                # A killed worker's child is declared lost 20 s after its last heartbeat.
                "PNAS_LEASE_SECONDS=20",
                "PNAS_HEARTBEAT_SECONDS=4",
                "PNAS_RECONCILE_SECONDS=5",
                "PNAS_WORKER_STOP_GRACE=30s",
            ]
        )
        + "\n"
    )
    c = Compose(f"pnas-e2e-{secrets.token_hex(3)}", env_file)
    try:
        yield c
    finally:
        c("down", "-v", "--remove-orphans", "--timeout", "20", timeout=300, check=False)


def test_compose_stack_survives_a_killed_worker_and_finishes(compose, capsys) -> None:
    times: dict[str, float] = {}
    t0 = time.monotonic()
    try:
        # 1. The CPU image.
        compose("build", timeout=1800)
        times["build"] = time.monotonic() - t0

        # 2. The stack: db, redis, migrate (must complete), controller, three workers.
        t = time.monotonic()
        compose("up", "-d", "--no-build", "--scale", f"worker={WORKERS}", timeout=600)
        migrate = compose.container_ids("migrate")
        assert migrate, "no migrate container"
        state = json.loads(subprocess.run(["docker", "inspect", migrate[0]], capture_output=True, text=True).stdout)[0]["State"]
        assert state["Status"] == "exited" and state["ExitCode"] == 0, f"migrate: {state}"
        workers = compose.container_ids("worker")
        assert len(workers) == WORKERS
        times["up"] = time.monotonic() - t

        # 3. Kill a worker while it trains a child; that child must come back and succeed.
        t = time.monotonic()
        run_id = wait_for(
            lambda: (compose.sql(f"select id from runs where name = '{RUN_NAME}'") or [[None]])[0][0],
            timeout=300,
            what="the controller to create the run",
        )
        # The victim is a child still running once its worker's kill has landed: one seen running may
        # finish in the moment the kill takes (a child trains for seconds here), and then another
        # worker's child is tried (one worker is always left alive).
        job_id, alive = None, list(workers)
        for _ in range(len(workers) - 1):
            names = " or ".join(f"worker like 'pnas-{cid[:12]}@%'" for cid in alive)
            row = wait_for(
                lambda: compose.sql(
                    f"select id, worker from jobs where run_id = {run_id} and state = 'running' and ({names})"
                    " and started_at < now() at time zone 'utc' - interval '2 seconds' order by id limit 1"
                ),
                timeout=300,
                every=0.5,
                what="a child in training",
            )[0]
            m = re.match(r"pnas-([0-9a-f]{12})@", row[1])
            assert m, f"worker name {row[1]!r} does not carry a container id"
            victim = next((cid for cid in alive if cid.startswith(m.group(1))), None)
            assert victim, f"worker {row[1]!r} is none of the worker containers {alive}"
            subprocess.run(["docker", "kill", victim], check=True, capture_output=True, timeout=60)
            alive.remove(victim)
            lost = compose.sql(f"select id from jobs where run_id = {run_id} and state = 'running' and worker = '{row[1]}'")
            if lost:
                job_id = int(lost[0][0])
                break
        assert job_id is not None, "every child seen training finished before its worker's kill landed"
        seen: list[str] = []

        def recovered() -> bool:
            st, attempts = compose.sql(f"select state, attempts from jobs where id = {job_id}")[0]
            if not seen or seen[-1] != st:
                seen.append(st)
            return st == "succeeded" and int(attempts) >= 2

        wait_for(recovered, timeout=600, every=0.5, what=f"child {job_id} to be retried and succeed after its worker was killed")
        log = compose.logs("controller", tail=400)
        assert "lost" in seen or re.search(rf"requeued \d+ lost child\(ren\): \[[^]]*\b{job_id}\b", log), (
            f"child {job_id} was never declared lost (states seen: {seen})"
        )
        times["kill_to_recovered"] = time.monotonic() - t

        # 4. The search finishes: the controller exits 0 and the run is finished.
        t = time.monotonic()
        ctl = compose.container_ids("controller")[0]

        def controller_exited() -> dict | None:
            st = json.loads(subprocess.run(["docker", "inspect", ctl], capture_output=True, text=True).stdout)[0]["State"]
            return st if st["Status"] == "exited" and not st["Restarting"] else None

        state = wait_for(controller_exited, timeout=900, every=2, what="the controller to finish the search")
        assert state["ExitCode"] == 0, f"controller exited {state['ExitCode']}:\n{compose.logs('controller')}"
        assert compose.sql(f"select state from runs where id = {run_id}") == [["finished"]]
        times["search_rest"] = time.monotonic() - t

        # Every chosen child succeeded, exactly once: one row per architecture, all succeeded.
        jobs = compose.sql(f"select level, state, count(*) from jobs where run_id = {run_id} and kind = 'search' group by 1, 2 order by 1, 2")
        assert jobs == [["1", "succeeded", "6"], ["2", "succeeded", "4"]], jobs
        assert compose.sql(f"select arch_id from jobs where run_id = {run_id} group by arch_id having count(*) > 1") == []
        assert compose.sql(f"select id from jobs where run_id = {run_id} and (reward is null or finished_at is null)") == []
        # The killed attempt's partial epochs stay; the succeeded attempt recorded all of its own.
        assert compose.sql(
            f"select count(*) from epochs e join jobs j on j.id = e.job_id where j.id = {job_id} and e.attempt = j.attempts"
        ) == [["2"]]
        top = compose.sql(
            f"select id, level, round(reward::numeric, 4), arch_id from jobs where run_id = {run_id}"
            " and state = 'succeeded' and kind = 'search' order by reward desc, id limit 5"
        )
        assert len(top) == 5, top
        # The README's status command, on the stopped controller's image and settings.
        status = compose("run", "--rm", "--no-deps", "-T", "controller", "pnas", "status", RUN_NAME, "--json", timeout=180)
        assert json.loads(status.stdout.strip().splitlines()[-1])["state"] == "finished", status.stdout
        retries = compose.sql(f"select id, attempts from jobs where run_id = {run_id} and attempts > 1 order by id")
    except BaseException:
        with capsys.disabled():
            print("\n--- docker compose ps -a ---\n" + compose("ps", "-a", check=False).stdout)
            print("--- logs ---\n" + compose.logs("migrate", "controller", "worker", tail=80))
        raise
    times["total"] = time.monotonic() - t0
    with capsys.disabled():
        print(
            f"\ncompose e2e ({compose.project}): "
            + ", ".join(f"{k} {v:.0f}s" for k, v in times.items())
            + f"; killed worker {victim[:12]} while it trained child {job_id} (states seen: {' -> '.join(seen)});"
            + f" children with more than one attempt: {retries}; top-5 rewards: {[r[2] for r in top]}"
        )
