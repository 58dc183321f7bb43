"""Store load with cheap clients: the store's own SQL for a child, driven by pgbench.

`store_load.py` runs simulated workers in Python and measures mostly their client CPU (about
24 ms per child). This script sends the same statements, as PostgreSQL receives them from the
store, with `pgbench` (a C client), so that the figures show what PostgreSQL + PgBouncer + the
indexes of migration 0008 carry. Each pgbench client is one worker: claim (`claim_next`),
heartbeat, a simulated training pause, one epoch row (`add_epoch`), the fenced `finish`; every
store call is one pgbench transaction (the client counts the steps in `step`), so pgbench's
per-transaction log gives the claim's and the finish's latency percentiles. A second pgbench
runs the controller's level wait (`level_progress`) twice a second meanwhile.

The cluster, PgBouncer (transaction mode), the 100,000 queued children of each phase (through
the store, as store_load.py seeds them) and the connection sampling are store_load.py's.
After each phase the database is checked: every succeeded child has attempts = 1 and one epoch
row, no child was claimed twice, every claimed child is succeeded or still running (at most
one per client, cut off by the end of the phase), and the finishes pgbench completed match the
succeeded children.

    python bench/store_load_pgbench.py                  # 50, 200, 1000 clients via PgBouncer; 50 direct
    python bench/store_load_pgbench.py --clients 1000 --via pgbouncer --seconds 20
    python bench/store_load_pgbench.py --compare-sql    # the store's statements against these, from the server's log
    python bench/store_load_pgbench.py --clients 1000 --via pgbouncer --no-ping   # what the pool's pre-ping costs
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import store_load  # noqa: E402
from bench._common import machine, pct  # noqa: E402

# --- the store's statements -----------------------------------------------------------------
# Copied from PostgreSQL's log (log_statement = all) of one child run through `Store` with
# SQLAlchemy 2.1 + psycopg2 (which interpolates parameters on the client, as pgbench -M simple
# does), the values replaced by pgbench variables: :c_id / :c_attempts (what the claim
# returned), :run_id, :worker_tag and :client_id (the worker's name). `SELECT 1` is the pool's
# pre-ping (`pool_pre_ping=True` in shared/store/engine.py), sent before every store call.
PING = "SELECT 1;"
TOUCH_WORKER = (  # Attempts._touch_worker (shared/store/registry.py), in claim_next and heartbeat
    "UPDATE workers SET last_seen=(now() at time zone 'utc'), job_id=:c_id, stopped_at=NULL WHERE workers.name = 'pgb-:worker_tag-:client_id';"
)
CLAIM = (  # Attempts.claim_next(worker=..., lease_seconds=150, run_id=...), shared/store/attempts.py
    "UPDATE jobs SET state='running', attempts=(jobs.attempts + 1), worker='pgb-:worker_tag-:client_id', "
    "lease_until=((now() at time zone 'utc') + interval '150.000 seconds'), started_at=(now() at time zone 'utc'), "
    "finished_at=NULL, error_class=NULL, error_message=NULL, stop_requested=false, resumed_epoch=NULL "
    "WHERE jobs.id = (SELECT pick.id \nFROM jobs AS pick \n"
    "WHERE pick.state = 'queued' AND pick.attempts < pick.max_attempts AND pick.run_id = :run_id "
    "ORDER BY pick.level DESC, pick.id \n LIMIT 1 FOR UPDATE SKIP LOCKED) AND jobs.state = 'queued' "
    "RETURNING jobs.id, jobs.attempts"
)
HEARTBEAT = (  # Attempts.heartbeat -> renew(lease_seconds=150)
    "UPDATE jobs SET lease_until=((now() at time zone 'utc') + interval '150.000 seconds') "
    "WHERE jobs.id = :c_id AND jobs.attempts = :c_attempts AND jobs.state = 'running' RETURNING jobs.stop_requested;"
)
ADD_EPOCH = (  # Attempts.add_epoch: the fence, then replace the epoch's row
    "SELECT count(*) AS count_1 \nFROM jobs \nWHERE jobs.id = :c_id AND jobs.attempts = :c_attempts AND jobs.state = 'running';",
    "DELETE FROM epochs WHERE epochs.job_id = :c_id AND epochs.attempt = :c_attempts AND epochs.epoch = 1;",
    "INSERT INTO epochs (job_id, attempt, epoch, loss, accuracy, val_loss, val_accuracy, seconds) "
    "VALUES (:c_id, :c_attempts, 1, 1.0, 0.5, 1.0, 0.5, 1.0) RETURNING epochs.id;",
)
FINISH = (  # Attempts.finish (the attempt's log tail and rung rewards, then the fenced update), then
    # Attempts._ended frees the worker (shared/store/registry.py)
    "SELECT jobs.log_tail, jobs.rung_rewards \nFROM jobs \nWHERE jobs.id = :c_id AND jobs.attempts = :c_attempts AND jobs.state = 'running';",
    "UPDATE jobs SET state='succeeded', lease_until=NULL, finished_at=(now() at time zone 'utc'), reward=0.5, "
    "reward_epoch=1, test_accuracy=NULL, params=1000, wall_seconds=1.0, device='sim', error_class=NULL, "
    "error_message=NULL, log_tail=NULL, stop_requested=false, epochs_trained=1, rung_rewards='{\"1\": 0.5}'::JSON "
    "WHERE jobs.id = :c_id AND jobs.attempts = :c_attempts AND jobs.state = 'running';",
    "UPDATE workers SET last_seen=(now() at time zone 'utc'), job_id=NULL WHERE workers.job_id = :c_id;",
)
_STATES = ("queued", "running", "succeeded", "failed", "lost", "cancelled")  # shared.jobs.ALL_STATES' order
LEVEL_PROGRESS = (  # Scheduling.level_progress(run_id, 1), shared/store/scheduling.py: the counts, the
    # run's full epochs, the best reward per epochs trained (rows.level_bests)
    "SELECT "
    + ", ".join(f"sum(CASE WHEN (jobs.state = '{st}') THEN 1 ELSE 0 END) AS sum_{i}" for i, st in enumerate(_STATES, 1))
    + ", sum(CASE WHEN (jobs.state = 'lost' AND jobs.attempts < jobs.max_attempts) THEN 1 ELSE 0 END) AS sum_7, "
    "sum(CASE WHEN (jobs.state IN ('queued', 'running') AND jobs.rung > 0) THEN 1 ELSE 0 END) AS sum_8, "
    "count(*) AS count_1 \nFROM jobs \n"
    "WHERE jobs.run_id = :run_id AND jobs.level = 1 AND jobs.kind = 'search';",
    "SELECT runs.config \nFROM runs \nWHERE runs.id = :run_id;",
    "SELECT jobs.level, jobs.epochs_trained, max(jobs.reward) AS max_1 \nFROM jobs \n"
    "WHERE jobs.run_id = :run_id AND jobs.kind = 'search' AND jobs.reward IS NOT NULL AND jobs.level = 1 "
    "GROUP BY jobs.level, jobs.epochs_trained;",
)
STEPS = ("claim", "heartbeat", "train", "add_epoch", "finish")  # one pgbench transaction each


def tx(*statements: str, ping: bool = True) -> str:
    """One store call: the pre-ping, then the statements in one transaction."""
    return "\n".join([PING] * ping + ["BEGIN;", *statements, "COMMIT;"])


def worker_script(train_ms: int, *, ping: bool = True) -> str:
    """The pgbench script of one simulated worker: one step of a child per transaction.

    The claim stores what it returned in :c_id, :c_attempts (\\aset: no error when no child is
    left, then :c_id stays 0, as claim_next's None). An empty claim waits 50 ms, as
    store_load.py's worker does, and the other steps of that round send nothing."""
    return "\n".join(
        [
            r"\set step (:step + 1) % 5",
            r"\if :step = 0",
            r"\set c_id 0",
            *[PING] * ping,
            "BEGIN;",
            CLAIM + r" \aset c_",
            r"\if :c_id > 0",
            TOUCH_WORKER,
            r"\endif",
            "COMMIT;",
            r"\elif :c_id = 0",
            r"\sleep 10 ms",  # each of the 4 other steps of an empty round: 50 ms in all
            r"\elif :step = 1",
            tx(HEARTBEAT, TOUCH_WORKER, ping=ping),
            r"\elif :step = 2",
            rf"\sleep {train_ms} ms",  # "training"
            r"\elif :step = 3",
            tx(*ADD_EPOCH, ping=ping),
            r"\else",
            tx(*FINISH, ping=ping),
            r"\endif",
            "",
        ]
    )


def pgbench_exe() -> str:
    exe = shutil.which("pgbench") or next((str(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))), None)
    if not exe:
        raise SystemExit("store_load_pgbench: pgbench not found (Debian ships it in the server package: apt-get install postgresql-15, or postgresql-contrib)")
    return exe


