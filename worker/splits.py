"""The seeded validation split: the same rows on every machine, for every kind of dataset."""

from __future__ import annotations

import numpy as np

from shared.errors import UserError

PAPER_VALIDATION = 5000  # the paper holds out 5,000 CIFAR-10 training images


def split_indices(n: int, *, validation_size: float | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) row indices: a seeded permutation, the same on every machine.

    ``validation_size`` None: the paper's 5,000 where the data has at least 25,000 images
    (CIFAR, MNIST), else a fifth (digits, small npz or folder sets)."""
    if validation_size is None:
        validation_size = PAPER_VALIDATION if n >= 5 * PAPER_VALIDATION else 0.2
    if validation_size <= 0:
        raise UserError(f"validation size must be > 0, got {validation_size}")
    n_val = int(validation_size) if validation_size >= 1 else int(round(validation_size * n))
    if n_val < 1 or n_val >= n:
        raise UserError(
            f"validation size {validation_size:g} leaves no images for training or validation "
            f"(the training data has {n})"
        )
    perm = np.random.default_rng(seed).permutation(n)  # PCG64: stable across numpy versions
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
