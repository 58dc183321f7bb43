"""The choice of a level's children: expand the beam, keep the distinct new networks, score
them and insert the top K as jobs (or K at random, or a generation of evolution).

`Chooser.choose` is what the progressive loop (`controller.search`) calls once per level;
it reads the store (the beam, the predictor) and writes the level's jobs, idempotently.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from controller import evolution
from controller.progress import Reporter
from shared.budget import (
    Costs, candidate_costs, cost_spec, describe_budget, has_budget, needs_costs, nothing_fits, run_table, within_budget,
)
from shared import pareto
from shared.config import SearchConfig
from shared.errors import SearchAborted, UserError
from shared.jobs import JobState, RunView
from shared.space import Cell, CellBatch, SearchSpace
from shared.space.cost import NetworkSpec, known_dataset_spec
from shared.space.network import distinct_rows
from shared.store import Store

if TYPE_CHECKING:
    from controller.predictor import Ensemble


@dataclass
class Chooser:
    """Picks and inserts the children of one level (see the module docstring)."""

    store: Store
    reporter: Reporter
    max_attempts: int
    step: Callable[[str, int], None]  # the controller's test hook, called after "scored"
    dataset_spec: Callable = known_dataset_spec  # (input shape, classes) of a dataset, for the costs

    def choose(self, run: RunView, cfg: SearchConfig, space: SearchSpace, b: int) -> tuple[list[int], int]:
        """Pick the children of level b and insert their jobs (idempotent). Returns (ids, scored).

        Candidates are distinct networks: of the cells that are one network (blocks in another
        order) only the first is scored, and networks the run already has are left out.
        """
        if cfg.strategy == "evolution":
            return self.evolve(run, cfg, space, b)
        if b == 1:
            expanded = space.one_block_cells()
            nets = space.networks(expanded)
        else:
            beam = self.beam(run, space, b - 1)
            expanded = space.expand(beam)
            nets = space.expand_networks(beam)
        distinct = distinct_rows(nets, exclude=self.store.network_ids(run.id))
        batch = expanded.take(distinct)
        candidates = len(expanded)
        batch, costs = self.affordable(cfg, batch, b)
        k = len(batch) if b == 1 else min(cfg.beam, len(batch))
        predicted = None
        ens = self.predictor(run, b - 1) if b > 1 and cfg.strategy == "pnas" else None
        if b == 1:
            rows = np.arange(len(batch))
        elif ens is not None:
            self.reporter.message(f"level {b}: scoring {len(batch):,} distinct networks of {candidates:,} candidates")
            t0 = time.perf_counter()
            scores = ens.predict(batch)
            self.reporter.message(f"level {b}: scored in {time.perf_counter() - t0:.1f}s")
            if cfg.objective == "pareto" and costs is not None:
                rows = pareto.pick(scores, costs.of(cfg.cost), k)
                self.reporter.message(f"level {b}: {k} children from the fronts of (predicted accuracy, {cfg.cost})")
            else:
                rows = np.argsort(-scores, kind="stable")[:k]
            predicted = scores
            if cfg.keep_predictions:
                top = np.argsort(-scores, kind="stable")[: cfg.keep_predictions]
                self.store.start_level(run.id, b, candidates=candidates, distinct=len(batch))
                self.store.save_predictions(
                    run.id,
                    b,
                    [(batch.ids([r])[0], batch.cell(r).to_list(), float(scores[r]), i + 1) for i, r in enumerate(top)],
                )
        else:
            rng = np.random.default_rng([run.seed, b])
            rows = np.sort(rng.choice(len(batch), size=k, replace=False))
        self.step("scored", b)
        self.store.start_level(run.id, b, candidates=candidates, distinct=len(batch))
        children = [
            (
                batch.ids([r])[0],
                batch.cell(r).to_list(),
                None if predicted is None else float(predicted[r]),
                i + 1 if predicted is not None else None,
            )
            for i, r in enumerate(map(int, rows))
        ]
        chosen = None if costs is None else [costs.row(r) for r in map(int, rows)]
        ids = self.store.add_jobs(run.id, level=b, children=children, max_attempts=self.max_attempts, costs=chosen)
        return ids, candidates

    def affordable(self, cfg: SearchConfig, batch: CellBatch, b: int) -> tuple[CellBatch, Costs | None]:
        """The candidates within the run's budget, and their costs (None when the dataset's
        shape is unknown here and no budget needs them).

        At level 1 an empty result is the user's error (nothing fits); later, SearchAborted.
        """
        spec = self.cost_spec(cfg)
        if spec is None:
            return batch, None
        costs = candidate_costs(batch.tokens, batch.space.ops, spec, run_table(cfg))
        if not has_budget(cfg) or len(batch) == 0:
            return batch, costs
        keep = np.nonzero(within_budget(costs, cfg))[0]
        if len(keep) == 0:
            error = nothing_fits(cfg, costs, b)
            raise error if b == 1 else SearchAborted(str(error))
        self.reporter.message(f"level {b}: {len(keep):,} of {len(batch):,} distinct networks fit {describe_budget(cfg)}")
        return batch.take(keep), costs.take(keep)

    def evolve(self, run: RunView, cfg: SearchConfig, space: SearchSpace, g: int) -> tuple[list[int], int]:
        """Generation g of regularized evolution (`controller.evolution`): insert its jobs."""
        trained = [(Cell.from_json(j.cell, space.ops), float(j.reward or 0.0))
                   for j in sorted(self.store.jobs(run.id, states=[JobState.succeeded]), key=lambda j: (j.level, j.id))]
        cells = evolution.generation(g, cfg, space, seed=run.seed, trained=trained, exclude=self.store.network_ids(run.id))
        self.step("scored", g)
        self.store.start_level(run.id, g, candidates=len(cells), distinct=len(cells))
        children = [(c.arch_id, c.to_list(), None, None) for c in cells]
        spec = self.cost_spec(cfg)  # evolution has no budget: the costs are only stored
        chosen = None
        if spec is not None:
            table = run_table(cfg)
            chosen = [candidate_costs(space.batch([c]).tokens, space.ops, spec, table).row(0) for c in cells]
        ids = self.store.add_jobs(run.id, level=g, children=children, max_attempts=self.max_attempts, costs=chosen)
        return ids, len(cells)

    def cost_spec(self, cfg: SearchConfig) -> NetworkSpec | None:
        """The network the run's costs are of; None when its dataset's shape cannot be read
        here and choosing does not need the costs (a budget or the pareto objective would)."""
        try:
            return cost_spec(cfg, self.dataset_spec)
        except UserError:
            if needs_costs(cfg):
                raise
            return None

    def beam(self, run: RunView, space: SearchSpace, b: int) -> CellBatch:
        """The children of level b that succeeded: the cells level b+1 expands."""
        jobs = self.store.jobs(run.id, level=b, states=[JobState.succeeded])
        if not jobs:
            raise SearchAborted(f"no child of level {b} succeeded; nothing to expand (see `pnas status`)")
        return space.batch([Cell.from_json(j.cell, space.ops) for j in jobs])

    def predictor(self, run: RunView, b: int) -> Ensemble:
        """The predictor stored after level b (SearchAborted when there is none)."""
        from controller.predictor import Ensemble

        stored = self.store.latest_predictor(run.id)
        if stored is None or stored[0] != b:
            raise SearchAborted(f"level {b} finished without a stored predictor; cannot score level {b + 1}")
        return Ensemble.from_bytes(stored[1])
