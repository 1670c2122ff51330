"""Wall-clock timing that compares fairly: interleaved rounds, one statistic, ratios in one run.

Used by the chapters (speedups of pruned, shrunk and factorized models), the unit-pruning and
low-rank packages, and ``benchmarks/``. Timings are reported, never asserted in tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np

from .nn import Layer
from .validation import check_int


def time_call(fn: Callable[[], object], *, repeats: int = 7, statistic: str = "min") -> float:
    """Seconds one call of ``fn()`` takes: ``min`` or ``median`` of ``repeats`` after a warm-up."""
    repeats = check_int(repeats, "repeats", 1)
    if statistic not in ("min", "median"):
        raise ValueError(f"statistic must be 'min' or 'median', got {statistic!r}")
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.min(times) if statistic == "min" else np.median(times))


def time_inference(
    models: Mapping[str, Layer],
    inputs: np.ndarray,
    *,
    repeats: int = 5,
    warmup: int = 0,
    batch_size: int | None = None,
    statistic: str = "min",
) -> dict[str, float]:
    """Seconds of one evaluation pass over ``inputs`` for each model, measured together.

    The models run in turn, one pass each per round (interleaved, so a change of load on the
    machine hits all of them alike), ``warmup`` untimed rounds first. Compare models by the
    ratio of the returned times; absolute times depend on the machine.

    Parameters
    ----------
    models : mapping of str to Layer
        For example ``{"dense": model, "small": shrunk}``.
    inputs : ndarray, shape (N, ...)
        Inputs every model accepts.
    repeats, warmup : int
        Timed rounds (>= 1) and untimed rounds before them (>= 0).
    batch_size : int, optional
        Rows per forward call (default: all of ``inputs`` at once).
    statistic : {"min", "median"}
        The fastest round (least disturbed by other load) or the median round.
    """
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty mapping of names to models")
    for name, model in models.items():
        if not isinstance(model, Layer):
            raise TypeError(f"models[{name!r}] must be a refimpl.nn layer or model")
    repeats = check_int(repeats, "repeats", 1)
    warmup = check_int(warmup, "warmup", 0)
    if statistic not in ("min", "median"):
        raise ValueError(f"statistic must be 'min' or 'median', got {statistic!r}")
    x = np.asarray(inputs)
    step = len(x) if batch_size is None else check_int(batch_size, "batch_size", 1)
    times: dict[str, list[float]] = {name: [] for name in models}
    for round_ in range(warmup + repeats):
        for name, model in models.items():
            start = time.perf_counter()
            for i in range(0, len(x), step):
                model.forward(x[i : i + step], train=False)
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    reduce = np.min if statistic == "min" else np.median
    return {name: float(reduce(t)) for name, t in times.items()}
