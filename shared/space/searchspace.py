"""Which cells exist, and their enumeration: one-block cells, expansion by one block, counts.

Every id is computed with NumPy, so expanding a beam into 10^5 candidates never builds a
Python object per candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from shared.errors import UserError
from shared.space.batch import CellBatch
from shared.space.cell import KNOWN_OPS, PAPER_OPS, Cell, input_label
from shared.space.hashing import SEED, U64, fold, op_code, pair_hash
from shared.space.network import distinct_rows, expansion_network_hashes, network_hashes


@dataclass(frozen=True)
class SearchSpace:
    """Which cells exist: operators, block count B and the input limits.

    ``lookback``    how many previous cells a block may read: 2 = ``H[c-1]`` and ``H[c-2]``
                    (the paper), 1 = ``H[c-1]`` only.
    ``lookforward`` how many earlier blocks of the same cell a block may read (the first
                    ``lookforward`` ones); None = all of them (the paper), 0 = flat cells.
                    Values >= B-1 allow every earlier block, as None does (and count the
                    same cells); they are kept as given.

    The limits only narrow which cells exist: a cell's id and tokens do not depend on them,
    and the input-token vocabulary stays ``0..B+1`` (codes a limit rules out never occur).
    """

    ops: tuple[str, ...] = PAPER_OPS
    blocks: int = 5
    lookback: int = 2
    lookforward: int | None = None
    allowed_ops: frozenset[str] = field(default=KNOWN_OPS, repr=False, compare=False)

    def __post_init__(self) -> None:
        ops = tuple(self.ops)
        object.__setattr__(self, "ops", ops)
        unknown = [o for o in ops if o not in self.allowed_ops]
        if unknown:
            raise UserError(
                f"unknown operator {unknown[0]!r}; valid names: {', '.join(sorted(self.allowed_ops))}"
            )
        if not ops:
            raise UserError("the operator list is empty; name at least one operator")
        if len(set(ops)) != len(ops):
            raise UserError(f"the operator list repeats a name: {', '.join(ops)}")
        if not isinstance(self.blocks, int) or self.blocks < 1:
            raise UserError(f"blocks must be an integer >= 1, got {self.blocks!r}")
        if isinstance(self.lookback, bool) or self.lookback not in (1, 2):
            raise UserError(
                f"lookback must be 1 (blocks read H[c-1] only) or 2 (H[c-1] and H[c-2], the paper), "
                f"got {self.lookback!r}"
            )
        if self.lookforward is not None and (
            isinstance(self.lookforward, bool)
            or not isinstance(self.lookforward, int)
            or self.lookforward < 0
        ):
            raise UserError(
                f"lookforward must be unset (every earlier block, the paper) or a whole number N >= 0 "
                f"(a block may read the first N earlier blocks; 0 = none, N >= B-1 = all), "
                f"got {self.lookforward!r}"
            )

    # --- inputs and vocabulary -----------------------------------------------------------
    def input_codes(self, k: int) -> np.ndarray:
        """Input codes that block k (0-based) may read, ascending."""
        prev = [1] if self.lookback == 1 else [0, 1]
        limit = k if self.lookforward is None else min(k, self.lookforward)
        return np.array(prev + [j + 2 for j in range(limit)], dtype=np.int16)

    def describe_inputs(self) -> str:
        """The input limits in words, e.g. ``H[c-1] and the first 2 earlier blocks``."""
        if self.lookforward == 0 or self.blocks == 1:
            return "H[c-1] only" if self.lookback == 1 else "H[c-1] and H[c-2] only"
        prev = "H[c-1]" if self.lookback == 1 else "H[c-1], H[c-2]"
        if self.lookforward is None or self.lookforward >= self.blocks - 1:
            return f"{prev} and every earlier block"
        n = self.lookforward
        return f"{prev} and the first earlier block" if n == 1 else f"{prev} and the first {n} earlier blocks"

    @property
    def num_input_tokens(self) -> int:
        """Size of the input-token vocabulary (codes 0..B+1; unused codes are harmless)."""
        return self.blocks + 2

    @property
    def num_tokens(self) -> int:
        """Whole vocabulary: input codes, then operator indices offset by `num_input_tokens`."""
        return self.num_input_tokens + len(self.ops)

    # --- one step ------------------------------------------------------------------------
    def new_blocks(self, k: int) -> np.ndarray:
        """All distinct blocks for position k (0-based) as (M, 4) ``I1, I2, O1, O2`` rows."""
        inputs = self.input_codes(k)
        n_ops = len(self.ops)
        pin = np.repeat(inputs, n_ops)  # pair p = (input, op)
        pop = np.tile(np.arange(n_ops, dtype=np.int16), len(inputs))
        a, b = np.triu_indices(len(pin))  # a <= b: symmetric blocks once
        return np.stack([pin[a], pin[b], pop[a], pop[b]], axis=1).astype(np.int16)

    def count_new_blocks(self, k: int) -> int:
        p = len(self.input_codes(k)) * len(self.ops)
        return p * (p + 1) // 2

    def _block_hashes(self, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        codes = np.array([op_code(o) for o in self.ops], dtype=U64)
        return (
            pair_hash(blocks[:, 0], codes[blocks[:, 2]]),
            pair_hash(blocks[:, 1], codes[blocks[:, 3]]),
        )

    def one_block_cells(self) -> CellBatch:
        blocks = self.new_blocks(0)
        pa, pb = self._block_hashes(blocks)
        h = fold(np.full(len(blocks), SEED, dtype=U64), pa, pb)
        return CellBatch(self, blocks, h, np.full(len(blocks), -1, dtype=np.int32))

    def expand(self, beam: CellBatch) -> CellBatch:
        """Every cell of ``beam`` extended by every possible next block (parent-major order)."""
        k = beam.num_blocks
        if k >= self.blocks:
            raise UserError(f"cells already have {k} blocks; this space stops at B={self.blocks}")
        blocks = self.new_blocks(k)
        n, m = len(beam), len(blocks)
        tokens = np.empty((n * m, 4 * (k + 1)), dtype=np.int16)
        tokens[:, : 4 * k].reshape(n, m, 4 * k)[:] = beam.tokens[:, None, :]
        tokens[:, 4 * k :].reshape(n, m, 4)[:] = blocks[None, :, :]
        pa, pb = self._block_hashes(blocks)
        h = fold(np.repeat(beam.hashes, m), np.tile(pa, n), np.tile(pb, n))
        parents = np.repeat(np.arange(n, dtype=np.int32), m)
        return CellBatch(self, tokens, h, parents)

    def networks(self, batch: CellBatch) -> np.ndarray:
        """(N,) uint64 network ids of a batch (see `shared.space.network`)."""
        return network_hashes(batch.tokens, self.ops)

    def expand_networks(self, beam: CellBatch) -> np.ndarray:
        """Network ids of `expand(beam)`, row for row, computing only each new block's hash."""
        return expansion_network_hashes(beam.tokens, self.new_blocks(beam.num_blocks), self.ops)

    def batch(self, cells: Sequence[Cell]) -> CellBatch:
        """Cells (all with the same block count) as a batch; checks they fit this space."""
        if not cells:
            raise UserError("no cells given")
        nb = {c.num_blocks for c in cells}
        if len(nb) != 1:
            raise UserError("cells in one batch must have the same number of blocks")
        toks = np.stack([self.tokens(c) for c in cells])
        hashes = np.array([c.hash64 for c in cells], dtype=U64)
        return CellBatch(self, toks, hashes, np.full(len(cells), -1, dtype=np.int32))

    # --- single cells --------------------------------------------------------------------
    def validate(self, cell: Cell) -> Cell:
        """Return ``cell`` in this space's canonical order, or raise `UserError` saying why not."""
        if cell.num_blocks > self.blocks:
            raise UserError(
                f"the cell has {cell.num_blocks} blocks but this search space allows at most {self.blocks}"
            )
        unknown = sorted(cell.ops - set(self.ops))
        if unknown:
            raise UserError(
                f"operator {unknown[0]!r} is not in this search space ({', '.join(self.ops)})"
            )
        for k, b in enumerate(cell.blocks):
            allowed = (self.input_codes(k) - 2).tolist()
            for inp in (b.in1, b.in2):
                if inp not in allowed:
                    raise UserError(
                        f"block {k + 1} reads {input_label(inp)}, but blocks in this search space "
                        f"read only {self.describe_inputs()} (block {k + 1} may read "
                        f"{', '.join(str(i) for i in allowed)})"
                    )
        return Cell.of(cell.to_list(), self.ops)

    def tokens(self, cell: Cell) -> np.ndarray:
        """The cell as (4b,) ``I1, I2, O1, O2`` per block (input codes, op indices)."""
        cell = self.validate(cell)
        idx = {o: i for i, o in enumerate(self.ops)}
        return np.array(
            [t for b in cell.blocks for t in (b.in1 + 2, b.in2 + 2, idx[b.op1], idx[b.op2])],
            dtype=np.int16,
        )

    def level_counts(self, beam: int) -> list[dict]:
        """Per level b: distinct new blocks, candidates to score, cells trained."""
        rows, width = [], 1
        for k in range(self.blocks):
            m = self.count_new_blocks(k)
            if k == 0:
                width = m
                rows.append({"b": 1, "new_blocks": m, "candidates": m, "trained": m})
                continue
            cands = width * m
            rows.append({"b": k + 1, "new_blocks": m, "candidates": cands, "trained": min(beam, cands)})
            width = min(beam, cands)
        return rows

    def distinct_counts(self, beam: int, *, seed: int = 0) -> list[int]:
        """Per level b, how many distinct networks the candidates are, computed on a concrete
        beam: every one-block cell, then ``beam`` distinct networks drawn at random (``seed``)
        from each level's candidates. Later levels depend on which cells the beam holds; a
        run stores its own counts (``levels.distinct_candidates``)."""
        rng = np.random.default_rng(seed)
        batch = self.one_block_cells()
        counts = [len(distinct_rows(self.networks(batch)))]
        for _ in range(1, self.blocks):
            nets = self.expand_networks(batch)
            batch = self.expand(batch)
            rows = distinct_rows(nets)
            counts.append(len(rows))
            batch = batch.take(np.sort(rng.choice(rows, size=min(beam, len(rows)), replace=False)))
        return counts

    def to_dict(self) -> dict:
        return {
            "ops": list(self.ops),
            "blocks": self.blocks,
            "lookback": self.lookback,
            "lookforward": self.lookforward,
        }
