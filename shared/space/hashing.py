"""The 64-bit hashes behind every id: vectorised in NumPy, the same on every machine.

Ids use operator *names* (crc32), never their index in an operator list, so the same cell has
the same id whatever the list's order. Every function works on uint64 arrays and wraps mod
2^64 by design.
"""

from __future__ import annotations

import zlib

import numpy as np

U64 = np.uint64
MASK = (1 << 64) - 1
SEED = 0x9E3779B97F4A7C15  # golden-ratio constant: any fixed odd number would do


def mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> U64(30))
        x = x * U64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> U64(27))
        x = x * U64(0x94D049BB133111EB)
        return x ^ (x >> U64(31))


def op_code(name: str) -> int:
    """A stable 32-bit code for an operator name (crc32, the same on every machine)."""
    return zlib.crc32(name.encode("utf-8"))


def op_codes(ops: tuple[str, ...] | list[str]) -> np.ndarray:
    """(len(ops),) uint64: `op_code` of each name."""
    return np.array([op_code(o) for o in ops], dtype=U64)


def pair_hash(input_code: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """One (input code, operator code) pair of a block."""
    return mix((input_code.astype(U64) << U64(32)) | codes.astype(U64))


def fold(h: np.ndarray, pair_a: np.ndarray, pair_b: np.ndarray) -> np.ndarray:
    """Add one block (two pair hashes, in either order) to running cell hashes."""
    lo, hi = np.minimum(pair_a, pair_b), np.maximum(pair_a, pair_b)
    return mix(mix(h ^ lo) ^ hi)


def format_id(h: int | np.integer) -> str:
    """A hash as the 16 hex digits users see (arch ids, network ids)."""
    return f"{int(h) & MASK:016x}"
