"""What a cell's network costs, computed from the cell alone: parameters and multiply-adds.

The network is the one `worker.network` builds (read it alongside): a stem, 3N cells with
reductions at cells N and 2N (two stride-2 stem cells first for the imagenet stem), then
ReLU, global average pool and the classifier. Every tensor's shape in that network depends
only on the block count b, not on which blocks the cell has (a cell always emits all its
blocks, b*F channels). Which cells are part of the model depends only on which of H[c-1]
and H[c-2] the cell reads (a cell that reads only H[c-2] leaves every other cell unread,
and Keras keeps only what leads to the output). So the cost of a network is

    fixed[reads] (stem, head, the live cells' input projections)
    + sum over the 2b (operator, input kind) pairs of the cell of T[reads, op, kind]

where ``reads`` is H[c-1] only, H[c-2] only or both, and T adds up what that operator costs
at every live cell, reading H[c-2], H[c-1] or an earlier block. Gathering from the tables is
vectorised over a whole expansion.

Conventions, the same as a Keras model's:
  params  `count_params()` of the inference network: every weight, BatchNorm's moving mean
          and variance included (4 per channel); no auxiliary head, no drop path.
  flops   multiply-adds of one image's forward pass in the convolutions (depthwise and
          pointwise ones too) and the classifier, as the NASNet/PNAS papers count
          "Mult-Adds"; BatchNorm, ReLU, pooling, additions and concatenations are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator, Literal, Sequence

import numpy as np

from shared.errors import UserError

STEM_MULTIPLIER = {"cifar": 3.0, "imagenet": 1.0}  # as worker.network: slim's values
_SEP_KERNEL = {"sep3x3": 3, "sep5x5": 5, "sep7x7": 7}
KINDS = ("prev2", "prev1", "block")  # what an operator reads: H[c-2], H[c-1], an earlier block

# Shapes of the datasets the workers know by name (`worker.datasets.dataset_spec` has the
# others: npz and folder sets, which it reads).
KNOWN_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "digits": ((8, 8, 1), 10),
    "cifar10": ((32, 32, 3), 10),
    "cifar100": ((32, 32, 3), 100),
    "mnist": ((28, 28, 1), 10),
    "fashion_mnist": ((28, 28, 1), 10),
}


def known_dataset_spec(name: str, *, image_size: int | None = None) -> tuple[tuple[int, int, int], int]:
    """(input shape, classes) of a built-in dataset; UserError for the others."""
    if name in KNOWN_SHAPES:
        return KNOWN_SHAPES[name]
    raise UserError(f"the input shape of dataset {name!r} is not known here; costs need the worker's dataset reader")


@dataclass(frozen=True)
class NetworkSpec:
    """Everything besides the cell that fixes a network's cost."""

    input_shape: tuple[int, int, int]  # (height, width, channels)
    num_classes: int
    filters: int  # F
    cells_per_stage: int  # N
    stem: Literal["cifar", "imagenet"] = "cifar"
    stem_multiplier: float | None = None  # None: the stem's default (as worker.network)


