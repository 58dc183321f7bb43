"""What does the queue itself cost per child? (Celery + Redis + PostgreSQL, 2 workers)

Zero-epoch children with a trainer that returns at once, sent by the Celery executor with two
in flight (one per worker), each timed from enqueue to the moment a controller-style poll of
the database sees it succeeded. Three measurements, so that the parts can be told apart:

- warm pool: workers that reuse one pool process (``--max-tasks-per-child 1000000``): queue +
  database only (send, Redis, claim, finish, poll);
- fresh process: real `pnas worker` settings (one child per fresh process): adds the pool's
  process replacement; "process start" = fresh - warm;
- TensorFlow import: ``import tensorflow`` in fresh interpreters, which a real child pays once
  (the trainer imports it inside the pool child).

    PNAS_DATABASE_URL=postgresql://... PNAS_BROKER_URL=redis://127.0.0.1:6379/13 \\
    .venv/bin/python bench/queue_overhead.py [--children 200] [--fresh 200] [--tf-imports 5]

The bench empties the Redis database of PNAS_BROKER_URL. The last line is the summary.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.jobs import TrainResult  # noqa: E402


def zero_epoch_trainer(cell, train, *, seed=0, on_epoch=None, log=None, **_):
    """Loaded in the workers through PNAS_TRAINER=bench.queue_overhead:zero_epoch_trainer."""
    return TrainResult(reward=0.5, reward_epoch=0, history=[], params=0, wall_seconds=0.0, device="bench")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def start_workers(n: int, env: dict, *, warm: bool, logdir: Path) -> list[subprocess.Popen]:
    procs = []
    for i in range(n):
        name = f"bench{i}-{os.getpid()}-{'warm' if warm else 'fresh'}@bench"
        if warm:
            cmd = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool", "prefork",
                   "--concurrency", "1", "--max-tasks-per-child", "1000000", "--hostname", name, "--loglevel", "WARNING",
                   "--without-mingle", "--without-gossip"]  # fmt: skip
        else:
            cmd = [sys.executable, "-m", "pnas.cli", "worker", "--gpu", "none", "--name", name, "--loglevel", "WARNING"]
        log = open(logdir / f"{name}.log", "w")
        procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    return procs


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def measure(store, executor, run_id: int, job_ids: list[int], *, in_flight: int = 2) -> list[float]:
    """Enqueue-to-seen seconds per child, keeping ``in_flight`` children outstanding."""
    pending, sent, out = list(job_ids), {}, []
    while pending or sent:
        while pending and len(sent) < in_flight:
            j = pending.pop(0)
            sent[j] = time.perf_counter()
            executor.submit([j])
        done = [j.id for j in store.jobs(run_id, ids=list(sent), kind=None) if j.state == "succeeded"]
        now = time.perf_counter()
        for j in done:
            out.append(now - sent.pop(j))
        if not done:
            time.sleep(0.002)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--children", type=int, default=200, help="children through the warm pool")
    ap.add_argument("--fresh", type=int, default=200, help="children through fresh processes")
    ap.add_argument("--tf-imports", type=int, default=5)
    args = ap.parse_args()

    import redis

    from controller.celery_executor import CeleryExecutor
    from shared.config import build_config
    from shared.settings import get_settings
    from shared.store import Store

    settings = get_settings()
    if not settings.broker_url or not settings.database_url.startswith("postgres"):
        sys.exit("set PNAS_DATABASE_URL (PostgreSQL) and PNAS_BROKER_URL (Redis)")
    redis.Redis.from_url(settings.broker_url).flushdb()
    store = Store.from_settings(settings)
    store.ensure_schema(auto_upgrade=True)
    cfg, _ = build_config(preset="quick", overrides=dict(blocks=2, train={"epochs": 0}))
    space = cfg.space()
    batch = space.expand(space.one_block_cells())
    need = args.children + args.fresh
    assert len(batch) >= need, f"only {len(batch)} distinct cells"
    run, _ = store.create_run(name=f"bench-queue-{os.getpid()}", config=cfg.model_dump(mode="json"), seed=0)
    ids = store.add_jobs(
        run.id, level=2, children=[(batch.ids([r])[0], batch.cell(r).to_list(), None, None) for r in range(need)], max_attempts=1
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PNAS_TRAINER": "bench.queue_overhead:zero_epoch_trainer"}
    executor = CeleryExecutor(settings)
    executor.start(run.id)
    logdir = Path(tempfile.mkdtemp(prefix="pnas-bench-"))

    results = {}
    for label, warm, chunk in (("warm", True, ids[: args.children]), ("fresh", False, ids[args.children :])):
        if not chunk:
            continue
        procs = start_workers(2, env, warm=warm, logdir=logdir)
        try:
            time.sleep(1.0)
            deadline = time.monotonic() + 60
            while len([w for w in store.workers() if label in w["name"] and w["seconds_ago"] < 5]) < 2:
                if time.monotonic() > deadline:
                    sys.exit(f"workers did not start; see {logdir}")
                time.sleep(0.2)
            time.sleep(1.0)
            measure(store, executor, run.id, chunk[:4])  # warm-up: first process fork, DB pools
            results[label] = measure(store, executor, run.id, chunk[4:])
        finally:
            stop_workers(procs)
        xs = results[label]
        print(f"{label:5}: {len(xs)} children, enqueue->seen p50 {pct(xs, .5) * 1000:.0f} ms, p95 {pct(xs, .95) * 1000:.0f} ms")

    tf = []
    for _ in range(args.tf_imports):
        code = "import time; t = time.perf_counter(); import tensorflow; print(time.perf_counter() - t)"
        res = subprocess.run([sys.executable, "-c", code], env={**env, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""},
                             capture_output=True, text=True)  # fmt: skip
        tf.append(float(res.stdout.strip().splitlines()[-1]))
    print(f"tf   : import tensorflow in a fresh interpreter, {len(tf)} runs, p50 {pct(tf, .5):.2f} s, p95 {pct(tf, .95):.2f} s")
    w, f = results.get("warm", [0.0]), results.get("fresh", [0.0])
    print(
        f"summary: queue+database p50 {pct(w, .5) * 1000:.0f} ms p95 {pct(w, .95) * 1000:.0f} ms per child; "
        f"process start (fresh - warm) p50 {(pct(f, .5) - pct(w, .5)) * 1000:.0f} ms p95 {(pct(f, .95) - pct(w, .95)) * 1000:.0f} ms; "
        f"TensorFlow import p50 {pct(tf, .5):.2f} s p95 {pct(tf, .95):.2f} s (2 workers, Celery+Redis+PostgreSQL, 2-core CPU)"
    )


if __name__ == "__main__":
    main()
