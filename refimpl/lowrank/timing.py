"""Measured inference time of several models, interleaved in one run.

Wall-clock times on a shared machine drift; what survives is the *ratio* of two models timed in
the same run. :func:`compare_inference` interleaves the models round by round and reports
medians, so a slow moment hits all of them alike. See chapter 7 of the book, "Measured speed".
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..nn import Layer
from ..timing import time_inference

__all__ = ["compare_inference"]


def compare_inference(
    models: Mapping[str, Layer],
    inputs: np.ndarray,
    *,
    repeats: int = 7,
    warmup: int = 1,
    batch_size: int | None = None,
) -> dict[str, float]:
    """Median seconds each model takes for a forward pass over ``inputs`` (evaluation mode).

    Parameters
    ----------
    models : mapping of str to Layer
        Models to time, e.g. ``{"dense": model, "svd": small}``.
    inputs : ndarray, shape (N, ...)
        One batch every model accepts.
    repeats : int >= 1
        Rounds; in each round every model runs once, in the given order.
    warmup : int >= 0
        Untimed rounds first (caches, allocator).
    batch_size : int, optional
        Split ``inputs`` into batches of this size (default: one batch).

    Returns
    -------
    dict of str to float
        Median wall-clock seconds per model over the timed rounds.
    """
    return time_inference(
        models, inputs, repeats=repeats, warmup=warmup, batch_size=batch_size, statistic="median"
    )
