"""Cells as the predictor's token sequences.

The predictor reads a cell as 4b tokens, per block ``I1, I2, O1, O2`` (the layout of
`CellBatch.tokens`). Its vocabulary has ``space.num_tokens + 1`` entries:

    0                                   padding (cells shorter than the longest in a batch)
    1 .. num_input_tokens               input code c is token c + 1
    num_input_tokens + 1 .. num_tokens  operator index o is token o + num_input_tokens + 1

so input and operator tokens use one table with disjoint rows, which is the same as the
paper's two tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from shared.errors import UserError
from shared.space import CellBatch

PAD = 0

# What the predictor accepts as "some cells": a batch, an (N, 4b) array, or a sequence of
# either (or of single cells' (4b,) token rows) whose lengths may differ.
Cells = Union[CellBatch, np.ndarray, Sequence[Union[CellBatch, np.ndarray]]]


@dataclass(frozen=True)
class Vocab:
    """Maps space tokens to model tokens; knows the vocabulary size."""

    num_input_tokens: int  # B + 2: input codes 0..B+1
    num_ops: int

    @property
    def size(self) -> int:
        return self.num_input_tokens + self.num_ops + 1  # + padding

    def encode(self, tokens: np.ndarray) -> np.ndarray:
        """(N, 4b) space tokens -> (N, 4b) int32 model tokens (never PAD); checks ranges."""
        t = np.asarray(tokens)
        if t.ndim != 2 or t.shape[1] == 0 or t.shape[1] % 4:
            raise UserError(f"cell tokens must have shape (N, 4b), got {t.shape}")
        t = t.astype(np.int32).reshape(len(t), -1, 4)
        ins, ops = t[:, :, :2], t[:, :, 2:]
        if t.size and (ins.min() < 0 or ins.max() >= self.num_input_tokens):
            raise UserError(f"input codes must lie in 0..{self.num_input_tokens - 1}")
        if t.size and (ops.min() < 0 or ops.max() >= self.num_ops):
            raise UserError(f"operator indices must lie in 0..{self.num_ops - 1}")
        offset = np.array([1, 1, 1 + self.num_input_tokens, 1 + self.num_input_tokens], np.int32)
        return (t + offset).reshape(len(t), -1)


def token_groups(cells: Cells) -> list[np.ndarray]:
    """The cells as (n_i, 4 b_i) arrays, each of one length; concatenated in input order."""
    if isinstance(cells, CellBatch):
        return [cells.tokens]
    if isinstance(cells, np.ndarray) and cells.ndim == 2:
        return [cells]
    groups: list[np.ndarray] = []
    run: list[np.ndarray] = []  # consecutive single cells of one length
    for item in cells:
        rows = item.tokens if isinstance(item, CellBatch) else np.asarray(item)
        if rows.ndim == 1:
            if run and len(run[-1]) != len(rows):
                groups.append(np.stack(run))
                run = []
            run.append(rows)
            continue
        if run:
            groups.append(np.stack(run))
            run = []
        groups.append(rows)
    if run:
        groups.append(np.stack(run))
    return groups


def pad(groups: list[np.ndarray]) -> np.ndarray:
    """Right-pad encoded groups with PAD to one (N, T) int32 array (T = longest)."""
    width = max(g.shape[1] for g in groups)
    out = np.full((sum(len(g) for g in groups), width), PAD, np.int32)
    row = 0
    for g in groups:
        out[row : row + len(g), : g.shape[1]] = g
        row += len(g)
    return out
