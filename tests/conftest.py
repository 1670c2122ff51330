"""Shared pytest configuration for the test suite."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

# Timing-based deadlines make property tests flaky on a loaded 2-core CI machine, and the same
# examples on every run make a red run reproducible (derandomize; the long fuzz run of
# tests/test_hostile_inputs.py takes more examples, REFIMPL_FUZZ_EXAMPLES).
settings.register_profile(
    "refimpl",
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("refimpl")


class _Outcome:
    """What :func:`peak_memory` saw: the value returned or the exception raised, and the peak
    number of bytes allocated meanwhile (NumPy reports its buffers to tracemalloc)."""

    def __init__(self, value, error, peak):
        self.value, self.error, self.peak = value, error, peak

    def __repr__(self):
        what = f"raised {self.error!r}" if self.error is not None else "returned"
        return f"<{what}, peak {self.peak / 2**20:.1f} MiB>"


def measure_peak(fn, *args, **kwargs):
    """Run ``fn(*args, **kwargs)`` under tracemalloc and return an :class:`_Outcome`.

    Exceptions are caught and returned (``outcome.error``), so a test can assert both the
    error and that nothing large was allocated before it.
    """
    import tracemalloc

    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    value = error = None
    try:
        value = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - returned to the test, which checks its type
        error = exc
    peak = tracemalloc.get_traced_memory()[1] - base
    if started:
        tracemalloc.stop()
    return _Outcome(value, error, peak)


@pytest.fixture
def peak_memory():
    """``peak_memory(fn, *args)``: run ``fn`` and return its outcome with the peak bytes it
    allocated (see :func:`measure_peak`); an allocation bomb shows up as a huge peak."""
    return measure_peak
