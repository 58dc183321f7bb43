"""The costs computed from a cell (`shared.space.cost`) against the network the worker builds:
Keras' count_params() and a multiply-add count read from the built layers, for random cells
of every level, every operator and every input kind, both stems, odd image sizes."""

from __future__ import annotations

import time

import keras
import numpy as np
import pytest

from shared.space import PAPER_OPS, CellBatch, SearchSpace
from shared.space.cost import KINDS, NetworkSpec, network_costs
from worker.network import build_network

SPACE = SearchSpace(ops=PAPER_OPS, blocks=5)


def keras_flops(model: keras.Model) -> int:
    """Multiply-adds of one image in the convolutions and dense layers, from the built shapes."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.SeparableConv2D):
            kh, kw, cin, _ = layer.depthwise_kernel.shape
            cout = layer.pointwise_kernel.shape[-1]
            _, ho, wo, _ = layer.output.shape
            total += (kh * kw * cin + cin * cout) * ho * wo
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, ho, wo, _ = layer.output.shape
            total += kh * kw * cin * cout * ho * wo
        elif isinstance(layer, keras.layers.Dense):
            total += layer.kernel.shape[0] * layer.kernel.shape[1]
    return int(total)


def random_tokens(rng: np.random.Generator, b: int, count: int) -> np.ndarray:
    """(count, 4b) tokens of random b-block cells of SPACE."""
    rows = []
    for _ in range(count):
        t = []
        for k in range(b):
            codes = SPACE.input_codes(k)
            t += [int(rng.choice(codes)), int(rng.choice(codes)), int(rng.integers(len(PAPER_OPS))),
                  int(rng.integers(len(PAPER_OPS)))]
        rows.append(t)
    return np.array(rows, dtype=np.int16)


def built(tokens: np.ndarray, spec: NetworkSpec) -> list[tuple[int, int]]:
    out = []
    for row in tokens:
        cell = CellBatch(SPACE, row[None, :], np.zeros(1, np.uint64), np.zeros(1, np.int32)).cell(0)
        model = build_network(cell, input_shape=spec.input_shape, num_classes=spec.num_classes, stem=spec.stem,
                              cells_per_stage=spec.cells_per_stage, filters=spec.filters)
        out.append((model.count_params(), keras_flops(model)))
        keras.backend.clear_session()
    return out


SMALL = [
    NetworkSpec((9, 7, 2), 3, filters=5, cells_per_stage=1, stem="cifar"),  # odd sizes, odd F
    NetworkSpec((19, 17, 3), 10, filters=6, cells_per_stage=1, stem="imagenet"),
    NetworkSpec((8, 8, 1), 10, filters=4, cells_per_stage=2, stem="cifar"),  # digits, N=2
]


@pytest.mark.parametrize("which", range(len(SMALL)), ids=["cifar-odd", "imagenet", "digits-n2"])
def test_costs_equal_the_built_networks_for_random_cells_of_every_level(which):
    spec = SMALL[which]
    rng = np.random.default_rng(which)
    seen: set[tuple[str, str]] = set()
    for b in range(1, 6):
        tokens = random_tokens(rng, b, 4)
        params, flops = network_costs(tokens, PAPER_OPS, spec)  # the whole level at once
        assert list(zip(params.tolist(), flops.tolist())) == built(tokens, spec)
        t = tokens.reshape(len(tokens), b, 4)
        seen |= {(PAPER_OPS[o], KINDS[min(c, 2)]) for row in t for c, o in zip(row[:, :2].ravel(), row[:, 2:].ravel())}
    # one-input cells (only H[c-1], only H[c-2]) leave other cells out of the model: covered
    only = np.array([[0, 0, 0, 5], [1, 1, 2, 3], [0, 0, 7, 4], [1, 1, 4, 4]], dtype=np.int16)
    params, flops = network_costs(only, PAPER_OPS, spec)
    assert list(zip(params.tolist(), flops.tolist())) == built(only, spec)
    assert len(seen) >= 12  # many (operator, input kind) pairs met at each size


def test_costs_equal_the_built_networks_at_the_paper_sizes():
    rng = np.random.default_rng(7)
    for spec in (NetworkSpec((32, 32, 3), 10, 24, 2), NetworkSpec((32, 32, 3), 10, 48, 3)):
        for b in (1, 3, 5):
            tokens = random_tokens(rng, b, 1)
            params, flops = network_costs(tokens, PAPER_OPS, spec)
            assert list(zip(params.tolist(), flops.tolist())) == built(tokens, spec)


def test_pnasnet5_at_the_paper_cifar_size_has_the_published_parameter_count():
    from shared.space import PNASNET5

    batch = SPACE.batch([PNASNET5])
    params, _ = network_costs(batch.tokens, PAPER_OPS, NetworkSpec((32, 32, 3), 10, 48, 3))
    assert 3.1e6 < params[0] < 3.3e6  # paper: 3.2M


def test_a_full_b5_expansion_is_costed_in_well_under_a_second():
    rng = np.random.default_rng(0)
    beam = CellBatch(SPACE, random_tokens(rng, 4, 256), np.zeros(256, np.uint64), np.zeros(256, np.int32))
    expanded = SPACE.expand(beam)
    assert len(expanded) == 301_056
    spec = NetworkSpec((32, 32, 3), 10, 24, 2)
    network_costs(expanded.tokens[:10], PAPER_OPS, spec)  # tables built once per (spec, b)
    t0 = time.perf_counter()
    params, flops = network_costs(expanded.tokens, PAPER_OPS, spec)
    elapsed = time.perf_counter() - t0
    assert params.shape == flops.shape == (301_056,) and params.min() > 0
    assert elapsed < 2.0, f"{elapsed:.2f}s for 301,056 candidates (a loaded 2-core machine allows some slack)"
