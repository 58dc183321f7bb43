"""LSTM scoring in TensorFlow: all members at once, over shared prefixes, on a GPU if there is one.

The same computation as `fast.lstm_scores` (same prefix tree, same folded weights), with the
members stacked on a leading axis so each step is one batched op for the whole ensemble, and
every step's elementwise work fused into one compiled kernel (XLA) instead of NumPy's one pass
per operation. The cells' last step (one state per candidate, ~10^5 of them) runs in fixed-size
chunks so it compiles once and its (members, chunk, 4H) gates stay bounded in memory.

Shapes vary from call to call (the number of distinct prefixes at each step), so a step's rows
are cut into pieces of fixed sizes: whole `CHUNK`s, then powers of two down to `MIN_ROWS`
(`_sizes`). A process therefore compiles a handful of shapes once and reuses them for every
level, and pads fewer than `MIN_ROWS` rows a step. Padding rows point at prefix 0 and are
dropped.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from controller.predictor.fast import PrefixTree, lstm_tables

CHUNK = 16384  # rows per compiled call at the large steps: (members, CHUNK, 4H) gates, 131 MB at 5 members
MIN_ROWS = 256  # the smallest padded step: few shapes to compile


def _cell(z, c_prev):
    """Gates z (..., 4H) already scaled for the tanh form of sigmoid (see `fast`) -> (h, c)."""
    t_i, t_f, t_g, t_o = tf.split(tf.tanh(z), 4, axis=-1)
    c = 0.5 * ((t_f + 1.0) * c_prev + (t_i + 1.0) * t_g)
    return 0.5 * (t_o + 1.0) * tf.tanh(c), c


def _inputs(x_table, r, c_prev, token, parent):
    # x_table (M, V, 4H), r (M, P, 4H) = h_prev @ u per distinct parent, c_prev (M, P, H)
    z = tf.gather(x_table, token, axis=1) + tf.gather(r, parent, axis=1)  # (M, rows, 4H)
    return z, tf.gather(c_prev, parent, axis=1)


def _state_step(x_table, u, r, c_prev, token, parent):
    """One step over a chunk of distinct prefixes: their (h, c) and the next step's h @ u."""
    h, c = _cell(*_inputs(x_table, r, c_prev, token, parent))
    return tf.linalg.matmul(h, u), c  # (M, rows, 4H), (M, rows, H)


def _leaf_step(x_table, r, c_prev, token, parent, w_out, b_out):
    """The last step over a chunk of cells: each member's predicted accuracy (M, rows)."""
    h, _ = _cell(*_inputs(x_table, r, c_prev, token, parent))
    logit = tf.einsum("mnh,mh->mn", h, w_out) + b_out[:, None]
    return tf.sigmoid(logit)


_compiled: dict[bool, tuple] = {}


def _functions(jit: bool):
    if jit not in _compiled:
        _compiled[jit] = (tf.function(_state_step, jit_compile=jit), tf.function(_leaf_step, jit_compile=jit))
    return _compiled[jit]


def _sizes(n: int) -> list[int]:
    """Piece sizes covering ``n`` rows: whole `CHUNK`s, then the rest as powers of two.

    10,240 rows are 8,192 + 2,048, not one 16,384 (padding only in the last piece, under
    `MIN_ROWS` rows): each size is compiled once and a step computes few padding rows.
    """
    sizes = [CHUNK] * (n // CHUNK)
    rest = n % CHUNK
    while rest > MIN_ROWS:
        size = 1 << (rest.bit_length() - 1)
        sizes.append(size)
        rest -= size
    if rest or not sizes:
        sizes.append(MIN_ROWS)
    return sizes


def _pieces(index: np.ndarray) -> list[np.ndarray]:
    """``index`` as int32 pieces of the sizes `_sizes` gives (padding points at row 0)."""
    sizes = _sizes(len(index))
    padded = np.zeros(sum(sizes), np.int32)
    padded[: len(index)] = index
    return np.split(padded, np.cumsum(sizes)[:-1])


def lstm_scores_tf(tree: PrefixTree, weights: list[dict[str, np.ndarray]], *, jit: bool = True) -> np.ndarray:
    """Every member's predictions (members, N) float32 for the rows of ``tree``."""
    tables = [lstm_tables(w) for w in weights]
    x_table, u, w_out, b_out = (tf.constant(np.stack(parts)) for parts in zip(*tables, strict=True))
    members, hidden = u.shape[0], u.shape[1]
    state_step, leaf_step = _functions(jit)
    r = tf.zeros((members, 1, 4 * hidden))  # the empty prefix: h = c = 0
    c = tf.zeros((members, 1, hidden))
    last = len(tree.token) - 1
    for t in range(last):
        outs = [state_step(x_table, u, r, c, tok, par)
                for tok, par in zip(_pieces(tree.token[t]), _pieces(tree.parent[t]), strict=True)]  # fmt: skip
        r, c = (tf.concat(parts, axis=1) if len(parts) > 1 else parts[0] for parts in zip(*outs, strict=True))
    leaves = [leaf_step(x_table, r, c, tok, par, w_out, b_out)
              for tok, par in zip(_pieces(tree.token[last]), _pieces(tree.parent[last]), strict=True)]  # fmt: skip
    out = np.concatenate([p.numpy() for p in leaves], axis=1)[:, : len(tree.token[last])]
    return out[:, tree.leaf]
