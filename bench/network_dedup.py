"""Does a search train any network twice? And what do network ids cost?

1. The cost: `SearchSpace.distinct_counts` (what `pnas space` adds: every level's candidates
   and their distinct networks, on a concrete beam) for the paper's space, B=5, K=256; and
   at b=5 the expansion alone beside the network ids of the same expansion.
2. The check: a paper-setting search (8 operators, B=5, K=256: 1,160 children) with the
   instant trainer (`tests/fakes.py`) and the local executor, into a fresh SQLite file. Then,
   from the database, every search child's network is recomputed by brute force (the
   smallest arch id over every order of its blocks, independent of `shared.space.network`)
   and the children per network are counted: a duplicate is a child whose network an
   earlier child of the run already was.

    .venv/bin/python bench/network_dedup.py                       # the paper's B=5, K=256
    .venv/bin/python bench/network_dedup.py --blocks 3 --beam 32  # a smaller check

The predictor is the run's choice (``--predictor``, ``--ensemble``, ``--predictor-epochs``);
a smaller one changes which children are picked, not whether one is picked twice.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ROOT, machine  # noqa: E402
from shared.space import Cell, SearchSpace  # noqa: E402
from shared.space.network import equivalent_cells  # noqa: E402


def cost(space: SearchSpace, beam: int) -> None:
    import numpy as np

    t = time.perf_counter()
    counts = space.distinct_counts(beam)
    total = time.perf_counter() - t
    print(f"distinct_counts(B={space.blocks}, K={beam}): {total:.3f} s  {counts}")
    # Level B's beam two ways: K random cells (any search's beam is spread like this) and the
    # first K in enumeration order, crowded with repeated blocks that later blocks read (the
    # worst case: most candidates need the exact twin path).
    rng = np.random.default_rng(0)
    for name in ("random", "crowded"):
        batch = space.one_block_cells()
        for _ in range(space.blocks - 2):
            batch = space.expand(batch)
            rows = rng.choice(len(batch), size=beam, replace=False) if name == "random" else np.arange(beam)
            batch = batch.take(np.sort(rows))
        t = time.perf_counter()
        space.expand(batch)
        t_expand = time.perf_counter() - t
        t = time.perf_counter()
        nets = space.expand_networks(batch)
        t_ids = time.perf_counter() - t
        print(f"level {space.blocks}, {name} beam: expand {t_expand * 1000:.0f} ms, network ids of the same "
              f"{len(nets):,} candidates {t_ids * 1000:.0f} ms ({len(set(nets.tolist())):,} distinct)")  # fmt: skip


def search(args, db: Path) -> float:
    cfg = db.with_suffix(".toml")
    cfg.write_text(
        f'blocks = {args.blocks}\nbeam = {args.beam}\npredictor = "{args.predictor}"\nensemble = {args.ensemble}\n'
        f'predictor_epochs = {args.predictor_epochs}\nseed = {args.seed}\n[train]\ndataset = "digits"\n'
        'validation_size = 0.2\nepochs = 1\n'
    )
    from tests.fakes import fake_search_env

    env = fake_search_env(f"sqlite:///{db}")
    t = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "pnas.cli", "search", "--config", str(cfg), "--name", "dedup", "--workers", str(args.workers)],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if p.returncode != 0:
        sys.exit(f"search failed:\n{p.stderr[-3000:]}")
    return time.perf_counter() - t


def check(db: Path) -> None:
    from shared.store import Store

    store = Store(f"sqlite:///{db}")
    run = store.require_run("dedup")
    jobs = store.jobs(run.id)
    levels = store.levels(run.id)
    store.dispose()
    seen: set[int] = set()
    dups: Counter[int] = Counter()
    for j in jobs:
        label = min(c.hash64 for c in equivalent_cells(Cell.from_json(j.cell)))
        if label in seen:
            dups[j.level] += 1
        seen.add(label)
    print(f"{len(jobs)} search children, {len(seen)} distinct networks (brute force); "
          f"{sum(dups.values())} trained twice {dict(sorted(dups.items()))}; "
          f"distinct network_id values stored: {len({j.network_id for j in jobs})}")  # fmt: skip
    for lv in levels:
        took = (lv.finished_at - lv.started_at).total_seconds() if lv.finished_at else float("nan")
        print(f"  level {lv.b}: {lv.candidates:,} candidates, {lv.distinct_candidates:,} distinct networks scored; "
              f"{took:.0f} s from its start to its end (its children, then the fit after it)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--beam", type=int, default=256)
    ap.add_argument("--predictor", default="lstm")
    ap.add_argument("--ensemble", type=int, default=5)
    ap.add_argument("--predictor-epochs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-search", action="store_true", help="only the cost figures")
    args = ap.parse_args()
    print(machine())
    cost(SearchSpace(blocks=args.blocks), args.beam)
    if args.skip_search:
        return
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "dedup.db"
        took = search(args, db)
        print(f"search: {took:.0f} s")
        check(db)


if __name__ == "__main__":
    main()
