"""Cells and their encoding: operators, blocks, cells, their JSON and readable forms.

A block is ``(I1, O1, I2, O2)`` with output ``O1(I1) + O2(I2)``. Inputs are written as in
the paper: ``-2`` is ``H[c-2]``, ``-1`` is ``H[c-1]`` and ``0..b-1`` are the earlier blocks
of the same cell (0-based). Internally an input is stored as its *code* ``input + 2`` so that
codes are small non-negative integers.

A block is symmetric, ``(a, x, b, y) == (b, y, a, x)``, so only one order is kept (the
canonical order puts the smaller ``(input code, op index)`` pair first). A cell's id is a
64-bit hash (`shared.space.hashing`), symmetric inside a block and computed from operator
names, so the same cell has the same id in every process and on every machine. Cells that
are the same *network* (blocks reordered) share a network id: see `shared.space.network`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Sequence

import numpy as np

from shared.errors import UserError
from shared.space.hashing import SEED, U64, fold, format_id, op_code, pair_hash

# The paper's 8 operators (Liu et al. 2018, section 3.1).
PAPER_OPS: tuple[str, ...] = (
    "sep3x3",  # 3x3 depthwise-separable conv
    "sep5x5",  # 5x5 depthwise-separable conv
    "sep7x7",  # 7x7 depthwise-separable conv
    "conv1x7_7x1",  # 1x7 followed by 7x1 conv
    "identity",
    "avg3x3",  # 3x3 average pool
    "max3x3",  # 3x3 max pool
    "dil3x3",  # 3x3 dilated conv (rate 2)
)
KNOWN_OPS = frozenset(PAPER_OPS)

PREV2, PREV1 = -2, -1  # H[c-2], H[c-1]
INPUT_NAMES = {PREV2: "c-2", PREV1: "c-1"}


@dataclass(frozen=True, order=True)
class Block:
    """One block: ``op1(in1) + op2(in2)``; inputs as in the paper (-2, -1, 0..b-1)."""

    in1: int
    op1: str
    in2: int
    op2: str

    def swapped(self) -> "Block":
        return Block(self.in2, self.op2, self.in1, self.op1)

    def as_list(self) -> list:
        return [self.in1, self.op1, self.in2, self.op2]

    def readable(self) -> str:
        return f"{self.op1}({input_name(self.in1)}) + {self.op2}({input_name(self.in2)})"


def input_name(i: int) -> str:
    return INPUT_NAMES.get(i, f"b{i + 1}")


def input_label(i: int) -> str:
    """An input for messages: ``input -2 (H[c-2])``, ``input 0 (block 1)``."""
    return f"input {i} (" + (f"H[{INPUT_NAMES[i]}]" if i < 0 else f"block {i + 1}") + ")"


@dataclass(frozen=True, eq=False)
class Cell:
    """An immutable cell of B blocks. Construct with `Cell.of`, which canonicalises.

    Two cells are equal when their ids are: block symmetry and operator order do not matter.
    """

    blocks: tuple[Block, ...]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cell) and self.hash64 == other.hash64

    def __hash__(self) -> int:
        return self.hash64

    @classmethod
    def of(cls, blocks: Iterable[Sequence], ops: Sequence[str] | None = None) -> "Cell":
        """Build a canonical cell from ``[[in1, op1, in2, op2], ...]`` and check its wiring."""
        order = {name: i for i, name in enumerate(ops or PAPER_OPS)}
        out: list[Block] = []
        for k, raw in enumerate(blocks):
            if isinstance(raw, Block):
                raw = raw.as_list()
            if not isinstance(raw, (list, tuple)) or len(raw) != 4:
                raise UserError(
                    f"block {k + 1} must be [input1, op1, input2, op2], got {raw!r}"
                )
            in1, op1, in2, op2 = raw
            for inp in (in1, in2):
                if isinstance(inp, bool) or not isinstance(inp, int):
                    raise UserError(f"block {k + 1}: input {inp!r} must be an integer")
                if inp < PREV2 or inp >= k:
                    raise UserError(
                        f"block {k + 1}: input {inp} is out of range; use -2 (H[c-2]), "
                        f"-1 (H[c-1]) or an earlier block 0..{k - 1}"
                        if k
                        else f"block 1: input {inp} is out of range; use -2 (H[c-2]) or -1 (H[c-1])"
                    )
            for op in (op1, op2):
                if not isinstance(op, str):
                    raise UserError(f"block {k + 1}: operator {op!r} must be a name")
            b = Block(in1, op1, in2, op2)
            key1 = (in1 + 2, order.get(op1, len(order)), op1)
            key2 = (in2 + 2, order.get(op2, len(order)), op2)
            out.append(b if key1 <= key2 else b.swapped())
        if not out:
            raise UserError("a cell needs at least one block")
        return cls(tuple(out))

    # --- identity -------------------------------------------------------------------------
    @cached_property
    def hash64(self) -> int:
        h = np.array([SEED], dtype=U64)
        for b in self.blocks:
            pa = pair_hash(np.array([b.in1 + 2]), np.array([op_code(b.op1)]))
            pb = pair_hash(np.array([b.in2 + 2]), np.array([op_code(b.op2)]))
            h = fold(h, pa, pb)
        return int(h[0])

    @property
    def arch_id(self) -> str:
        """Stable 16-hex-digit id: same cell, same id, whatever the process or op order."""
        return format_id(self.hash64)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def ops(self) -> set[str]:
        return {op for b in self.blocks for op in (b.op1, b.op2)}

    # --- forms ----------------------------------------------------------------------------
    def to_list(self) -> list[list]:
        return [b.as_list() for b in self.blocks]

    def to_json(self) -> str:
        return json.dumps(self.to_list(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | list, ops: Sequence[str] | None = None) -> "Cell":
        data = text
        if isinstance(text, str):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise UserError(f"cell is not valid JSON ({exc.msg} at char {exc.pos})") from None
        if isinstance(data, dict):
            data = data.get("blocks", data.get("cell"))
        if not isinstance(data, list):
            raise UserError('a cell is a JSON list of blocks: [[-2, "sep3x3", -1, "identity"], ...]')
        return cls.of(data, ops)

    def readable(self) -> str:
        """One line, e.g. ``b1=sep5x5(c-2)+max3x3(c-2) | b2=...``."""
        return " | ".join(
            f"b{k + 1}={b.op1}({input_name(b.in1)})+{b.op2}({input_name(b.in2)})"
            for k, b in enumerate(self.blocks)
        )

    def __str__(self) -> str:
        return self.readable()

    def prefix(self, n: int) -> "Cell":
        return Cell(self.blocks[:n])


def parse_ops(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"sep3x3,max3x3"`` or a list -> a tuple of names (validated by `SearchSpace`)."""
    if text is None:
        return PAPER_OPS
    if isinstance(text, str):
        text = [t.strip() for t in text.split(",")]
    return tuple(t for t in text if t)


# The paper's best cell (Liu et al. 2018, fig. 1), inputs as in the paper's figure.
PNASNET5 = Cell.of(
    [
        [PREV2, "sep5x5", PREV2, "max3x3"],
        [PREV1, "sep7x7", PREV1, "max3x3"],
        [PREV1, "sep5x5", PREV1, "sep3x3"],
        [2, "sep3x3", PREV1, "max3x3"],
        [PREV2, "sep3x3", PREV1, "identity"],
    ]
)
BUILTIN_CELLS = {"pnasnet5": PNASNET5}
