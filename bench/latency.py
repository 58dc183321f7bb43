"""Latency predicted from a table (`shared.latency`) against the measured latency of built networks.

On this machine: measure a table (`worker.latency.measure_table`) for one network's settings,
then build networks of every level (b = 1..B) with the worker's builder, measure each (batch
1, the median of timed calls after warm-up, as the table's pieces) and compare. The networks
of a level are its cheapest, middle and costliest predicted ones among random candidates, so
they span the level's sizes. Prints each network side by side and the median and worst
relative error |predicted - measured| / measured, and Spearman's rank correlation.

    .venv/bin/python bench/latency.py [--dataset digits -F 8 -N 1] [--clock wall|cpu] [--threads N] [--json]
    .venv/bin/python bench/latency.py --speed   # predicting a whole b=5 expansion (no TensorFlow)

``--clock cpu --threads 1`` times this process's CPU time on one TensorFlow thread: on a
machine that other work loads, the time spent waiting for a core is left out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from shared.latency import predict_latency  # noqa: E402
from shared.space import SearchSpace  # noqa: E402
from shared.space.cost import KNOWN_SHAPES, NetworkSpec  # noqa: E402


def spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def pick(space: SearchSpace, spec: NetworkSpec, table, per_level: int, seed: int):
    """Per level: the cheapest, costliest and evenly spaced predicted networks of a random sample."""
    rng = np.random.default_rng(seed)
    batch = space.one_block_cells()
    for b in range(1, space.blocks + 1):
        if b > 1:
            batch = space.expand(batch.take(rng.choice(len(batch), size=min(8, len(batch)), replace=False)))
        sample = batch.take(np.sort(rng.choice(len(batch), size=min(200, len(batch)), replace=False)))
        pred = predict_latency(sample.tokens, space.ops, spec, table)
        order = np.argsort(pred, kind="stable")
        for r in sorted({int(order[round(q * (len(order) - 1))]) for q in np.linspace(0, 1, per_level)}):
            yield b, sample.cell(r), float(pred[r])


def compare(spec: NetworkSpec, ops, blocks: int, *, per_level: int, repeats: int, clock: str, seed: int = 0) -> dict:
    import keras

    from worker.latency import measure_table, threads, time_model
    from worker.network import build_network

    t0 = time.perf_counter()
    table = measure_table(spec, ops, blocks, device="this machine", repeats=repeats, clock=clock)
    table_s = time.perf_counter() - t0
    rows = []
    for b, cell, predicted in pick(SearchSpace(ops=ops, blocks=blocks), spec, table, per_level, seed):
        model = build_network(cell, input_shape=spec.input_shape, num_classes=spec.num_classes, stem=spec.stem,
                              cells_per_stage=spec.cells_per_stage, filters=spec.filters)  # fmt: skip
        measured = time_model(model, repeats=repeats, clock=clock)
        keras.backend.clear_session()
        rows.append({"b": b, "cell": cell.readable(), "predicted_ms": predicted, "measured_ms": measured})
    pred = np.array([r["predicted_ms"] for r in rows])
    real = np.array([r["measured_ms"] for r in rows])
    err = np.abs(pred - real) / real
    return {
        "network": table.network, "machine": table.machine, "tensorflow": table.tensorflow, "clock": clock,
        "threads": threads(), "repeats": repeats, "pieces": len(table.entries), "table_seconds": round(table_s, 1),
        "rows": rows, "median_error": float(np.median(err)), "worst_error": float(err.max()),
        "max_ratio": float(np.max(np.maximum(pred / real, real / pred))), "spearman": spearman(pred, real),
    }  # fmt: skip


def speed() -> None:
    """Predict every b=5 candidate of a random 256-cell beam (the paper's 8 operators, CIFAR-10
    F=24 N=2) from a table with an entry for every piece; median of 5 runs."""
    from shared.latency import LatencyTable, network_settings, table_pieces
    from shared.space import PAPER_OPS

    spec = NetworkSpec((32, 32, 3), 10, 24, 2)
    entries = {p.key: (0.01 if p.kind == "join" else p.flops() / 1e7) for p in table_pieces(spec, PAPER_OPS, 5)}
    table = LatencyTable("synthetic", "-", "-", network_settings(spec, PAPER_OPS, 5), 0.1, entries)
    space = SearchSpace(ops=PAPER_OPS, blocks=5)
    rng = np.random.default_rng(0)
    batch = space.one_block_cells()
    for _ in range(3):
        batch = space.expand(batch.take(rng.choice(len(batch), size=min(256, len(batch)), replace=False)))
    beam = batch.take(rng.choice(len(batch), size=256, replace=False))
    expanded = space.expand(beam)
    t0 = time.perf_counter()
    predict_latency(expanded.tokens[:1], PAPER_OPS, spec, table)  # the per-(network, b) tables, once
    first = time.perf_counter() - t0
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        predict_latency(expanded.tokens, PAPER_OPS, spec, table)
        runs.append(time.perf_counter() - t0)
    print(f"b=5 expansion: {len(expanded):,} candidates predicted in {statistics.median(runs):.3f} s "
          f"(median of 5; min {min(runs):.3f} s; the tables once per (table, network, b): {first:.3f} s; {len(entries)} pieces)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits", choices=sorted(KNOWN_SHAPES))
    ap.add_argument("-F", "--filters", type=int, default=8)
    ap.add_argument("-N", "--n", type=int, default=1)
    ap.add_argument("--ops", default="sep3x3,max3x3,identity")
    ap.add_argument("-B", "--blocks", type=int, default=3)
    ap.add_argument("--per-level", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: its default)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--speed", action="store_true", help="only time the prediction of a b=5 expansion")
    args = ap.parse_args()
    if args.speed:
        speed()
        return
    from worker.latency import set_threads

    if args.threads:
        set_threads(args.threads)
    shape, classes = KNOWN_SHAPES[args.dataset]
    spec = NetworkSpec(shape, classes, args.filters, args.n)
    ops = tuple(args.ops.split(","))
    out = compare(spec, ops, args.blocks, per_level=args.per_level, repeats=args.repeats, clock=args.clock)
    if args.json:
        print(json.dumps(out))
        return
    print(f"{args.dataset} F={args.filters} N={args.n} ops {args.ops} B<={args.blocks}; {out['machine']}, "
          f"TensorFlow {out['tensorflow']}, {out['clock']} clock, {out['threads']}, batch 1, median of {args.repeats}")  # fmt: skip
    print(f"table: {out['pieces']} pieces in {out['table_seconds']} s")
    print(f"{'b':>2} {'predicted ms':>13} {'measured ms':>12} {'error':>7}  cell")
    for r in out["rows"]:
        e = (r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"]
        print(f"{r['b']:>2} {r['predicted_ms']:>13.3f} {r['measured_ms']:>12.3f} {e:>+7.0%}  {r['cell']}")
    print(f"relative error: median {out['median_error']:.0%}, worst {out['worst_error']:.0%}; "
          f"Spearman {out['spearman']:.2f} over {len(out['rows'])} networks")
    print(f"(median of {statistics.median([r['measured_ms'] for r in out['rows']]):.3f} ms measured)")


if __name__ == "__main__":
    main()
