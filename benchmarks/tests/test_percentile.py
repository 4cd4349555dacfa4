"""``benchmarks.common.percentile``: the nearest-rank definition, rank ceil(p * n)."""

from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from benchmarks.common import handshake_result, percentile


def test_ranks_of_small_samples() -> None:
    ten = list(range(1, 11))
    assert percentile(ten, 0.9) == 9  # rank 9 of 10, not the maximum
    assert percentile(ten, 0.5) == 5
    assert percentile(ten, 0.99) == 10
    assert percentile(list(range(1, 51)), 0.5) == 25
    assert percentile(list(range(1, 1001)), 0.99) == 990
    assert percentile(list(range(1, 101)), 0.29) == 29  # 0.29 * 100 = 28.999999999999996
    assert percentile([7.0], 0.5) == 7.0
    assert percentile(ten, 0.0) == 1


@given(st.integers(1, 3000), st.sampled_from(["0.5", "0.9", "0.99", "0.29", "0.999"]))
def test_matches_the_exact_rank(n: int, fraction: str) -> None:
    exact = Fraction(fraction) * n  # no float rounding
    rank = max(1, math.ceil(exact))
    assert percentile(list(range(1, n + 1)), float(fraction)) == rank


def test_the_handshake_p90_is_the_same_rank() -> None:
    assert handshake_result([float(v) for v in range(10, 0, -1)])["p90_ms"] == 9.0
