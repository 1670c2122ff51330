"""Mini-batch iteration with a seeded shuffle."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def iterate_minibatches(
    X: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool = True,
    rng: int | np.random.Generator | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(X[idx], y[idx])`` mini-batches covering the data once.

    Parameters
    ----------
    X : ndarray, shape (N, ...)
        Inputs.
    y : ndarray, shape (N, ...)
        Targets, one row per input.
    batch_size : int
        Rows per batch (positive). The last batch holds the remainder and may be smaller.
    shuffle : bool
        Draw one random permutation per call (``True``) or keep the stored order.
    rng : int, numpy.random.Generator or None
        Seed or generator for the permutation. The same seed gives the same batches.
    """
    if len(X) != len(y):
        raise ValueError(f"X and y must have the same length, got {len(X)} and {len(y)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(X)
    order = np.random.default_rng(rng).permutation(n) if shuffle else np.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield X[idx], y[idx]