def read_log(prefix: Path) -> list[tuple[int, int, float, float, float]]:
    """(client, transaction number, latency ms, schedule lag ms, end time s) of every logged transaction."""
    rows = []
    for f in prefix.parent.glob(prefix.name + ".*"):
        for line in f.read_text().splitlines():
            x = line.split()  # client_id transaction_no time_us script_no time_epoch time_us [schedule_lag_us]
            rows.append((int(x[0]), int(x[1]), int(x[2]) / 1000, int(x[6]) / 1000 if len(x) > 6 else 0.0, int(x[4]) + int(x[5]) / 1e6))
    return rows


def per_command(out: str) -> list[tuple[float, int, str]]:
    """pgbench -r's block: (mean latency ms, failures, command) of every SQL command."""
    rows = []
    for line in out.split("statement latencies in milliseconds", 1)[-1].splitlines()[1:]:
        m = re.match(r"\s+([\d.]+)\s+(\d+)\s+(.*)$", line)
        if m and not m.group(3).startswith("\\"):
            rows.append((float(m.group(1)), int(m.group(2)), m.group(3)))
    return rows


def machine_busy() -> tuple[float, float]:
    """(busy, all) jiffies of every CPU since boot, from /proc/stat: the whole machine, others' work too."""
    x = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(x) - x[3] - x[4], sum(x)  # idle and iowait are not busy


