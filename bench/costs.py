"""Costs computed from the cell (`shared.space.cost`) against Keras, and their speed.

1. Exactness: random cells of every level (b = 1..5, the paper's 8 operators), each built
   by the worker's builder; the computed params must equal ``count_params()`` and the
   computed multiply-adds a per-layer count read from the built model's layer shapes.
   Small networks (odd input sizes, both stems) cover every operator and input kind quickly;
   a few cells at the paper's search (F=24, N=2) and final (F=48, N=3) CIFAR sizes.
2. Speed: every b=5 candidate of a random 256-cell beam (301,056), median of 5 runs.

    .venv/bin/python bench/costs.py [--cells 40] [--paper 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from shared.space import PAPER_OPS, CellBatch, SearchSpace  # noqa: E402
from shared.space.cost import NetworkSpec, network_costs  # noqa: E402

SPACE = SearchSpace(ops=PAPER_OPS, blocks=5)


def random_tokens(rng: np.random.Generator, b: int, count: int) -> np.ndarray:
    rows = []
    for _ in range(count):
        t: list[int] = []
        for k in range(b):
            codes = SPACE.input_codes(k)
            t += [int(rng.choice(codes)), int(rng.choice(codes)), int(rng.integers(8)), int(rng.integers(8))]
        rows.append(t)
    return np.array(rows, dtype=np.int16)


def keras_counts(tokens: np.ndarray, spec: NetworkSpec) -> list[tuple[int, int]]:
    import keras

    from worker.network import build_network

    out = []
    for row in tokens:
        cell = CellBatch(SPACE, row[None, :], np.zeros(1, np.uint64), np.zeros(1, np.int32)).cell(0)
        m = build_network(cell, input_shape=spec.input_shape, num_classes=spec.num_classes, stem=spec.stem,
                          cells_per_stage=spec.cells_per_stage, filters=spec.filters)
        flops = 0
        for layer in m.layers:
            if isinstance(layer, keras.layers.SeparableConv2D):
                kh, kw, cin, _ = layer.depthwise_kernel.shape
                _, ho, wo, cout = layer.output.shape
                flops += (kh * kw * cin + cin * cout) * ho * wo
            elif isinstance(layer, keras.layers.Conv2D):
                kh, kw, cin, cout = layer.kernel.shape
                _, ho, wo, _ = layer.output.shape
                flops += kh * kw * cin * cout * ho * wo
            elif isinstance(layer, keras.layers.Dense):
                flops += layer.kernel.shape[0] * layer.kernel.shape[1]
        out.append((m.count_params(), int(flops)))
        keras.backend.clear_session()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=40, help="random cells per small network size (spread over b=1..5)")
    ap.add_argument("--paper", type=int, default=3, help="random cells per paper size")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    sizes = [
        ("cifar stem, 9x7x2, F=5 N=1", NetworkSpec((9, 7, 2), 3, 5, 1, "cifar"), args.cells),
        ("imagenet stem, 19x17x3, F=6 N=1", NetworkSpec((19, 17, 3), 10, 6, 1, "imagenet"), args.cells),
        ("digits 8x8x1, F=8 N=2", NetworkSpec((8, 8, 1), 10, 8, 2, "cifar"), args.cells),
        ("CIFAR search F=24 N=2", NetworkSpec((32, 32, 3), 10, 24, 2, "cifar"), args.paper),
        ("CIFAR final F=48 N=3", NetworkSpec((32, 32, 3), 10, 48, 3, "cifar"), args.paper),
    ]
    total = exact = 0
    for name, spec, count in sizes:
        ok = n = 0
        for i in range(count):
            tokens = random_tokens(rng, 1 + i % 5, 1)
            params, flops = network_costs(tokens, PAPER_OPS, spec)
            ok += [(int(params[0]), int(flops[0]))] == keras_counts(tokens, spec)
            n += 1
        print(f"{name}: {ok}/{n} cells exact (params and multiply-adds)")
        total, exact = total + n, exact + ok
    print(f"exact: {exact}/{total}")

    beam = CellBatch(SPACE, random_tokens(rng, 4, 256), np.zeros(256, np.uint64), np.zeros(256, np.int32))
    expanded = SPACE.expand(beam)
    spec = NetworkSpec((32, 32, 3), 10, 24, 2)
    t0 = time.perf_counter()
    network_costs(expanded.tokens[:1], PAPER_OPS, spec)
    first = time.perf_counter() - t0
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        network_costs(expanded.tokens, PAPER_OPS, spec)
        times.append(time.perf_counter() - t0)
    print(f"b=5 expansion: {len(expanded):,} candidates costed in {statistics.median(times):.3f} s "
          f"(median of 5; min {min(times):.3f} s; building the tables once per (network, b): {first:.3f} s)")


if __name__ == "__main__":
    main()
