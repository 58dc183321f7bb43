"""Does throughput grow with the number of workers? (Celery + Redis + PostgreSQL)

48 fixed-length children (the instant trainer sleeping ``--sleep`` seconds, 2 by default, so
that the CPUs are not what limits) through the real Celery path with 1, 2 and 4 real
`pnas worker --gpu none` processes (one child per fresh pool process, as in production).

For each worker count: a run with a fixed config is created in the store, its 48 jobs
inserted, the workers started and waited for until subscribed, then the clock starts, the
48 jobs are sent by `controller.celery_executor.CeleryExecutor` and the bench polls the store
as the controller does until all 48 succeeded. Throughput = 48 / that time; ideal =
workers / sleep children/s; efficiency = throughput / ideal. The gap is what each child
costs beyond its sleep (queue, claim, fenced writes, the fresh pool process):
``overhead/child = workers * time / 48 - sleep``.

The jobs are inserted and sent directly rather than through a `pnas search` so that the
clock holds only the queue and the workers: no predictor fit, no level barrier, and
exactly 48 children for every worker count.

    .venv/bin/python bench/scaling.py [--workers 1,2,4] [--children 48] [--sleep 2] [--rounds 1]

Uses a fresh PostgreSQL database on 127.0.0.1:5432 (created, then dropped) and Redis
database ``--redis-db`` (12 by default), which it empties. The last line is the summary.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ROOT, fresh_pg_database, machine, start_pnas_workers, stop_workers, wait_ready  # noqa: E402


def one(store, settings, cfg, jobs, n_workers: int, *, sleep: float, env: dict, logdir: Path, tag: str) -> dict:
    """Time ``jobs`` (cells) through ``n_workers`` fresh workers; returns the figures."""
    import redis

    from controller.celery_executor import CeleryExecutor

    redis.Redis.from_url(settings.broker_url).flushdb()
    run, _ = store.create_run(name=tag, config=cfg.model_dump(mode="json"), seed=0)
    ids = store.add_jobs(run.id, level=2, children=jobs, max_attempts=1)
    procs = start_pnas_workers(n_workers, env, tag=tag, logdir=logdir)
    try:
        wait_ready(procs, logdir)
        executor = CeleryExecutor(settings)
        executor.start(run.id)
        t0 = time.perf_counter()
        executor.submit(ids)
        while True:
            counts = store.level_progress(run.id, 2)["counts"]
            if counts["failed"] or counts["lost"]:
                raise RuntimeError(f"children failed: {counts}; see the logs in {logdir}")
            if counts["succeeded"] == len(ids):
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
    finally:
        stop_workers(procs)
    done = store.jobs(run.id)
    per_worker = Counter(j.worker for j in done)
    thr = len(ids) / seconds
    ideal = n_workers / sleep
    return {
        "workers": n_workers,
        "seconds": seconds,
        "throughput": thr,
        "ideal": ideal,
        "efficiency": thr / ideal,
        "overhead": n_workers * seconds / len(ids) - sleep,
        "balance": sorted(per_worker.values(), reverse=True),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    ap.add_argument("--children", type=int, default=48)
    ap.add_argument("--sleep", type=float, default=2.0, help="seconds each child takes (PNAS_FAKE_SLEEP)")
    ap.add_argument("--rounds", type=int, default=1, help="repeat; odd rounds go up, even rounds down")
    ap.add_argument("--redis-db", type=int, default=12, help="Redis database number, emptied")
    args = ap.parse_args()
    counts = [int(x) for x in args.workers.split(",")]

    from shared.config import build_config
    from shared.settings import Settings
    from shared.store import Store

    # epochs=1: the fake trainer sleeps PNAS_FAKE_SLEEP / epochs per epoch, so 2 s in all.
    cfg, _ = build_config(preset="quick", overrides=dict(blocks=2, train={"epochs": 1}))
    space = cfg.space()
    batch = space.expand(space.one_block_cells())
    assert len(batch) >= args.children, f"only {len(batch)} distinct cells"
    jobs = [(batch.ids([r])[0], batch.cell(r).to_list(), None, None) for r in range(args.children)]
    broker = f"redis://127.0.0.1:6379/{args.redis_db}"
    logdir = Path(tempfile.mkdtemp(prefix="pnas-bench-scaling-"))

    results: dict[int, list[dict]] = {n: [] for n in counts}
    with fresh_pg_database("pnas_bench_scaling") as db_url:
        settings = Settings(database_url=db_url, broker_url=broker)
        store = Store(db_url)
        store.ensure_schema(auto_upgrade=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "PYTHONPATH": str(ROOT),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PNAS_DATABASE_URL": db_url,
            "PNAS_BROKER_URL": broker,
            "PNAS_TRAINER": "tests.fakes:instant_trainer",
            "PNAS_FAKE_SLEEP": str(args.sleep),
        }
        try:
            for rnd in range(args.rounds):
                for n in counts if rnd % 2 == 0 else counts[::-1]:
                    r = one(store, settings, cfg, jobs, n, sleep=args.sleep, env=env, logdir=logdir, tag=f"scaling-r{rnd}-w{n}")
                    results[n].append(r)
                    print(
                        f"round {rnd + 1} workers {n}: {args.children} children in {r['seconds']:.1f} s, "
                        f"{r['throughput']:.3f} children/s (ideal {r['ideal']:.3f}), efficiency {r['efficiency'] * 100:.0f}%, "
                        f"overhead {r['overhead']:.2f} s/child, children per worker {r['balance']}",
                        flush=True,
                    )
        finally:
            store.dispose()

    parts = []
    for n in counts:
        thr = statistics.median(r["throughput"] for r in results[n])
        eff = statistics.median(r["efficiency"] for r in results[n])
        ovh = statistics.median(r["overhead"] for r in results[n])
        parts.append(f"{n} worker{'s' if n > 1 else ''} {thr:.3f}/s ({eff * 100:.0f}%, +{ovh:.2f} s/child)")
    print(
        f"summary: {args.children} children of {args.sleep:g} s through Celery+Redis+PostgreSQL, throughput "
        f"(efficiency vs workers/{args.sleep:g} s, overhead per child): {'; '.join(parts)}; "
        f"{args.rounds} round(s); {machine()}"
    )


if __name__ == "__main__":
    main()
