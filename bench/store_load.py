"""Store load test: N simulated workers on the real store and a real PostgreSQL.

Each simulated worker is a thread with its own `Store` (its own connection pool, as a worker
process has) running the worker's real path per child: `claim_next` (the local workers'
claim, the contended one; Celery workers claim a known id by primary key), `heartbeat`, one
`add_epoch` after a simulated training pause, and the fenced `finish`. The threads are spread
over a few processes. A controller thread polls `level_progress` (its level wait) meanwhile.

Each phase gets a fresh run of --children queued children (inserted by SQL: setup, not the
measured path) on a private PostgreSQL cluster started for the bench (so that 1,000
connections never touch the machine's shared server) with its default max_connections (100),
either directly or through PgBouncer in transaction mode (Debian's `pgbouncer`).

After each phase the database is checked: every child a worker finished is succeeded, once
(attempts = 1, one epoch row), no child is left running, none was claimed twice.

    python bench/store_load.py                       # 50, 200, 1000 workers; direct and via PgBouncer
    python bench/store_load.py --via pgbouncer --workers 1000 --seconds 20
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine, pct  # noqa: E402

PG_BIN = Path(os.environ.get("PNAS_BENCH_PG_BIN", "")) if os.environ.get("PNAS_BENCH_PG_BIN") else None


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_of_tree(root_pid: int) -> float:
    """CPU seconds of a process, its live children and its reaped children (from /proc)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            f = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(stat.parent.name), int(f[1])
        if pid == root_pid:
            total += sum(int(x) for x in f[11:15]) / _TICK  # utime stime cutime cstime
        elif ppid == root_pid:
            total += (int(f[11]) + int(f[12])) / _TICK
    return total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path:
    if PG_BIN:
        return PG_BIN
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not versions:
        raise SystemExit("store_load: no PostgreSQL server binaries (apt-get install postgresql); or set PNAS_BENCH_PG_BIN")
    return versions[-1].parent


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres OS user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def private_cluster(max_connections: int) -> Iterator[tuple[str, Path]]:
    """A throw-away PostgreSQL cluster on 127.0.0.1:<free port>, trust auth; (URL, data dir)."""
    bindir = _pg_bin()
    tmp = Path(tempfile.mkdtemp(prefix="pnas-load-pg-"))
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres", "postgres")
    data, port = tmp / "data", _free_port()
    subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]),
                   check=True, capture_output=True)  # fmt: skip
    opts = f"-c listen_addresses=127.0.0.1 -c port={port} -c max_connections={max_connections} -c unix_socket_directories={tmp}"
    subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(tmp / "log"), "-w", "start"]),
                   check=True, capture_output=True)  # fmt: skip
    try:
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "pnas_load"], check=True)
        yield f"postgresql://postgres@127.0.0.1:{port}/pnas_load", data
    finally:
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def pgbouncer(pg_port: int, *, pool_size: int, max_clients: int) -> Iterator[str]:
    """PgBouncer in transaction mode in front of the cluster; yields its URL."""
    exe = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(exe).exists():
        raise SystemExit("store_load: pgbouncer is not installed (scripts/services.sh installs Debian's pgbouncer)")
    tmp = Path(tempfile.mkdtemp(prefix="pnas-load-pgb-"))
    port = _free_port()
    (tmp / "users.txt").write_text('"postgres" ""\n')
    (tmp / "pgbouncer.ini").write_text(
        f"""[databases]
pnas_load = host=127.0.0.1 port={pg_port} dbname=pnas_load
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {tmp}/users.txt
admin_users = postgres
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = {max_clients}
max_db_connections = {pool_size}
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
logfile = {tmp}/pgbouncer.log
pidfile = {tmp}/pgbouncer.pid
"""
    )
    if os.geteuid() == 0:
        for p in [tmp, *tmp.iterdir()]:
            shutil.chown(p, "postgres", "postgres")
    # One descriptor per client and per server connection: runuser starts it with a soft
    # limit of 1,024, too few for 1,000 clients, so raise it (up to the hard limit) first.
    cmd = ["sh", "-c", f'ulimit -n {max_clients + pool_size + 100} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$1"', exe, str(tmp / "pgbouncer.ini")]
    proc = subprocess.Popen(_as_postgres(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        BOUNCER_PID[0] = proc.pid  # runuser, whose child is pgbouncer
        yield f"postgresql://postgres@127.0.0.1:{port}/pnas_load"
    finally:
        BOUNCER_PID[0] = 0
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


BOUNCER_PID = [0]
PG_DATA: list[Path] = []


def server_cpu() -> float:
    """CPU seconds used so far by PostgreSQL (postmaster and backends) and PgBouncer."""
    pg = int(PG_DATA[0].joinpath("postmaster.pid").read_text().split()[0])
    return cpu_of_tree(pg) + (cpu_of_tree(BOUNCER_PID[0]) if BOUNCER_PID[0] else 0.0)


# --- the simulated workers (one process, many threads) ------------------------------------
def _worker_process(url: str, names: list[str], run_id: int, window, train_s: float, ready, out) -> None:
    from shared.jobs import EpochMetrics, TrainResult
    from shared.store import Store

    ready.put(len(names))  # imported: the phase starts when every process is here
    while window[0] == 0.0:
        time.sleep(0.01)
    t_start, t_end = window[0], window[1]

    stats = collections.defaultdict(list)
    errors: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def one(name: str) -> None:
        store = Store(url, pool_size=1)
        claim_l, finish_l, claimed, finished, errs = [], [], [], [], collections.Counter()
        while time.time() < t_start:
            time.sleep(0.01)
        while time.time() < t_end:
            try:
                t = time.perf_counter()
                got = store.claim_next(worker=name, lease_seconds=150, run_id=run_id)
                claim_l.append(time.perf_counter() - t)
                if got is None:
                    time.sleep(0.05)
                    continue
                job_id, attempt = got
                claimed.append(job_id)
                store.heartbeat(job_id, attempt=attempt, worker=name, lease_seconds=150)
                time.sleep(train_s)  # "training"
                m = EpochMetrics(epoch=1, loss=1.0, accuracy=0.5, val_loss=1.0, val_accuracy=0.5, seconds=train_s)
                store.add_epoch(job_id, attempt=attempt, metrics=m)
                t = time.perf_counter()
                ok = store.finish(job_id, attempt=attempt, result=TrainResult(0.5, 1, [m], 1000, train_s, "sim"))
                finish_l.append(time.perf_counter() - t)
                if ok:
                    finished.append(job_id)
                else:
                    errs["finish fenced out"] += 1
            except Exception as exc:  # noqa: BLE001 - counted and reported, the worker carries on
                errs[f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"] += 1
                time.sleep(0.1)
        store.dispose()
        with lock:
            stats["claim"] += claim_l
            stats["finish"] += finish_l
            stats["claimed"] += claimed
            stats["finished"] += finished
            errors.update(errs)

    threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats["cpu"] = [time.process_time()]
    out.put((dict(stats), dict(errors)))


def _controller(url: str, run_id: int, t_start: float, t_end: float, lat: list, stop: threading.Event) -> None:
    from shared.store import Store

    store = Store(url)
    while time.time() < t_start:
        time.sleep(0.01)
    while time.time() < t_end and not stop.is_set():
        t = time.perf_counter()
        try:
            store.level_progress(run_id, 1)
            lat.append(time.perf_counter() - t)
        except Exception:  # noqa: BLE001
            lat.append(float("inf"))
        time.sleep(0.5)
    store.dispose()


def sample_connections(admin_url: str, t_end: float, samples: list) -> None:
    import psycopg2

    conn = psycopg2.connect(admin_url.replace("/pnas_load", "/postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        while time.time() < t_end:
            cur.execute("select count(*), count(*) filter (where state = 'active') from pg_stat_activity where datname = 'pnas_load'")
            samples.append(cur.fetchone())
            time.sleep(0.5)
    conn.close()


def new_run(store, children: int) -> int:
    from sqlalchemy import text

    run, _ = store.create_run(name=f"load-{time.time_ns()}", config={}, seed=0)
    store.start_level(run.id, 1, candidates=children)
    with store.engine.begin() as c:
        c.execute(
            text(
                "insert into jobs (run_id, level, kind, key, arch_id, cell, train, state, attempts, max_attempts, queued_at)"
                " select :r, 1, 'search', 'search:' || g, 'a' || g, '[]', '{}', 'queued', 0, 3, now() at time zone 'utc'"
                " from generate_series(1, :n) g"
            ),
            {"r": run.id, "n": children},
        )
        c.execute(text("analyze jobs"))
    return run.id


def _check(store, run_id: int, finished: list[int], claimed: list[int]) -> dict:
    from sqlalchemy import text

    with store.engine.connect() as c:
        states = dict(c.execute(text("select state, count(*) from jobs where run_id = :r group by state"), {"r": run_id}).all())
        twice = c.execute(text("select count(*) from jobs where run_id = :r and attempts > 1"), {"r": run_id}).scalar()
        succeeded = {i for (i,) in c.execute(text("select id from jobs where run_id = :r and state = 'succeeded'"), {"r": run_id})}
        bad_epochs = c.execute(
            text(
                "select count(*) from jobs j where j.run_id = :r and j.state = 'succeeded'"
                " and (select count(*) from epochs e where e.job_id = j.id) <> 1"
            ),
            {"r": run_id},
        ).scalar()
    fin = set(finished)
    return dict(
        states=states,
        lost=len(fin - succeeded),  # a worker was told finished, the database says otherwise
        unreported=len(succeeded - fin),  # succeeded in the database without a worker's finish
        doubled=twice + (len(claimed) - len(set(claimed))) + (len(finished) - len(fin)) + bad_epochs,
        running=states.get("running", 0),
    )


def phase(url: str, admin_url: str, *, workers: int, children: int, seconds: float, procs: int, train_s: float) -> dict:
    from shared.store import Store

    admin = Store(admin_url)
    run_id = new_run(admin, children)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    names = [f"sim-{workers}-{i}@load" for i in range(workers)]
    window = ctx.Array("d", [0.0, 0.0], lock=False)  # (start, end), set once every process is ready
    ready = ctx.Queue()
    ps = [
        ctx.Process(target=_worker_process, args=(url, names[k::procs], run_id, window, train_s, ready, out))
        for k in range(procs)
    ]
    for p in ps:
        p.start()
    for _ in ps:
        ready.get(timeout=300)
    cpu0 = server_cpu()
    t_start = time.time() + 1.0 + workers / 500  # every thread started and waiting
    t_end = t_start + seconds
    window[1] = t_end
    window[0] = t_start
    ctl_lat: list = []
    conns: list = []
    stop = threading.Event()
    ctl = threading.Thread(target=_controller, args=(url, run_id, t_start, t_end, ctl_lat, stop))
    mon = threading.Thread(target=sample_connections, args=(admin_url, t_end, conns))
    ctl.start()
    mon.start()
    results = [out.get(timeout=seconds + 300) for _ in ps]
    t_done = time.time()
    server_s = server_cpu() - cpu0
    for p in ps:
        p.join()
    ctl.join()
    mon.join()
    claim = [x for s, _ in results for x in s.get("claim", [])]
    finish = [x for s, _ in results for x in s.get("finish", [])]
    finished = [x for s, _ in results for x in s.get("finished", [])]
    claimed = [x for s, _ in results for x in s.get("claimed", [])]
    errors: collections.Counter = collections.Counter()
    for _, e in results:
        errors.update(e)
    check = _check(admin, run_id, finished, claimed)
    admin.dispose()
    busy = [c for c in conns if c[0]]
    client_cpu = sum(s.get("cpu", [0.0])[0] for s, _ in results)  # includes imports and thread start
    return dict(
        workers=workers,
        children_s=len(finished) / (t_done - t_start),
        finished=len(finished),
        claim_p50=pct(claim, 0.5) * 1000 if claim else float("nan"),
        claim_p99=pct(claim, 0.99) * 1000 if claim else float("nan"),
        finish_p50=pct(finish, 0.5) * 1000 if finish else float("nan"),
        finish_p99=pct(finish, 0.99) * 1000 if finish else float("nan"),
        level_p99=pct(ctl_lat, 0.99) * 1000 if ctl_lat else float("nan"),
        conns_max=max((c[0] for c in busy), default=0),
        active_max=max((c[1] for c in busy), default=0),
        errors=errors,
        client_ms=client_cpu / max(1, len(finished)) * 1000,
        server_ms=server_s / max(1, len(finished)) * 1000,
        **check,
    )


def probe(url: str, admin_url: str, n: int = 200) -> dict[str, float]:
    """Client CPU (ms) per call of each step of a child, one thread, no contention."""
    from shared.jobs import EpochMetrics, TrainResult
    from shared.store import Store

    admin = Store(admin_url)
    run_id = new_run(admin, n + 20)
    admin.dispose()
    s = Store(url, pool_size=1)
    m = EpochMetrics(epoch=1, loss=1.0, accuracy=0.5, val_loss=1.0, val_accuracy=0.5, seconds=0.0)
    for _ in range(20):  # warm: connection, compiled-statement cache
        j, a = s.claim_next(worker="probe", lease_seconds=150, run_id=run_id)
        s.finish(j, attempt=a, result=TrainResult(0.5, 1, [m], 1000, 0.0, "sim"))
    got, out = [], {}
    steps = [
        ("claim_next", lambda _: got.append(s.claim_next(worker="probe", lease_seconds=150, run_id=run_id))),
        ("heartbeat", lambda k: s.heartbeat(got[k][0], attempt=got[k][1], worker="probe", lease_seconds=150)),
        ("add_epoch", lambda k: s.add_epoch(got[k][0], attempt=got[k][1], metrics=m)),
        ("finish", lambda k: s.finish(got[k][0], attempt=got[k][1], result=TrainResult(0.5, 1, [m], 1000, 0.0, "sim"))),
    ]
    for name, step in steps:
        cpu, wall = time.process_time(), time.perf_counter()
        for k in range(n):
            step(k)
        out[name] = ((time.process_time() - cpu) / n * 1000, (time.perf_counter() - wall) / n * 1000)
    s.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="50,200,1000", help="concurrent simulated workers per phase (comma list)")
    ap.add_argument("--via", choices=["direct", "pgbouncer", "both"], default="both")
    ap.add_argument("--children", type=int, default=100_000, help="queued children per phase's run")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    ap.add_argument("--procs", type=int, default=4, help="processes the simulated workers' threads are spread over")
    ap.add_argument("--train", type=float, default=1.0, help="simulated training per child, seconds")
    ap.add_argument("--max-connections", type=int, default=100, help="the private cluster's (PostgreSQL's default)")
    ap.add_argument("--pool", type=int, default=20, help="PgBouncer's server connections")
    ap.add_argument("--probe", action="store_true", help="only the client CPU per store call, one thread")
    a = ap.parse_args()
    counts = [int(x) for x in a.workers.split(",")]
    vias = ["direct", "pgbouncer"] if a.via == "both" else [a.via]
    print(f"# store_load: {machine()}; {a.children} queued children per run, {a.seconds:.0f} s per phase, "
          f"{a.train:.2f} s simulated training per child, {a.procs} processes")  # fmt: skip
    print("| via | workers | children/s | claim p50 / p99 ms | finish p50 / p99 ms | level wait p99 ms | connections (active) | errors | lost / doubled / running | CPU ms per child: workers / PostgreSQL+PgBouncer |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with private_cluster(a.max_connections) as (pg_url, data):
        from shared.store import Store

        PG_DATA[:] = [data]
        s = Store(pg_url)
        s.upgrade()
        s.dispose()
        pg_port = int(pg_url.rsplit(":", 1)[1].split("/")[0])
        if a.probe:
            for name, (cpu, wall) in probe(pg_url, pg_url).items():
                print(f"| probe (direct, 1 thread) | {name} | client CPU {cpu:.2f} ms | wall {wall:.2f} ms |")
            return
        for via in vias:
            bouncer = pgbouncer(pg_port, pool_size=a.pool, max_clients=max(counts) + 100) if via == "pgbouncer" else contextlib.nullcontext(pg_url)
            with bouncer as url:
                for n in counts:
                    r = phase(url, pg_url, workers=n, children=a.children, seconds=a.seconds, procs=a.procs, train_s=a.train)
                    err = sum(r["errors"].values())
                    print(
                        f"| {via} | {n} | {r['children_s']:.0f} | {r['claim_p50']:.1f} / {r['claim_p99']:.1f} | "
                        f"{r['finish_p50']:.1f} / {r['finish_p99']:.1f} | {r['level_p99']:.1f} | {r['conns_max']} ({r['active_max']}) | "
                        f"{err} | {r['lost']} / {r['doubled']} / {r['running']} | {r['client_ms']:.1f} / {r['server_ms']:.1f} |",
                        flush=True,
                    )
                    for msg, k in r["errors"].most_common(3):
                        print(f"|  | | error x{k}: {msg} | | | | | | | |", flush=True)


if __name__ == "__main__":
    main()
