"""A cell as a network: its canonical form and its network id.

A cell's output concatenates *all* its blocks (`worker.network`), so the order in which the
blocks are written does not change the network: two cells whose blocks are the same up to
their order, with the inputs renumbered to match, compute the same function with the same
parameters (the concatenation's channels permuted). They are one network and share one
**network id**.

The network id, vectorised over many cells (N rows of 4b tokens, as in `CellBatch`):

1. Each block gets a structural hash ``u``: a hash of its two (input, operator) pairs, in
   either order, where an input is ``H[c-2]``, ``H[c-1]`` or an earlier block's ``u``. Two
   blocks have the same ``u`` exactly when they compute the same expression of the cell
   inputs ("twins").
2. Every block is an output, so the *multiset* of the blocks' ``u`` determines the network
   unless some block reads a block that has a twin (which twin it reads then matters): the
   network id is a hash of that multiset (a sum, so no sorting, and an expansion computes
   only the new block's ``u`` per candidate).
3. Cells where a block reads a twin (rare outside beams crowded with one block) are told
   apart exactly: blocks are sorted by (depth, ``u``), a topological order, every order of
   the twins is tried with the inputs renumbered to match, and the smallest arch id is kept.

The canonical cell (`canonical_cell`) is the cell in that sorted order, inputs renumbered.
Hashes use operator names, so the id is the same on every machine and for any order of the
operator list.
"""

from __future__ import annotations

from itertools import permutations, product
from typing import Iterable, Sequence

import numpy as np

from shared.space.cell import Cell
from shared.space.hashing import SEED, U64, fold, format_id, mix, op_codes, pair_hash

# Structural hashes of H[c-2] and H[c-1] (any two fixed distinct values would do).
_PREV_U = np.array([0x243F6A8885A308D3, 0x13198A2E03707344], dtype=U64)
_SET_SALT = U64(0xA4093822299F31D0)  # keeps a network id apart from an arch id
_TWIN_SALT = U64(0x082EFA98EC4E6C89)