def check(admin, run_id: int, tag: str) -> dict:
    from sqlalchemy import text

    q = dict(r=run_id)
    with admin.engine.connect() as c:
        one = lambda sql: c.execute(text(sql), q).scalar()  # noqa: E731
        states = dict(c.execute(text("select state, count(*) from jobs where run_id = :r group by state"), q).all())
        bad = one(
            "select count(*) from jobs j where j.run_id = :r and j.state = 'succeeded' and (j.attempts <> 1"
            " or (select count(*) from epochs e where e.job_id = j.id) <> 1)"
        )
        twice = one("select count(*) from jobs where run_id = :r and attempts > 1")
        two_running = one("select count(*) from (select worker from jobs where run_id = :r and state = 'running' group by worker having count(*) > 1) w")
        lost = one("select count(*) from jobs where run_id = :r and attempts > 0 and state not in ('succeeded', 'running')")
        touched = c.execute(text("select count(*) from workers where name like :p and last_seen > '2001-01-01'"), dict(p=f"pgb-{tag}-%")).scalar()
    return dict(states=states, bad=bad, doubled=twice + two_running + bad, lost=lost, touched=touched)


def phase(url: str, admin_url: str, *, via: str, clients: int, children: int, seconds: int, train_ms: int, threads: int, level_hz: float, ping: bool) -> dict:
    from sqlalchemy import text

    from shared.store import Store

    admin = Store(admin_url)
    run_id = store_load.new_run(admin, children)
    tag = f"{via}{clients}x{time.time_ns() % 10**6}"
    with admin.engine.begin() as c:  # the workers' rows, as their first claim would leave them
        c.execute(
            text("insert into workers (name, started_at, last_seen) select 'pgb-' || :t || '-' || g, '2000-01-01', '2000-01-01' from generate_series(0, :n - 1) g"),
            dict(t=tag, n=clients),
        )
    tmp = Path(tempfile.mkdtemp(prefix="pnas-pgbench-"))
    (tmp / "worker.sql").write_text(worker_script(train_ms, ping=ping))
    (tmp / "level.sql").write_text(tx(*LEVEL_PROGRESS, ping=ping) + "\n")
    common = [pgbench_exe(), "-n", "-M", "simple", "-T", str(seconds), "-D", f"run_id={run_id}"]
    workers = common + ["-c", str(clients), "-j", str(min(threads, clients)), "-r", "-l", f"--log-prefix={tmp}/w",
                        "-D", "step=4", "-D", "c_id=0", "-D", f"worker_tag={tag}", "-f", str(tmp / "worker.sql"), url]  # fmt: skip
    level = common + ["-c", "1", "-R", str(level_hz), "-l", f"--log-prefix={tmp}/l", "-f", str(tmp / "level.sql"), url]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0, bouncer0, busy0 = store_load.server_cpu(), bouncer_cpu(), machine_busy()
    conns: list = []
    t0 = time.time()
    pw = subprocess.Popen(workers, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp)
    pl = subprocess.Popen(level, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp)
    mon = threading.Thread(target=store_load.sample_connections, args=(admin_url, t0 + seconds + clients / 200, conns))
    mon.start()
    out, err = pw.communicate(timeout=seconds + 300)
    lout, lerr = pl.communicate(timeout=60)
    mon.join()
    server_s, bouncer_s = store_load.server_cpu() - cpu0, bouncer_cpu() - bouncer0
    busy1 = machine_busy()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_s = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    log = read_log(tmp / "w")
    first = min((n for _, n, _, _, _ in log), default=0)  # pgbench numbers a client's transactions from 0 or 1
    by_step = collections.defaultdict(list)
    for _, n, ms, _, _ in log:
        by_step[STEPS[(n - first) % 5]].append(ms)
    level_ms = [ms - lag for _, _, ms, lag, _ in read_log(tmp / "l")]
    window = max((e for *_, e in log), default=0.0) - min((e - ms / 1000 for _, _, ms, _, e in log), default=0.0)
    chk = check(admin, run_id, tag)
    admin.dispose()
    shutil.rmtree(tmp, ignore_errors=True)
    succeeded = chk["states"].get("succeeded", 0)
    dur = float(m.group(1)) if (m := re.search(r"duration: ([\d.]+) s", out)) else float(seconds)
    errors = [line for line in (err + lerr).splitlines() if re.search(r"error|abort|FATAL|fail", line, re.I)]
    failed = sum(int(m) for m in re.findall(r"number of failed transactions: (\d+)", out + lout))
    b = [c for c in conns if c[0]]
    return dict(
        via=via, clients=clients, children_s=succeeded / dur, succeeded=succeeded,
        claim=by_step["claim"], finish=by_step["finish"], train=by_step["train"], level=level_ms,
        finishes_logged=len(by_step["finish"]), conns_max=max((c[0] for c in b), default=0),
        active_max=max((c[1] for c in b), default=0), errors=errors, failed=failed,
        client_ms=client_s / max(1, succeeded) * 1000, server_ms=(server_s - bouncer_s) / max(1, succeeded) * 1000,
        bouncer_ms=bouncer_s / max(1, succeeded) * 1000, busy=(busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
        commands=per_command(out), rc=pw.returncode or pl.returncode, tps=re.findall(r"tps = ([\d.]+)", out)[:1],
        window_s=window, connect_ms=re.findall(r"initial connection time = ([\d.]+) ms", out)[:1], **chk,
    )  # fmt: skip


def bouncer_cpu() -> float:
    return store_load.cpu_of_tree(store_load.BOUNCER_PID[0]) if store_load.BOUNCER_PID[0] else 0.0


def compare_sql(url: str, data: Path) -> list[str]:
    """The store's statements for one child and a level wait against this script's, as the
    server logs them (log_statement = all), with numbers and worker names blanked and trailing
    semicolons dropped: a unified diff, empty when they are the same."""
    import difflib

    from sqlalchemy import text

    from shared.jobs import EpochMetrics, TrainResult
    from shared.store import Store

    def logged(text_: str) -> list[str]:
        found = re.findall(r"LOG:  statement: (.*?)(?=\n\S|\Z)", text_, re.S)
        out = [re.sub(r"\b\d+\b", "N", re.sub(r"'(w|pgb-[^']*)'", "'W'", st)).rstrip().rstrip(";").rstrip() for st in found]
        return [st for st in out if st not in ("ROLLBACK",) and not st.startswith(("select ", "SET ", "show "))]

    admin, w = Store(url), Store(url, pool_size=1)
    run_id = store_load.new_run(admin, 50)
    with admin.engine.begin() as c:
        c.execute(text("insert into workers (name, started_at, last_seen) values ('pgb-t-0', now(), now())"))
    m = EpochMetrics(epoch=1, loss=1.0, accuracy=0.5, val_loss=1.0, val_accuracy=0.5, seconds=1.0)
    res = TrainResult(0.5, 1, [m], 1000, 1.0, "sim")
    job, att = w.claim_next(worker="w", lease_seconds=150, run_id=run_id)  # warm: worker row, dialect queries
    w.finish(job, attempt=att, result=res)
    with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("alter system set log_statement = 'all'"))
        c.execute(text("select pg_reload_conf()"))
    time.sleep(0.5)
    log = data.parent / "log"
    n0 = len(log.read_text())
    job, att = w.claim_next(worker="w", lease_seconds=150, run_id=run_id)
    w.heartbeat(job, attempt=att, worker="w", lease_seconds=150)
    w.add_epoch(job, attempt=att, metrics=m)
    w.finish(job, attempt=att, result=res)
    w.level_progress(run_id, 1)
    time.sleep(0.3)
    n1 = len(log.read_text())
    tmp = Path(tempfile.mkdtemp(prefix="pnas-pgbench-"))
    (tmp / "w.sql").write_text(worker_script(0))
    (tmp / "l.sql").write_text(tx(*LEVEL_PROGRESS) + "\n")
    base = [pgbench_exe(), "-n", "-M", "simple", "-c", "1", "-D", f"run_id={run_id}"]
    subprocess.run(base + ["-t", "5", "-D", "step=4", "-D", "c_id=0", "-D", "worker_tag=t", "-f", str(tmp / "w.sql"), url], check=True, capture_output=True)
    subprocess.run(base + ["-t", "1", "-f", str(tmp / "l.sql"), url], check=True, capture_output=True)
    time.sleep(0.3)
    text_ = log.read_text()
    shutil.rmtree(tmp, ignore_errors=True)
    w.dispose()
    admin.dispose()
    return list(difflib.unified_diff(logged(text_[n0:n1]), logged(text_[n1:]), "store", "pgbench", lineterm="", n=0))


