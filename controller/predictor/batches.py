"""An epoch's batches for fitting the predictor: any cells together, or cells of one length.

NumPy only (the trainer in `stacked` compiles what it is given; `ensemble` names the choice).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Batches = Literal["mixed", "by_length"]


def epoch_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, batches: Batches):
    """One epoch's batches: row indices (nb, B), 1/0 for real/padding rows (nb, B), and each
    batch's longest row in tokens (nb,); every row once.

    "mixed": the rows in ``rng``'s order, cut into batches (the last one padded).
    "by_length": the rows in ``rng``'s order grouped by length, each group cut into batches
    (each group's last one padded), the batches in ``rng``'s order: a batch holds cells of one
    block count, so the LSTM runs only their tokens, not the longest cell's.
    """
    order = rng.permutation(len(lengths))
    if batches == "mixed":
        groups = [order]
    else:
        groups = [order[lengths[order] == size] for size in np.unique(lengths)]
    parts = [g[i : i + batch_size] for g in groups for i in range(0, len(g), batch_size)]
    if batches == "by_length":
        parts = [parts[i] for i in rng.permutation(len(parts))]
    rows = np.zeros((len(parts), batch_size), np.int32)
    real = np.zeros((len(parts), batch_size), np.float32)
    for i, part in enumerate(parts):
        rows[i, : len(part)], real[i, : len(part)] = part, 1.0
    return rows, real, np.array([lengths[p].max() for p in parts], np.int32)