def _split(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(N, 4b) tokens -> inputs (N, b, 2) input codes, ops (N, b, 2) operator indices, b."""
    t = np.asarray(tokens).reshape(len(tokens), -1, 4)
    return t[:, :, 0:2].astype(np.int64), t[:, :, 2:4].astype(np.int64), t.shape[1]


def _structure(inputs: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per block: structural hash ``u`` (N, b) uint64 and depth (N, b) int64."""
    n, b, _ = inputs.shape
    node_u = np.empty((n, b + 2), dtype=U64)
    node_u[:, :2] = _PREV_U
    depth = np.zeros((n, b + 2), dtype=np.int64)
    rows = np.arange(n)
    with np.errstate(over="ignore"):
        for k in range(b):
            side = [mix(node_u[rows, inputs[:, k, s]] ^ mix(codes[:, k, s] + U64(1))) for s in (0, 1)]
            node_u[:, k + 2] = fold(np.full(n, SEED, dtype=U64), side[0], side[1])
            depth[:, k + 2] = 1 + np.maximum(depth[rows, inputs[:, k, 0]], depth[rows, inputs[:, k, 1]])
    return node_u[:, 2:], depth[:, 2:]


def _relabelled(inputs: np.ndarray, ops: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cells with block ``order[:, p]`` moved to position p and inputs renumbered."""
    n, b, _ = inputs.shape
    rows = np.arange(n)[:, None]
    inv = np.empty_like(order)
    inv[rows, order] = np.arange(b)
    new_in = inputs[rows, order]  # (N, b, 2)
    code_map = np.concatenate([np.tile([0, 1], (n, 1)), inv + 2], axis=1)  # old code -> new code
    new_in = code_map[np.arange(n)[:, None, None], new_in]
    return new_in, ops[rows, order]


def _arch_hashes(inputs: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Arch ids (as `Cell.hash64`) of cells given as input codes and operator codes."""
    n, b, _ = inputs.shape
    h = np.full(n, SEED, dtype=U64)
    for k in range(b):
        h = fold(h, pair_hash(inputs[:, k, 0], codes[:, k, 0]), pair_hash(inputs[:, k, 1], codes[:, k, 1]))
    return h


def _multiset_hash(u: np.ndarray) -> np.ndarray:
    """(N, b) block hashes -> (N,) hash of their multiset (a sum: the order does not matter)."""
    with np.errstate(over="ignore"):
        return mix(mix(u ^ _SET_SALT).sum(axis=1, dtype=U64))


def _ambiguous(inputs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(N,) bool: some block reads a block that has a twin, the one case where the multiset
    of block hashes does not determine the network (which twin is read matters)."""
    n, b, _ = inputs.shape
    rows = np.arange(n)
    out = np.zeros(n, dtype=bool)
    for k in range(b):
        for s in (0, 1):
            code = inputs[:, k, s]
            uj = u[rows, np.maximum(code - 2, 0)]
            out |= (code >= 2) & ((u == uj[:, None]).sum(axis=1) >= 2)
    return out


def _orders(u: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """(N, b) position -> old block: sorted by (depth, u), a topological order."""
    return np.lexsort((u, depth), axis=-1)


def _run_perms(equal_next: tuple[bool, ...]) -> np.ndarray:
    """Every permutation of positions that only swaps places inside runs of equal blocks.

    ``equal_next[i]``: position i and i+1 hold twins. Returns (P, b) position arrays.
    """
    runs, start = [], 0
    for i, eq in enumerate(equal_next + (False,)):
        if not eq:
            runs.append(list(range(start, i + 1)))
            start = i + 1
    perms = [np.concatenate([np.array(p) for p in combo]) for combo in product(*(list(permutations(r)) for r in runs))]
    return np.stack(perms)


def _twin_ids(
    inputs: np.ndarray, op_idx: np.ndarray, names: np.ndarray, u: np.ndarray, depth: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ids of cells with twins: the smallest arch id over every order of the twins.

    The multiset of block hashes cannot tell which twin a later block reads (two readers of
    one twin, or one reader each); the renumbered cells can. Rows are grouped by where their
    twins sit, so each row tries only the orders of its own twins. Returns (ids, orders).
    """
    order = _orders(u, depth)
    su = np.take_along_axis(u, order, axis=1)
    eq = su[:, 1:] == su[:, :-1]  # (N, b-1)
    best = np.full(len(inputs), np.iinfo(np.uint64).max, dtype=U64)
    best_order = order.copy()
    code = (eq.astype(np.int64) << np.arange(eq.shape[1], dtype=np.int64)).sum(axis=1)
    for g in np.unique(code):
        rows = np.nonzero(code == g)[0]
        for p in _run_perms(tuple(bool(int(g) >> i & 1) for i in range(eq.shape[1]))):
            cand = order[rows][:, p]
            ci, co = _relabelled(inputs[rows], op_idx[rows], cand)
            h = _arch_hashes(ci, names[co])
            better = h < best[rows]
            best[rows[better]], best_order[rows[better]] = h[better], cand[better]
    return mix(best ^ _TWIN_SALT), best_order


def network_hashes(tokens: np.ndarray, ops: Sequence[str]) -> np.ndarray:
    """(N,) uint64 network ids of cells given as tokens (as in `CellBatch`: per block
    ``I1, I2, O1, O2``, input codes and indices into ``ops``)."""
    if len(tokens) == 0:
        return np.empty(0, dtype=U64)
    inputs, op_idx, _ = _split(tokens)
    names = op_codes(tuple(ops))
    u, depth = _structure(inputs, names[op_idx])
    ids = _multiset_hash(u)
    twins = np.nonzero(_ambiguous(inputs, u))[0]
    if len(twins):
        ids[twins] = _twin_ids(inputs[twins], op_idx[twins], names, u[twins], depth[twins])[0]
    return ids


def expansion_network_hashes(beam_tokens: np.ndarray, blocks: np.ndarray, ops: Sequence[str]) -> np.ndarray:
    """Network ids of every beam cell extended by every block (parent-major, as
    `SearchSpace.expand` orders them), computing only the new block's hash per candidate.

    ``beam_tokens`` (K, 4b), ``blocks`` (M, 4) ``I1, I2, O1, O2``; returns (K*M,) uint64,
    equal to `network_hashes` of the expanded tokens.
    """
    names = op_codes(tuple(ops))
    inputs, op_idx, b = _split(beam_tokens)
    k, m = len(inputs), len(blocks)
    u, depth = _structure(inputs, names[op_idx])  # (K, b)
    node_u = np.concatenate([np.tile(_PREV_U, (k, 1)), u], axis=1)  # (K, b+2), by input code
    blk = blocks.astype(np.int64)
    with np.errstate(over="ignore"):
        sides = [mix(node_u[:, blk[:, s]] ^ mix(names[blk[:, 2 + s]] + U64(1))[None, :]) for s in (0, 1)]
        new_u = fold(np.full((k, m), SEED, dtype=U64), sides[0], sides[1])  # (K, M)
        parent_sum = mix(u ^ _SET_SALT).sum(axis=1, dtype=U64)
        ids = mix(parent_sum[:, None] + mix(new_u ^ _SET_SALT))
    # Which candidates are ambiguous (see `_ambiguous`), from the parents' flags and the new block.
    twin = np.repeat(_ambiguous(inputs, u), m).reshape(k, m)
    mult = (u[:, :, None] == u[:, None, :]).sum(axis=2)  # (K, b): copies of each parent block
    is_read = np.zeros((k, b), dtype=bool)
    for j in range(b):
        is_read[:, j] = (inputs == j + 2).any(axis=(1, 2))
    for j in range(b):
        same = new_u == u[:, j : j + 1]  # (K, M): the new block is a twin of block j
        twin |= same & is_read[:, j : j + 1]
        reads_j = (blk[:, 0] == j + 2) | (blk[:, 1] == j + 2)  # (M,)
        twin[:, reads_j] |= (mult[:, j : j + 1] + same[:, reads_j]) >= 2
    ids = ids.reshape(-1)
    rows = np.nonzero(twin.reshape(-1))[0]
    if len(rows):
        parent, new = rows // m, rows % m
        tokens = np.concatenate([beam_tokens[parent], blocks[new]], axis=1)
        ids[rows] = network_hashes(tokens, ops)
    return ids


def distinct_rows(hashes: np.ndarray, exclude: Iterable[str] = ()) -> np.ndarray:
    """Rows of the first cell of every network in ``hashes``, leaving out the network ids in
    ``exclude`` (those a run already has), in their original order."""
    _, first = np.unique(hashes, return_index=True)
    rows = np.sort(first)
    known = np.array([int(x, 16) for x in exclude], dtype=U64)
    if len(known):
        rows = rows[~np.isin(hashes[rows], known)]
    return rows


def canonical(tokens: np.ndarray, ops: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Network ids (N,) uint64 and canonical tokens (N, 4b): blocks sorted by (depth, block
    hash), twins in the order of the smallest arch id, inputs renumbered to match."""
    inputs, op_idx, b = _split(tokens)
    n = len(inputs)
    names = op_codes(tuple(ops))
    u, depth = _structure(inputs, names[op_idx])
    ids = _multiset_hash(u)
    order = _orders(u, depth)
    twins = np.nonzero(_ambiguous(inputs, u))[0]
    if len(twins):
        ids[twins], order[twins] = _twin_ids(inputs[twins], op_idx[twins], names, u[twins], depth[twins])
    new_in, new_ops = _relabelled(inputs, op_idx, order)
    out = np.empty((n, b, 4), dtype=np.int16)
    out[:, :, 0:2], out[:, :, 2:4] = new_in, new_ops
    return ids, out.reshape(n, 4 * b)


def _tokens_of(cell: Cell) -> tuple[np.ndarray, tuple[str, ...]]:
    ops = tuple(sorted(cell.ops))
    idx = {o: i for i, o in enumerate(ops)}
    t = [v for blk in cell.blocks for v in (blk.in1 + 2, blk.in2 + 2, idx[blk.op1], idx[blk.op2])]
    return np.array([t], dtype=np.int16), ops


def network_id(cell: Cell) -> str:
    """The 16-hex-digit network id of one cell: equal for cells that are the same network."""
    tokens, ops = _tokens_of(cell)
    return format_id(network_hashes(tokens, ops)[0])


def canonical_cell(cell: Cell) -> Cell:
    """The network's canonical cell: its arch id is the network id."""
    tokens, ops = _tokens_of(cell)
    _, t = canonical(tokens, ops)
    blocks = t[0].reshape(-1, 4)
    return Cell.of([[int(a) - 2, ops[int(x)], int(c) - 2, ops[int(y)]] for a, c, x, y in blocks])


def network_ids(cells: Sequence[list]) -> list[str]:
    """Network ids of cells given as JSON-ready lists (what the store keeps), in order."""
    return [network_id(Cell.from_json(c)) for c in cells]


def network_id_of(cell_json: list) -> str:
    """The network id of one cell as the store keeps it (a JSON-ready list)."""
    return network_id(Cell.from_json(cell_json))


def equivalent_cells(cell: Cell) -> list[Cell]:
    """Every way of writing the same network as ``cell`` (block orders where each block reads
    only earlier ones), ``cell`` itself included, in arch-id order."""
    b = cell.num_blocks
    found: dict[int, Cell] = {}
    for perm in permutations(range(b)):  # perm[p] = old block at position p
        pos = {old: p for p, old in enumerate(perm)}
        blocks = []
        for p, old in enumerate(perm):
            blk = cell.blocks[old]
            ins = [i if i < 0 else pos[i] for i in (blk.in1, blk.in2)]
            if any(i >= p for i in ins):
                break
            blocks.append([ins[0], blk.op1, ins[1], blk.op2])
        else:
            c = Cell.of(blocks)
            found.setdefault(c.hash64, c)
    return [found[h] for h in sorted(found)]
