"""Shared pytest configuration for the test suite."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# Timing-based deadlines make property tests flaky on a loaded 2-core CI machine.
settings.register_profile(
    "refimpl",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("refimpl")
