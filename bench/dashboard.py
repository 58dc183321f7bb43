"""How fast the dashboard answers on a run of 10,000 children on PostgreSQL.

Seeds a throw-away database through the store (`add_jobs`, then one bulk update of results
in the store's transaction helper), then asks every page, fragment and API route of the
dashboard's application in process (Starlette's test client: the application's own time,
no network), N times each, with the migration 0007 indexes and again without them.

    PYTHONPATH=$PWD .venv/bin/python bench/dashboard.py [--children 10000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import fresh_pg_database, machine, pct  # noqa: E402

LEVELS = 5
FIRST_LEVEL = 100  # of the 136 distinct one-block networks of 8 operators


def seed(store, children: int) -> tuple[int, int, int]:
    """A run with ``children`` search children over 5 levels, mostly succeeded, some failed,
    a few running and queued; 20 workers; one child with 20 epochs. Returns (run, child, failed)."""
    from sqlalchemy import update

    from shared.db.models import ChildJob
    from shared.jobs import EpochMetrics, JobState
    from shared.space import Cell
    from shared.space.network import network_id

    rng = random.Random(0)
    ops = ["sep3x3", "sep5x5", "sep7x7", "max3x3", "avg3x3", "identity", "dil3x3", "conv7x1"]
    run, _ = store.create_run(name="bench", config={"strategy": "pnas", "blocks": LEVELS, "beam": children // LEVELS,
                                                   "train": {"dataset": "cifar10"}}, seed=0)  # fmt: skip
    # as in a search: level 1 holds the few distinct one-block networks, the rest share the others
    sizes = [FIRST_LEVEL] + [(children - FIRST_LEVEL) // (LEVELS - 1)] * (LEVELS - 1)
    sizes[-1] += children - sum(sizes)
    for b, per_level in enumerate(sizes, start=1):
        store.start_level(run.id, b, candidates=per_level * 40)
        seen: set[str] = set()  # one child per network, as the database enforces
        rows = []
        while len(rows) < per_level:
            blocks = [[rng.choice([-2, -1, *range(k)]), rng.choice(ops), rng.choice([-2, -1, *range(k)]), rng.choice(ops)]
                      for k in range(b)]  # fmt: skip
            cell = Cell.of(blocks, ops)
            if network_id(cell) in seen:
                continue
            seen.add(network_id(cell))
            rows.append((cell.arch_id, cell.to_list(), rng.uniform(0.5, 0.95) if b > 1 else None, len(rows) + 1 if b > 1 else None))
        ids = store.add_jobs(run.id, level=b, children=rows, max_attempts=3)
        now = store.db_now()
        results = []
        for i, jid in enumerate(ids):
            last_level = b == LEVELS
            state = JobState.succeeded.value
            if i % 50 == 7:
                state = JobState.failed.value
            elif last_level and i % 10 == 3:
                state = JobState.running.value
            elif last_level and i % 10 == 4:
                state = JobState.queued.value
            done = state in (JobState.succeeded.value, JobState.failed.value)
            results.append(dict(
                id=jid, state=state, attempts=1 if state != JobState.queued.value else 0,
                worker=f"worker-{i % 20}" if state != JobState.queued.value else None,
                reward=rng.uniform(0.5, 0.95) if state == JobState.succeeded.value else None,
                params=rng.randint(100_000, 3_000_000) if done else None,
                wall_seconds=rng.uniform(300, 900) if done else None,
                started_at=now, finished_at=now if done else None,
                error_class="RuntimeError" if state == JobState.failed.value else None,
                error_message="planted" if state == JobState.failed.value else None,
            ))  # fmt: skip
        with store._tx() as s:  # the store's one transaction helper; a bulk update by primary key
            s.execute(update(ChildJob), results)
        if b < LEVELS:
            store.finish_level(run.id, b, spearman_extrapolation=0.5, spearman_insample=0.9, predictor=None)
    for w in range(20):
        store.register_worker(f"worker-{w}", hostname="bench", device="GPU:0")
    child = store.top(run.id, k=1)[0].id
    failed = store.jobs(run.id, states=["failed"])[0].id
    for e in range(1, 21):
        store.add_epoch(child, attempt=1, metrics=EpochMetrics(epoch=e, loss=1 / e, accuracy=1 - 1 / (e + 1),
                                                               val_loss=1.1 / e, val_accuracy=0.9 - 1 / (e + 2), seconds=30.0))  # fmt: skip
    return run.id, child, failed


def measure(client, paths: list[str], repeat: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for p in paths:
        r = client.get(p)  # warm-up (and the diagram's first drawing, cached afterwards)
        assert r.status_code == 200, (p, r.status_code, r.text[:300])
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            r = client.get(p)
            times.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200
        out[p] = times
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--children", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()

    from sqlalchemy import text
    from starlette.testclient import TestClient

    from pnas.dashboard import create_app
    from shared.settings import Settings
    from shared.store import Store

    with fresh_pg_database("pnas_bench_dash") as url:
        store = Store(url, pool_size=4)
        store.upgrade()
        t0 = time.perf_counter()
        rid, child, failed = seed(store, args.children)
        print(f"seeded {args.children} children in {time.perf_counter() - t0:.1f}s; {machine()}")
        with store._tx() as s:
            s.execute(text("ANALYZE"))
        paths = [
            "/", "/api/runs", f"/runs/{rid}", f"/api/runs/{rid}", f"/part/runs/{rid}",
            f"/api/runs/{rid}/children", f"/api/runs/{rid}/children?sort=accuracy&order=desc",
            f"/api/runs/{rid}/children?sort=predicted&order=desc&level=3",
            f"/api/runs/{rid}/children?state=failed&q=sep5x5", f"/part/runs/{rid}/children?sort=accuracy&order=desc",
            f"/children/{child}", f"/api/children/{child}", f"/api/children/{child}/diagram.svg",
            f"/children/{failed}", "/workers", "/api/workers",
        ]  # fmt: skip
        client = TestClient(create_app(store, Settings(database_url=url)))
        with_idx = measure(client, paths, args.repeat)
        with store._tx() as s:
            s.execute(text("DROP INDEX ix_jobs_run_finished"))
            s.execute(text("DROP INDEX ix_jobs_run_reward"))
            s.execute(text("ANALYZE"))
        without = measure(client, paths, args.repeat)
        store.dispose()
    print(f"\n{'path':<58} {'median ms':>10} {'p95 ms':>8}   {'no 0007 indexes: median':>24} {'p95':>6}")
    for p in paths:
        a, b = with_idx[p], without[p]
        print(f"{p:<58} {statistics.median(a):>10.1f} {pct(a, 0.95):>8.1f}   {statistics.median(b):>24.1f} {pct(b, 0.95):>6.1f}")
    worst = max(pct(v, 0.95) for v in with_idx.values())
    print(f"\nslowest p95 with the indexes: {worst:.1f} ms (target: under 200 ms)")


if __name__ == "__main__":
    main()