def p(xs: list[float], q: float) -> str:
    return f"{pct(xs, q):.1f}" if xs else "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="50,200,1000", help="concurrent pgbench clients (simulated workers) per phase")
    ap.add_argument("--via", choices=["direct", "pgbouncer", "both"], default="both", help="direct runs only where --max-connections allows")
    ap.add_argument("--children", type=int, default=100_000, help="queued children per phase's run")
    ap.add_argument("--seconds", type=int, default=20, help="length of each phase")
    ap.add_argument("--train", type=float, default=1.0, help="simulated training per child, seconds (store_load.py's default)")
    ap.add_argument("--threads", type=int, default=4, help="pgbench -j")
    ap.add_argument("--level-hz", type=float, default=2.0, help="the controller's level wait, queries per second")
    ap.add_argument("--max-connections", type=int, default=100, help="the private cluster's (PostgreSQL's default)")
    ap.add_argument("--pool", type=int, default=20, help="PgBouncer's server connections")
    ap.add_argument("--compare-sql", action="store_true", help="only: the store's statements against this script's, as the server logs them")
    ap.add_argument("--no-ping", action="store_true", help="leave out the pool's pre-ping (SELECT 1): not what the store sends today")
    a = ap.parse_args()
    exe = pgbench_exe()
    counts = [int(x) for x in a.clients.split(",")]
    vias = ["pgbouncer", "direct"] if a.via == "both" else [a.via]
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"# store_load_pgbench: {machine()}; {version}; {a.children} queued children per run, {a.seconds} s per phase, "
          f"{a.train:.2f} s simulated training per child, pgbench -j {a.threads}, level wait {a.level_hz:g}/s, PgBouncer pool {a.pool}{'; NO pre-ping' if a.no_ping else ''}")  # fmt: skip
    results = []
    with store_load.private_cluster(a.max_connections) as (pg_url, data):
        from shared.store import Store

        store_load.PG_DATA[:] = [data]
        s = Store(pg_url)
        s.upgrade()
        s.dispose()
        pg_port = int(pg_url.rsplit(":", 1)[1].split("/")[0])
        if a.compare_sql:
            diff = compare_sql(pg_url, data)
            print("\n".join(diff) if diff else "# the store and this script send the same statements (claim, heartbeat, epoch, finish, level wait)")
            return
        print("| via | clients | children/s | claim p50 / p99 ms | finish p50 / p99 ms | level wait p99 ms | connections (active) | errors | lost / doubled / running | CPU ms per child: pgbench / PostgreSQL / PgBouncer | machine busy | load |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for via in vias:
            ns = [n for n in counts if via == "pgbouncer" or n + 5 <= a.max_connections]
            for n in sorted(set(counts) - set(ns)):
                print(f"| {via} | {n} | not run: over the cluster's max_connections = {a.max_connections} | | | | | | | | | |")
            if not ns:
                continue
            bouncer = (
                store_load.pgbouncer(pg_port, pool_size=a.pool, max_clients=max(ns) + 100)
                if via == "pgbouncer"
                else contextlib.nullcontext(pg_url)
            )
            with bouncer as url:
                for n in ns:
                    r = phase(url, pg_url, via=via, clients=n, children=a.children, seconds=a.seconds,
                              train_ms=round(a.train * 1000), threads=a.threads, level_hz=a.level_hz, ping=not a.no_ping)  # fmt: skip
                    results.append(r)
                    running = r["states"].get("running", 0)
                    print(
                        f"| {via} | {n} | {r['children_s']:.0f} | {p(r['claim'], .5)} / {p(r['claim'], .99)} | "
                        f"{p(r['finish'], .5)} / {p(r['finish'], .99)} | {p(r['level'], .99)} | {r['conns_max']} ({r['active_max']}) | "
                        f"{r['failed'] + len(r['errors'])} | {r['lost']} / {r['doubled']} / {running} | "
                        f"{r['client_ms']:.1f} / {r['server_ms']:.1f} / {r['bouncer_ms']:.1f} | {r['busy']:.0%} | {os.getloadavg()[0]:.1f} |",
                        flush=True,
                    )
                    for line in r["errors"][:3]:
                        print(f"|  | | error: {line[:160]} | | | | | | | | | |", flush=True)
    print("\n# checks: succeeded = finishes pgbench completed; workers whose row the claim touched; pgbench rc; "
          "min 'train' step ms (the step count lines up when it is >= the training)")  # fmt: skip
    for r in results:
        print(f"# {r['via']} {r['clients']}: succeeded {r['succeeded']} / finishes {r['finishes_logged']}; "
              f"queued left {r['states'].get('queued', 0)}; workers touched {r['touched']} of {r['clients']}; rc {r['rc']}; "
              f"train step min {min(r['train'], default=float('nan')):.0f} ms; pgbench tps {r['tps']}, initial connection time ms {r['connect_ms']}; "
              f"first transaction start to last end {r['window_s']:.1f} s")  # fmt: skip
    print("\n# mean latency per statement, ms (pgbench -r)")
    print("| statement | " + " | ".join(f"{r['via']} {r['clients']}" for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for i, (_, _, cmd) in enumerate(results[0]["commands"] if results else []):
        cells = " | ".join(f"{r['commands'][i][0]:.2f}" if i < len(r["commands"]) else "" for r in results)
        print(f"| `{cmd[:70]}` | {cells} |")


if __name__ == "__main__":
    main()
