"""The PNAS search space: operators, blocks, cells, their canonical form, ids and tokens.

A block is ``(I1, O1, I2, O2)`` with output ``O1(I1) + O2(I2)``. Inputs are written as in
the paper: ``-2`` is ``H[c-2]``, ``-1`` is ``H[c-1]`` and ``0..b-1`` are the earlier blocks
of the same cell (0-based). Internally an input is stored as its *code* ``input + 2`` so that
codes are small non-negative integers.

Two facts make the space cheap to search:
- a block is symmetric, ``(a, x, b, y) == (b, y, a, x)``, so only one order is kept (the
  canonical order puts the smaller ``(input code, op index)`` pair first);
- every id is a 64-bit hash computed with numpy, so expanding a beam into 10^5 candidates
  never builds a Python object per candidate. The hash is symmetric inside a block and uses
  operator *names*, so the same cell has the same id whatever the operator list's order, in
  every process and on every machine.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Sequence

import numpy as np

from shared.errors import UserError

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
_INPUT_NAMES = {PREV2: "c-2", PREV1: "c-1"}

_U64 = np.uint64
_MASK = (1 << 64) - 1
_SEED = 0x9E3779B97F4A7C15  # golden-ratio constant: any fixed odd number would do


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wraps mod 2^64 by design)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> _U64(30))
        x = x * _U64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> _U64(27))
        x = x * _U64(0x94D049BB133111EB)
        return x ^ (x >> _U64(31))


def op_code(name: str) -> int:
    """A stable 32-bit code for an operator name (crc32, the same on every machine)."""
    return zlib.crc32(name.encode("utf-8"))


def _pair_hash(input_code: np.ndarray, op_codes: np.ndarray) -> np.ndarray:
    return _mix((input_code.astype(_U64) << _U64(32)) | op_codes.astype(_U64))


def _fold(h: np.ndarray, pair_a: np.ndarray, pair_b: np.ndarray) -> np.ndarray:
    """Add one block (two pair hashes, in either order) to running cell hashes."""
    lo, hi = np.minimum(pair_a, pair_b), np.maximum(pair_a, pair_b)
    return _mix(_mix(h ^ lo) ^ hi)


def format_id(h: int | np.integer) -> str:
    return f"{int(h) & _MASK:016x}"


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
        return f"{self.op1}({_input_name(self.in1)}) + {self.op2}({_input_name(self.in2)})"


def _input_name(i: int) -> str:
    return _INPUT_NAMES.get(i, f"b{i + 1}")


def _input_label(i: int) -> str:
    """An input for messages: ``input -2 (H[c-2])``, ``input 0 (block 1)``."""
    return f"input {i} (" + (f"H[{_INPUT_NAMES[i]}]" if i < 0 else f"block {i + 1}") + ")"


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
        h = np.array([_SEED], dtype=_U64)
        for b in self.blocks:
            pa = _pair_hash(np.array([b.in1 + 2]), np.array([op_code(b.op1)]))
            pb = _pair_hash(np.array([b.in2 + 2]), np.array([op_code(b.op2)]))
            h = _fold(h, pa, pb)
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
            f"b{k + 1}={b.op1}({_input_name(b.in1)})+{b.op2}({_input_name(b.in2)})"
            for k, b in enumerate(self.blocks)
        )

    def __str__(self) -> str:
        return self.readable()

    def prefix(self, n: int) -> "Cell":
        return Cell(self.blocks[:n])


@dataclass(frozen=True)
class CellBatch:
    """Many cells of the same block count as arrays: what the controller scores.

    ``tokens``  (N, 4b) int16: per block ``I1, I2, O1, O2`` with input codes (input + 2)
                and operator indices into ``space.ops``.
    ``hashes``  (N,) uint64: the cells' ids (see `format_id`).
    ``parents`` (N,) int32: row of the parent in the batch this one was expanded from
                (-1 for one-block cells).
    """

    space: "SearchSpace"
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
        codes = np.array([op_code(o) for o in self.ops], dtype=_U64)
        return (
            _pair_hash(blocks[:, 0], codes[blocks[:, 2]]),
            _pair_hash(blocks[:, 1], codes[blocks[:, 3]]),
        )

    def one_block_cells(self) -> CellBatch:
        blocks = self.new_blocks(0)
        pa, pb = self._block_hashes(blocks)
        h = _fold(np.full(len(blocks), _SEED, dtype=_U64), pa, pb)
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
        h = _fold(np.repeat(beam.hashes, m), np.tile(pa, n), np.tile(pb, n))
        parents = np.repeat(np.arange(n, dtype=np.int32), m)
        return CellBatch(self, tokens, h, parents)

    def batch(self, cells: Sequence[Cell]) -> CellBatch:
        """Cells (all with the same block count) as a batch; checks they fit this space."""
        if not cells:
            raise UserError("no cells given")
        nb = {c.num_blocks for c in cells}
        if len(nb) != 1:
            raise UserError("cells in one batch must have the same number of blocks")
        toks = np.stack([self.tokens(c) for c in cells])
        hashes = np.array([c.hash64 for c in cells], dtype=_U64)
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
                        f"block {k + 1} reads {_input_label(inp)}, but blocks in this search space "
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

    def to_dict(self) -> dict:
        return {
            "ops": list(self.ops),
            "blocks": self.blocks,
            "lookback": self.lookback,
            "lookforward": self.lookforward,
        }


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
