"""Measured inference time of several models, interleaved in one run.

Wall-clock times on a shared machine drift; what survives is the *ratio* of two models timed in
the same run. :func:`compare_inference` interleaves the models round by round and reports
medians, so a slow moment hits all of them alike. See chapter 7 of the book, "Measured speed".
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from ..nn import Layer
from ._checks import check_int

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
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty mapping of name to model")
    for name, model in models.items():
        if not isinstance(model, Layer):
            raise TypeError(f"models[{name!r}] must be a refimpl.nn layer or model")
    repeats = check_int(repeats, "repeats", 1)
    warmup = check_int(warmup, "warmup", 0)
    x = np.asarray(inputs)
    step = len(x) if batch_size is None else check_int(batch_size, "batch_size")
    times: dict[str, list[float]] = {name: [] for name in models}
    for round_ in range(warmup + repeats):
        for name, model in models.items():
            start = time.perf_counter()
            for i in range(0, len(x), step):
                model.forward(x[i : i + step], train=False)
            elapsed = time.perf_counter() - start
            if round_ >= warmup:
                times[name].append(elapsed)
    return {name: float(np.median(t)) for name, t in times.items()}