@dataclass(frozen=True)
class Piece:
    """One costed piece of a network: an operator, a projection, the stem or the head,
    applied to a (h, w, cin) input with stride ``stride`` and ``cout`` output channels."""

    kind: str  # an operator name, or "project", "factorized", "stem_cifar", "stem_imagenet", "head"
    h: int
    w: int
    cin: int
    cout: int
    stride: int = 1

    @property
    def key(self) -> str:
        """The latency table's key: ``sep3x3 8x8x24>24/1``."""
        return f"{self.kind} {self.h}x{self.w}x{self.cin}>{self.cout}/{self.stride}"

    def out_hw(self) -> tuple[int, int]:
        if self.kind == "stem_imagenet":
            return (self.h - 3) // 2 + 1, (self.w - 3) // 2 + 1
        if self.kind == "factorized":
            return -(-self.h // 2), -(-self.w // 2)
        return -(-self.h // self.stride), -(-self.w // self.stride)

    def params(self) -> int:
        ci, co, k = self.cin, self.cout, self.kind
        bn = 4 * co  # gamma, beta, moving mean, moving variance
        if k in _SEP_KERNEL:  # two ReLU -> separable conv -> BN
            kk = _SEP_KERNEL[k] ** 2
            return kk * ci + ci * co + bn + kk * co + co * co + bn
        if k in ("identity", "avg3x3", "max3x3"):
            return ci * co + bn if self._adapts() else 0
        if k == "conv1x7_7x1":
            return 7 * ci * co + 7 * co * co + bn
        if k in ("dil3x3", "stem_cifar", "stem_imagenet"):
            return 9 * ci * co + bn
        if k in ("project", "factorized"):
            return ci * co + bn
        if k == "head":
            return ci * co + co  # the classifier's kernel and bias
        raise UserError(f"unknown operator {k!r}")

    def flops(self) -> int:
        ci, co, k = self.cin, self.cout, self.kind
        ho, wo = self.out_hw()
        px = ho * wo
        if k in _SEP_KERNEL:
            kk = _SEP_KERNEL[k] ** 2
            return (kk * ci + ci * co + kk * co + co * co) * px
        if k in ("identity", "avg3x3", "max3x3"):
            return ci * co * px if self._adapts() else 0
        if k == "conv1x7_7x1":
            return (7 * ci * co + 7 * co * co) * px
        if k == "dil3x3":  # convolved densely at the input's size, then subsampled
            return 9 * ci * co * self.h * self.w
        if k in ("stem_cifar", "stem_imagenet"):
            return 9 * ci * co * px
        if k in ("project", "factorized"):
            return ci * co * px
        if k == "head":
            return ci * co
        raise UserError(f"unknown operator {k!r}")

    def _adapts(self) -> bool:
        """identity and pooling add a 1x1 conv + BN only to change channels (identity: or stride)."""
        return self.cin != self.cout or (self.kind == "identity" and self.stride > 1)


@dataclass
class CellSlot:
    """One cell of the network: what reading H[c-1] and H[c-2] costs (their projections),
    and every operator it could apply, by (op, input kind)."""

    prev1: list[Piece]
    prev2: list[Piece]
    ops: dict[tuple[str, int], Piece]


def network_plan(spec: NetworkSpec, b: int, ops: Sequence[str]) -> tuple[list[Piece], list[CellSlot]]:
    """(stem and head pieces, the cells in order) of the network of a b-block cell."""
    f, n = spec.filters, spec.cells_per_stage
    mult = STEM_MULTIPLIER[spec.stem] if spec.stem_multiplier is None else spec.stem_multiplier
    h, w, c = spec.input_shape
    if spec.stem == "cifar":
        stem = Piece("stem_cifar", h, w, c, int(f * mult))
    else:
        stem = Piece("stem_imagenet", h, w, c, int(32 * mult))
    cur = (*stem.out_hw(), stem.cout)
    prev: tuple[int, int, int] | None = None
    slots = []
    for filters, stride in _cells(spec.stem, f, n):
        slot = _slot(cur, prev, filters, stride, b, ops)
        prev, cur = cur, (*slot.ops[(ops[0], 1)].out_hw(), b * filters)
        slots.append(slot)
    return [stem, Piece("head", 1, 1, cur[2], spec.num_classes)], slots


def _cells(stem: str, f: int, n: int) -> Iterator[tuple[int, int]]:
    """(filters, stride) of every cell, as `worker.network._build` lays them out."""
    if stem == "imagenet":
        yield int(f * 0.25), 2
        yield int(f * 0.5), 2
    scaling = 1.0
    for i in range(3 * n):
        reduction = i in (n, 2 * n)
        if reduction:
            scaling *= 2
        yield int(f * scaling), 2 if reduction else 1


def _slot(cur, prev, f: int, stride: int, b: int, ops: Sequence[str]) -> CellSlot:
    h1, w1, c1 = cur
    prev2: list[Piece] = []
    if prev is None:  # the first cell reads the raw stem output as H[c-2], unprojected
        src2 = cur
    else:
        h2, w2, c2 = prev
        if (h2, w2) != (h1, w1):
            prev2 = [Piece("factorized", h2, w2, c2, f)]
            src2 = (*prev2[0].out_hw(), f)
        elif c2 != f:
            prev2 = [Piece("project", h2, w2, c2, f)]
            src2 = (h2, w2, f)
        else:
            src2 = prev
    prev1 = [Piece("project", h1, w1, c1, f)]
    ho, wo = -(-h1 // stride), -(-w1 // stride)
    sources = {0: (src2, stride), 1: ((h1, w1, f), stride), 2: ((ho, wo, f), 1)}
    table = {(op, k): Piece(op, s[0], s[1], s[2], f, st) for op in ops for k, (s, st) in sources.items()}
    return CellSlot(prev1, prev2, table)


READS = ((True, False), (False, True), (True, True))  # (reads H[c-1], reads H[c-2]) cases


def live_cells(count: int, reads1: bool, reads2: bool) -> list[int]:
    """The cells (0-based) the output depends on, when every cell reads H[c-1] and/or H[c-2]."""
    live, todo = set(), [count - 1]
    while todo:
        j = todo.pop()
        if j < 0 or j in live:
            continue
        live.add(j)
        todo += ([j - 1] if reads1 else []) + ([j - 2] if reads2 else [])
    return sorted(live)


@dataclass(frozen=True)
class CostTables:
    """A network's cost as tables over the cell's tokens (see the module docstring); the
    first axis is the `READS` case."""

    fixed: np.ndarray  # (3, 2) params, flops of the stem, head and live projections
    per_op: np.ndarray  # (3, len(ops), 3 kinds, 2): one operator reading that kind, all live cells


@lru_cache(maxsize=64)
def cost_tables(spec: NetworkSpec, b: int, ops: tuple[str, ...]) -> CostTables:
    outer, slots = network_plan(spec, b, ops)

    def total(pieces) -> np.ndarray:
        return np.array([sum(p.params() for p in pieces), sum(p.flops() for p in pieces)], dtype=np.int64)

    fixed = np.zeros((3, 2), dtype=np.int64)
    per_op = np.zeros((3, len(ops), 3, 2), dtype=np.int64)
    for case, (r1, r2) in enumerate(READS):
        live = [slots[j] for j in live_cells(len(slots), r1, r2)]
        fixed[case] = total(outer + [p for s in live for p in (s.prev1 if r1 else []) + (s.prev2 if r2 else [])])
        for i, op in enumerate(ops):
            for k in range(3):
                per_op[case, i, k] = total([s.ops[(op, k)] for s in live])
    return CostTables(fixed, per_op)


def reads_case(codes: np.ndarray) -> np.ndarray:
    """(N, b, 2) input codes -> (N,) index into `READS`."""
    r1 = (codes == 1).any(axis=(1, 2))
    r2 = (codes == 0).any(axis=(1, 2))
    return np.where(r1 & r2, 2, np.where(r2, 1, 0))


def network_costs(tokens: np.ndarray, ops: Sequence[str], spec: NetworkSpec) -> tuple[np.ndarray, np.ndarray]:
    """(params, flops), each (N,) int64, of the networks of N cells given as tokens
    (as in `CellBatch`: per block ``I1, I2, O1, O2``, input codes and indices into ``ops``)."""
    t = np.asarray(tokens)
    if len(t) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    b = t.shape[1] // 4
    tab = cost_tables(spec, b, tuple(ops))
    t = t.reshape(len(t), b, 4)
    codes = t[:, :, 0:2].astype(np.intp)
    kinds = np.minimum(codes, 2)  # input code 0 = H[c-2], 1 = H[c-1], >= 2 a block
    case = reads_case(codes)
    ops_idx = t[:, :, 2:4].astype(np.intp)
    out = tab.per_op[case[:, None, None], ops_idx, kinds].sum(axis=(1, 2))  # (N, 2)
    out += tab.fixed[case]
    return out[:, 0].copy(), out[:, 1].copy()
