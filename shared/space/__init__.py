"""The PNAS search space: cells and their encoding (`cell`), arrays of cells (`batch`), the
space and its enumeration (`searchspace`), ids (`hashing`) and cells as networks (`network`)."""

from shared.space.batch import CellBatch
from shared.space.cell import (
    BUILTIN_CELLS,
    KNOWN_OPS,
    PAPER_OPS,
    PNASNET5,
    PREV1,
    PREV2,
    Block,
    Cell,
    parse_ops,
)
from shared.space.hashing import format_id, op_code
from shared.space.searchspace import SearchSpace

__all__ = [
    "BUILTIN_CELLS", "KNOWN_OPS", "PAPER_OPS", "PNASNET5", "PREV1", "PREV2",
    "Block", "Cell", "CellBatch", "SearchSpace", "format_id", "op_code", "parse_ops",
]
