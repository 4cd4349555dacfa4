"""Hypothesis profiles for ``fuzz/`` (see :mod:`fuzz.profiles`): ``FUZZ_PROFILE=deep``
runs every property test with at least 100,000 examples and no deadline."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

from fuzz.profiles import DEEP, DEEP_EXAMPLES

settings.register_profile(
    "deep",
    max_examples=DEEP_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
if DEEP:
    settings.load_profile("deep")
