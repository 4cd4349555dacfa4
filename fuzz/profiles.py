"""Example counts for the property tests: modest by default, deep by hand.

Every ``@settings(max_examples=…)`` in ``fuzz/`` goes through :func:`examples`, so one
switch scales them all::

    FUZZ_PROFILE=deep python3 -m pytest fuzz -p no:cacheprovider -p no:timeout  # >= 100,000 each
    FUZZ_PROFILE=deep FUZZ_EXAMPLES=250000 python3 -m pytest fuzz/test_fuzz_wt.py

The default suite keeps the counts written in the tests (it has to finish in minutes on
two cores); the deep profile is the one that finds the rare interleavings.
"""

from __future__ import annotations

import os

__all__ = ["DEEP", "DEEP_EXAMPLES", "examples"]

DEEP = os.environ.get("FUZZ_PROFILE", "") == "deep"
DEEP_EXAMPLES = max(100_000, int(os.environ.get("FUZZ_EXAMPLES", "100000")))


def examples(default: int) -> int:
    """``default`` normally; at least 100,000 (or ``FUZZ_EXAMPLES``) in the deep profile."""
    return DEEP_EXAMPLES if DEEP else default
