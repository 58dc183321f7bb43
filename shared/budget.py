"""A run's costs and budget: which network its costs are of, and which candidates fit.

The costs are `shared.space.cost`'s, exact and computed from the cells alone: ``params``
(Keras' count_params of the inference network) and ``flops`` (multiply-adds of one image).
``cost_network = "final"`` costs the network `pnas final` trains by default (its F and N,
`shared.recipes.DEFAULT_FINAL`) instead of the search's own. With ``latency_table`` set, the
predicted batch-1 latency on that table's device (``latency_ms``, `shared.latency`) too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np

from shared.config import SearchConfig
from shared.errors import UserError
from shared.latency import LatencyTable, load_table, predict_latency
from shared.recipes import DEFAULT_FINAL
from shared.space.cost import NetworkSpec, known_dataset_spec, network_costs


class DatasetSpec(Protocol):
    def __call__(self, name: str, *, image_size: int | None = None) -> tuple[tuple[int, int, int], int]: ...


def cost_spec(cfg: SearchConfig, dataset_spec: DatasetSpec | Callable = known_dataset_spec) -> NetworkSpec:
    """The network a run's costs are of (its `cost_network`), at the dataset's input shape."""
    train = cfg.train
    filters, n = train.filters, train.cells_per_stage
    if cfg.cost_network == "final":
        filters, n = DEFAULT_FINAL["filters"], DEFAULT_FINAL["cells_per_stage"]
    shape, classes = dataset_spec(train.dataset, image_size=train.image_size)
    return NetworkSpec(tuple(int(d) for d in shape), int(classes), filters, n, train.stem)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Costs:
    """Per candidate: parameters and multiply-adds (N,) int64, predicted ms (N,) float64 or None."""

    params: np.ndarray
    flops: np.ndarray
    latency_ms: np.ndarray | None = None  # None: the run has no latency table

    def take(self, rows: np.ndarray) -> "Costs":
        return Costs(self.params[rows], self.flops[rows], None if self.latency_ms is None else self.latency_ms[rows])

    def of(self, name: str) -> np.ndarray:
        out = {"params": self.params, "flops": self.flops, "latency": self.latency_ms}[name]
        assert out is not None, "the latency needs a table (SearchConfig refuses cost latency without one)"
        return out

    def row(self, r: int) -> tuple[int, int, float | None]:
        """(params, flops, latency_ms) of candidate r, as the store keeps them."""
        return int(self.params[r]), int(self.flops[r]), None if self.latency_ms is None else float(self.latency_ms[r])


def candidate_costs(tokens: np.ndarray, ops: Sequence[str], spec: NetworkSpec, table: LatencyTable | None = None) -> Costs:
    params, flops = network_costs(tokens, ops, spec)
    return Costs(params, flops, None if table is None else predict_latency(tokens, ops, spec, table))


def run_table(cfg: SearchConfig) -> LatencyTable | None:
    """The run's latency table (`latency_table`), or None; UserError when it cannot be read."""
    return None if cfg.latency_table is None else load_table(cfg.latency_table)


def has_budget(cfg: SearchConfig) -> bool:
    return cfg.max_params is not None or cfg.max_flops is not None or cfg.max_latency_ms is not None


def needs_costs(cfg: SearchConfig) -> bool:
    """Whether choosing children needs the costs (not only storing them)."""
    return has_budget(cfg) or cfg.objective == "pareto" or cfg.latency_table is not None


def within_budget(costs: Costs, cfg: SearchConfig) -> np.ndarray:
    """(N,) bool: the candidates no budget of ``cfg`` rules out."""
    ok = np.ones(len(costs.params), dtype=bool)
    if cfg.max_params is not None:
        ok &= costs.params <= cfg.max_params
    if cfg.max_flops is not None:
        ok &= costs.flops <= cfg.max_flops
    if cfg.max_latency_ms is not None:
        ok &= costs.of("latency") <= cfg.max_latency_ms
    return ok


def describe_budget(cfg: SearchConfig) -> str:
    """``max_params 20,000 and max_flops 1,000,000`` (of the search network)."""
    parts = [f"{name} {value:,}" for name, value in (("max_params", cfg.max_params), ("max_flops", cfg.max_flops),
                                                     ("max_latency_ms", cfg.max_latency_ms)) if value is not None]
    return " and ".join(parts) + f" (of the {cfg.cost_network} network)"


def nothing_fits(cfg: SearchConfig, costs: Costs, b: int) -> UserError:
    """The one error when no cell of level b fits: the smallest costs, and what to change."""
    latency = "" if costs.latency_ms is None else f" and {float(costs.latency_ms.min()):.3g} ms"
    return UserError(
        f"no {b}-block cell fits {describe_budget(cfg)}: the smallest needs {int(costs.params.min()):,} params, "
        f"{int(costs.flops.min()):,} multiply-adds{latency}; raise the budget, or lower F/N (--filters, --n)"
    )


def fitting_counts(space, beam: int, spec: NetworkSpec, cfg: SearchConfig, *, seed: int = 0) -> list[int]:
    """Per level b, how many distinct new networks fit the budget of ``cfg``, on a concrete
    beam as `SearchSpace.distinct_counts` draws it (``beam`` fitting networks at random per
    level): a run's own counts depend on which cells its beam holds."""
    from shared.space.network import distinct_rows

    rng = np.random.default_rng(seed)
    table = run_table(cfg)
    batch = space.one_block_cells()
    nets = space.networks(batch)
    counts = []
    for b in range(1, space.blocks + 1):
        if b > 1:
            nets = space.expand_networks(batch)
            batch = space.expand(batch)
        rows = distinct_rows(nets)
        fits = rows[within_budget(candidate_costs(batch.tokens[rows], space.ops, spec, table), cfg)]
        counts.append(len(fits))
        if len(fits) == 0:
            counts += [0] * (space.blocks - b)
            break
        batch = batch.take(np.sort(rng.choice(fits, size=min(beam, len(fits)), replace=False)))
    return counts


def cell_costs(cell: list, train, dataset_spec: DatasetSpec | Callable = known_dataset_spec,
               table: LatencyTable | None = None) -> tuple[int, int, float | None]:
    """(params, flops, latency_ms) of one cell (as the store keeps it) in the network a
    `TrainConfig` describes, as `candidate_costs` gives a search child's: latency_ms None
    without a ``table``; UserError when the table does not cover that network."""
    from shared.space import Cell
    from shared.space.cost import NetworkSpec

    c = Cell.from_json(cell)
    ops = tuple(sorted(c.ops))
    idx = {o: i for i, o in enumerate(ops)}
    tokens = np.array([[v for b in c.blocks for v in (b.in1 + 2, b.in2 + 2, idx[b.op1], idx[b.op2])]], dtype=np.int16)
    shape, classes = dataset_spec(train.dataset, image_size=train.image_size)
    spec = NetworkSpec(tuple(int(d) for d in shape), int(classes), train.filters, train.cells_per_stage, train.stem)  # type: ignore[arg-type]
    return candidate_costs(tokens, ops, spec, table).row(0)
