"""Regularized evolution (Real et al., AAAI 2019) as a search strategy: the baseline the field
compares PNAS with, at the same budget.

A run's levels are its generations. Generation 1 trains ``population`` random cells of B
blocks; every later generation trains up to ``beam`` children, each a mutation (one input or
one operator of one block) of the best of ``tournament`` cells drawn at random from the
population. The population is the ``population`` most recently trained children (aging: the
oldest die, however good). Generations make the asynchronous algorithm batch-synchronous, so
that a generation trains in parallel on the workers as a PNAS level does. The budget is the
number of children PNAS trains with the same B and K, so the two compare at equal cost.

Everything is drawn from a generator seeded by (run seed, generation) and the population is
read in (generation, job id) order, so a resumed run chooses the same children.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shared.config import SearchConfig
from shared.space import Cell, SearchSpace
from shared.space.network import distinct_rows, network_id

MAX_TRIES = 200  # mutations tried for one child before a random cell stands in (a crowded space)


def budget(space: SearchSpace, beam: int) -> int:
    """Children PNAS trains with this space and K: every distinct one-block network, then K
    per later level."""
    first = len(distinct_rows(space.networks(space.one_block_cells())))
    return first + beam * (space.blocks - 1)


def sizes_of(cfg: SearchConfig, space: SearchSpace) -> tuple[int, int]:
    """(P, S): the population and tournament sizes, the defaults scaled to the budget as Real
    et al.'s 100 and 25 are to theirs."""
    population = cfg.population or min(100, max(2, budget(space, cfg.beam) // 5))
    return population, min(cfg.tournament or max(2, population // 4), population)


def generation_sizes(space: SearchSpace, *, beam: int, population: int) -> list[int]:
    """Children per generation: the first population, then ``beam`` each, to the budget."""
    total = budget(space, beam)
    sizes = [min(population, total)]
    while sum(sizes) < total:
        sizes.append(min(beam, total - sum(sizes)))
    return sizes


def level_count(cfg: SearchConfig) -> int:
    """A run's levels: B, or for evolution the generations its budget makes."""
    if cfg.strategy != "evolution":
        return cfg.blocks
    space = cfg.space()
    return len(generation_sizes(space, beam=cfg.beam, population=sizes_of(cfg, space)[0]))


def random_cell(space: SearchSpace, rng: np.random.Generator) -> Cell:
    """A cell of B blocks, every input and operator drawn uniformly from what the space allows."""
    blocks = []
    for k in range(space.blocks):
        inputs = (space.input_codes(k) - 2).tolist()
        blocks.append([int(rng.choice(inputs)), str(rng.choice(space.ops)),
                       int(rng.choice(inputs)), str(rng.choice(space.ops))])  # fmt: skip
    return Cell.of(blocks, space.ops)


def mutate(cell: Cell, space: SearchSpace, rng: np.random.Generator) -> Cell | None:
    """``cell`` with one input or one operator of one block changed (Real et al.'s hidden-state
    and op mutations), in canonical form; None when that block has nothing else to take."""
    blocks = [b.as_list() for b in cell.blocks]
    k = int(rng.integers(len(blocks)))
    slot = int(rng.integers(2))  # which of the block's two (input, operator) pairs
    if rng.random() < 0.5:
        field, choices = 2 * slot, (space.input_codes(k) - 2).tolist()
    else:
        field, choices = 2 * slot + 1, list(space.ops)
    others = [c for c in choices if c != blocks[k][field]]
    if not others:
        return None
    blocks[k][field] = others[int(rng.integers(len(others)))]
    return Cell.of(blocks, space.ops)


def first_generation(space: SearchSpace, size: int, rng: np.random.Generator, *, exclude: set[str]) -> list[Cell]:
    """``size`` random cells, distinct networks none of which is in ``exclude``."""
    return _fill([], size, space, rng, exclude)


def next_generation(
    population: Sequence[tuple[Cell, float]],
    *,
    size: int,
    tournament: int,
    space: SearchSpace,
    rng: np.random.Generator,
    exclude: set[str],
) -> list[Cell]:
    """``size`` children of ``population`` ((cell, reward), oldest first, already aged): each
    the mutation of the best of ``tournament`` members drawn without replacement; distinct
    networks, none in ``exclude`` (what the run has trained)."""
    taken = set(exclude)
    children: list[Cell] = []
    sample = min(tournament, len(population))
    tries = 0
    while len(children) < size and tries < MAX_TRIES * size and population:
        tries += 1
        drawn = rng.choice(len(population), size=sample, replace=False)
        parent = population[max(drawn, key=lambda i: (population[i][1], -i))][0]
        child = mutate(parent, space, rng)
        if child is None or network_id(child) in taken:
            continue
        taken.add(network_id(child))
        children.append(child)
    return _fill(children, size, space, rng, taken)


def generation(g: int, cfg: SearchConfig, space: SearchSpace, *, seed: int,
               trained: Sequence[tuple[Cell, float]], exclude: set[str]) -> list[Cell]:
    """The children of generation ``g`` (1-based) of a run: ``trained`` is its succeeded
    children as (cell, reward) in (generation, job id) order, ``exclude`` its network ids."""
    p, s = sizes_of(cfg, space)
    size = generation_sizes(space, beam=cfg.beam, population=p)[g - 1]
    rng = np.random.default_rng([seed, g])
    if g == 1:
        return first_generation(space, size, rng, exclude=exclude)
    population = list(trained)[-p:]  # aging: the newest P, whatever their reward
    return next_generation(population, size=size, tournament=s, space=space, rng=rng, exclude=exclude)


def _fill(cells: list[Cell], size: int, space: SearchSpace, rng: np.random.Generator, taken: set[str]) -> list[Cell]:
    """Top ``cells`` up to ``size`` with random cells of networks not yet ``taken``."""
    taken = set(taken) | {network_id(c) for c in cells}
    for _ in range(MAX_TRIES * max(size, 1)):
        if len(cells) >= size:
            break
        cell = random_cell(space, rng)
        if network_id(cell) not in taken:
            taken.add(network_id(cell))
            cells.append(cell)
    return cells
