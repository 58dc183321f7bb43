"""The latency prediction (`shared.latency`) sums the right table entries over the right cells.

With a table whose every entry is that piece's parameter count (or multiply-adds), the
predicted "latency" of a network must be its exact count, which tests/worker/test_costs.py
checks against Keras: a wrong gather, a dead cell counted or a live one missed changes it.
The measured latency against the prediction is tests/worker/test_latency.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from shared.budget import candidate_costs, within_budget
from shared.config import SearchConfig, build_config
from shared.errors import UserError
from shared.latency import LatencyTable, latency_plan, load_table, network_settings, predict_latency, table_pieces
from shared.space import SearchSpace
from shared.space.cost import NetworkSpec, live_cells, network_costs

OPS = ("sep3x3", "max3x3", "identity", "dil3x3", "avg3x3")


def table_of(spec: NetworkSpec, ops, blocks: int, value, *, join: float = 0.0, overhead: float = 0.0) -> LatencyTable:
    entries = {p.key: (join if p.kind == "join" else float(value(p))) for p in table_pieces(spec, ops, blocks)}
    return LatencyTable("test", "none", "0", network_settings(spec, ops, blocks), overhead, entries)


def cells_of_every_level(space: SearchSpace, per_level: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    batch = space.one_block_cells()
    yield batch
    for _ in range(1, space.blocks):
        batch = space.expand(batch.take(rng.choice(len(batch), size=min(6, len(batch)), replace=False)))
        yield batch.take(rng.choice(len(batch), size=min(per_level, len(batch)), replace=False))


@pytest.mark.parametrize(
    "spec, lookback",
    [
        (NetworkSpec((8, 8, 1), 10, 8, 1), 2),
        (NetworkSpec((32, 32, 3), 100, 12, 2), 2),
        (NetworkSpec((33, 31, 3), 10, 16, 2, "imagenet"), 2),
        (NetworkSpec((8, 8, 1), 10, 8, 3), 1),
    ],
)
def test_a_table_of_costs_predicts_the_exact_costs_of_every_level(spec, lookback):
    space = SearchSpace(ops=OPS, blocks=3, lookback=lookback)
    params_table = table_of(spec, OPS, 3, lambda p: p.params())
    flops_table = table_of(spec, OPS, 3, lambda p: p.flops(), overhead=7.0)
    for batch in cells_of_every_level(space, 200):
        params, flops = network_costs(batch.tokens, OPS, spec)
        np.testing.assert_array_equal(predict_latency(batch.tokens, OPS, spec, params_table), params)
        np.testing.assert_array_equal(predict_latency(batch.tokens, OPS, spec, flops_table), flops + 7.0)


def test_each_live_cell_joins_its_blocks_once():
    spec = NetworkSpec((8, 8, 1), 10, 8, 2)
    space = SearchSpace(ops=OPS, blocks=2)
    table = table_of(spec, OPS, 2, lambda p: 0, join=1.0)
    batch = space.expand(space.one_block_cells())
    got = predict_latency(batch.tokens, OPS, spec, table)
    for r in range(0, len(batch), 37):
        reads = {i for b in batch.cell(r).blocks for i in (b.in1, b.in2)}
        live = live_cells(len(latency_plan(spec, 2, OPS).slots), -1 in reads, -2 in reads)
        assert got[r] == len(live), batch.cell(r).readable()


def test_a_table_of_another_network_is_refused_with_the_command_to_make_one(tmp_path):
    small = NetworkSpec((8, 8, 1), 10, 8, 1)
    table = table_of(small, OPS, 2, lambda p: 1)
    path = tmp_path / "t.json"
    table.save(path)
    loaded = load_table(path)
    assert loaded.entries == table.entries and loaded.network["filters"] == 8
    tokens = SearchSpace(ops=OPS, blocks=1).one_block_cells().tokens
    with pytest.raises(UserError, match=r"no entry for .*F=8 N=1.*not this network.*F=16.*pnas latency-table --device"):
        predict_latency(tokens, OPS, NetworkSpec((8, 8, 1), 10, 16, 1), loaded)
    with pytest.raises(UserError, match="pnas latency-table --device"):
        load_table(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(UserError, match="not a latency table"):
        load_table(tmp_path / "bad.json")


def test_a_latency_budget_or_objective_without_a_table_is_one_clear_error():
    for overrides in ({"max_latency_ms": 5.0}, {"objective": "pareto", "cost": "latency"}):
        with pytest.raises(UserError, match=r"needs a latency table.*pnas latency-table --device NAME --out FILE"):
            build_config(preset="quick", overrides=overrides)


def test_the_budget_keeps_exactly_the_candidates_within_the_latency(tmp_path):
    spec = NetworkSpec((8, 8, 1), 10, 8, 1)
    table = table_of(spec, OPS, 1, lambda p: p.flops() / 1e5)
    table.save(tmp_path / "t.json")
    batch = SearchSpace(ops=OPS, blocks=1).one_block_cells()
    costs = candidate_costs(batch.tokens, OPS, spec, load_table(tmp_path / "t.json"))
    limit = float(np.median(costs.latency_ms))
    cfg = SearchConfig(ops=OPS, blocks=1, max_latency_ms=limit, latency_table=str(tmp_path / "t.json"))
    keep = within_budget(costs, cfg)
    assert 0 < keep.sum() < len(keep) and np.array_equal(keep, costs.latency_ms <= limit)
    assert costs.take(np.nonzero(keep)[0]).row(0)[2] <= limit
