"""Scoring in NumPy (float32), fast because candidates share prefixes.

Beam expansion makes ~10^5 cells that differ only in their last block. The LSTM state after
token t depends only on tokens[:t+1], so `PrefixTree` finds the distinct prefixes at each
step (no assumption about row order) and the LSTM runs on those alone. Two more savings:
- a token's input projection ``emb @ W_x + b`` is one (V, 4H) table lookup;
- the recurrent projection ``h @ W_h`` is computed once per distinct *parent* prefix and
  gathered by its children, so the last step (one state per cell) needs no matrix product.
Sigmoids are written as ``0.5 * tanh(x / 2) + 0.5`` with the 1/2 folded into the weights:
one tanh pass per step over all four gates.

The MLP averages per-block embeddings before its first dense layer, which is linear, so the
first layer becomes four (V, H) tables (one per token slot) summed along the same tree.

Both match Keras' forward pass to float32 round-off (tests/controller/test_predictor.py).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

CHUNK = 16384  # rows per chunk at the last step: (CHUNK, 4H) float32 stays in cache-sized pieces
DENSE_KEYS = 1 << 24  # up to this many possible keys a step finds its distinct prefixes by table, not sort
THREADS = 2  # NumPy's elementwise work is single-threaded; chunks run on this many threads


@dataclass(frozen=True)
class PrefixTree:
    """Distinct prefixes of (N, T) token rows, step by step.

    ``parent[t]`` (U_t,) index of each distinct prefix of length t+1 among those of length t
    (all 0 at t=0: the empty prefix); ``token[t]`` (U_t,) its last token; ``leaf`` (N,) the
    index of each row's full sequence among the U_{T-1} distinct ones.
    """

    parent: list[np.ndarray]
    token: list[np.ndarray]
    leaf: np.ndarray

    @classmethod
    def build(cls, tokens: np.ndarray, vocab_size: int) -> "PrefixTree":
        n, steps = tokens.shape
        ids = np.zeros(n, np.int64)
        parent, token = [], []
        distinct = 1  # prefixes of length 0: the empty one
        for t in range(steps):
            keys = ids * vocab_size + tokens[:, t]
            if distinct * vocab_size <= DENSE_KEYS:  # a table over all keys: no sort
                seen = np.zeros(distinct * vocab_size, bool)
                seen[keys] = True
                uniq = np.flatnonzero(seen)
                rank = np.cumsum(seen, dtype=np.int64) - 1
                ids = rank[keys]
            else:
                uniq, ids = np.unique(keys, return_inverse=True)
            parent.append(uniq // vocab_size)
            token.append(uniq % vocab_size)
            distinct = len(uniq)
        return cls(parent, token, ids.reshape(n))


def _chunks(n: int) -> list[slice]:
    return [slice(a, min(a + CHUNK, n)) for a in range(0, n, CHUNK)]


def _threaded(fn, pieces):
    if len(pieces) == 1 or THREADS == 1:
        return [fn(p) for p in pieces]
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(fn, pieces))


def lstm_tables(w: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A member's LSTM folded for scoring: x_table (V, 4H), u (H, 4H), w_out (H,), b_out ().

    Gate order i, f, g, o (Keras'); the i, f, o columns are halved, so that tanh of the
    gates gives sigmoid(z) = (tanh(z/2) + 1) / 2 in one pass over all four.
    """
    hidden = w["recurrent"].shape[0]
    scale = np.ones(4 * hidden, np.float32)
    scale[: 2 * hidden] = scale[3 * hidden :] = 0.5
    x_table = ((w["emb"] @ w["kernel"] + w["bias"]) * scale).astype(np.float32)  # token's input projection
    u = (w["recurrent"] * scale).astype(np.float32)
    return x_table, u, w["w_out"][:, 0].astype(np.float32), np.asarray(w["b_out"][0], np.float32)


def lstm_scores(tree: PrefixTree, w: dict[str, np.ndarray]) -> np.ndarray:
    """One LSTM member's predictions (N,) float32 for the rows of ``tree``."""
    x_table, u, w_out, b_out = lstm_tables(w)
    hidden = u.shape[0]
    w_out = 0.5 * w_out  # h = 0.5 (T_o + 1) tanh(c), 0.5 here

    def step(z: np.ndarray, c_prev: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        np.tanh(z, out=z)
        ti, tf, tg, to = (z[:, k * hidden : (k + 1) * hidden] for k in range(4))
        # c = sigmoid(f) c_prev + sigmoid(i) g = 0.5 ((T_f + 1) c_prev + (T_i + 1) g)
        ti += 1.0
        ti *= tg
        if c_prev is not None:
            tf += 1.0
            tf *= c_prev
            ti += tf
        ti *= 0.5
        c = ti
        to += 1.0
        to *= np.tanh(c)  # 2h
        return to, c

    h = c = None  # state of the empty prefix is zero
    last = len(tree.token) - 1
    for t in range(last):
        z = x_table[tree.token[t]]
        if h is not None:
            assert c is not None  # h and c are set together
            z += (h @ u)[tree.parent[t]]
            h, c = step(z, c[tree.parent[t]])
        else:
            h, c = step(z, None)
        h = 0.5 * h
    r = h @ u if h is not None else None  # recurrent projection per distinct parent

    def leaves(rows: slice) -> np.ndarray:
        par, tok = tree.parent[last][rows], tree.token[last][rows]
        z = x_table[tok]
        if r is not None:
            assert c is not None  # r is set only with a state
            z += r[par]
            h2, _ = step(z, c[par])
        else:
            h2, _ = step(z, None)
        return h2 @ w_out + b_out

    logit = np.concatenate(_threaded(leaves, _chunks(len(tree.token[last]))))
    out = 0.5 * np.tanh(0.5 * logit) + 0.5
    return out[tree.leaf].astype(np.float32)


def mlp_scores(tree: PrefixTree, w: dict[str, np.ndarray]) -> np.ndarray:
    """One MLP member's predictions (N,) float32 for the rows of ``tree`` (no padding)."""
    embed = w["emb"].shape[1]
    tables = [(w["emb"] @ w["w1"][s * embed : (s + 1) * embed]).astype(np.float32) for s in range(4)]
    steps = len(tree.token)
    inv_blocks = np.float32(4.0 / steps)
    total = None  # per distinct prefix: sum of its tokens' slot tables, (U_t, H)
    for t in range(steps):
        add = tables[t % 4][tree.token[t]]
        total = add if total is None else total[tree.parent[t]] + add
    assert total is not None, "a prefix tree has at least one step"

    def rest(rows: slice) -> np.ndarray:
        a = total[rows] * inv_blocks + w["b1"]
        np.maximum(a, 0, out=a)
        a = a @ w["w2"] + w["b2"]
        np.maximum(a, 0, out=a)
        return a @ w["w_out"][:, 0] + w["b_out"][0]

    logit = np.concatenate(_threaded(rest, _chunks(len(total))))
    out = 1.0 / (1.0 + np.exp(-logit))
    return out[tree.leaf].astype(np.float32)


SCORERS = {"lstm": lstm_scores, "mlp": mlp_scores}
