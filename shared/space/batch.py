"""Many cells of one block count as arrays: what the controller expands and scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol

import numpy as np

from shared.space.cell import Block, Cell
from shared.space.hashing import format_id


class HasOps(Protocol):
    """What a batch needs of its space (a `SearchSpace`): the operator list its indices index."""

    @property
    def ops(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class CellBatch:
    """Many cells of the same block count as arrays: what the controller scores.

    ``tokens``  (N, 4b) int16: per block ``I1, I2, O1, O2`` with input codes (input + 2)
                and operator indices into ``space.ops``.
    ``hashes``  (N,) uint64: the cells' ids (see `format_id`).
    ``parents`` (N,) int32: row of the parent in the batch this one was expanded from
                (-1 for one-block cells).
    """

    space: HasOps
    tokens: np.ndarray
    hashes: np.ndarray
    parents: np.ndarray

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def num_blocks(self) -> int:
        return self.tokens.shape[1] // 4

    def ids(self, rows: Iterable[int] | None = None) -> list[str]:
        rows = range(len(self)) if rows is None else rows
        return [format_id(self.hashes[r]) for r in rows]

    def cell(self, row: int) -> Cell:
        t = self.tokens[row].reshape(-1, 4)
        ops = self.space.ops
        return Cell(
            tuple(Block(int(a) - 2, ops[int(x)], int(b) - 2, ops[int(y)]) for a, b, x, y in t)
        )

    def take(self, rows: np.ndarray) -> "CellBatch":
        rows = np.asarray(rows)
        return CellBatch(self.space, self.tokens[rows], self.hashes[rows], self.parents[rows])
