"""Property test: the reconnect backoff schedule (pywebtransport.clients.Backoff) stays
within its bounds for any parameters, attempt number and seed, and is reproducible."""

from __future__ import annotations

import itertools
import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.profiles import examples
from pywebtransport.clients import Backoff

backoffs = st.builds(
    Backoff,
    base=st.floats(min_value=0.0, max_value=100.0),
    factor=st.floats(min_value=1.0, max_value=1000.0),
    max_delay=st.floats(min_value=0.0, max_value=3600.0),
    max_attempts=st.one_of(st.none(), st.integers(min_value=1, max_value=50)),
    jitter=st.floats(min_value=0.0, max_value=1.0),
)


def uncapped_ceiling(backoff: Backoff, attempt: int) -> float:
    """min(max_delay, base * factor ** (attempt - 1)), through logarithms (no overflow)."""
    if backoff.base == 0.0 or backoff.max_delay == 0.0:
        return 0.0
    log_raw = math.log(backoff.base) + (attempt - 1) * math.log(backoff.factor)
    if log_raw >= math.log(backoff.max_delay):
        return backoff.max_delay
    return math.exp(log_raw)


@settings(max_examples=examples(300), deadline=None)
@given(backoff=backoffs, attempt=st.integers(min_value=1, max_value=10**9), seed=st.integers())
def test_delay_is_within_bounds(backoff: Backoff, attempt: int, seed: int) -> None:
    delay = backoff.delay(attempt, random.Random(seed))
    assert 0.0 <= delay <= backoff.max_delay
    ceiling = uncapped_ceiling(backoff, attempt)
    assert delay <= ceiling * (1 + 1e-6)
    assert delay >= ceiling * (1.0 - backoff.jitter) * (1 - 1e-6)
    assert delay == backoff.delay(attempt, random.Random(seed))  # same seed, same delay


@settings(max_examples=examples(200), deadline=None)
@given(backoff=backoffs, seed=st.integers())
def test_schedule_length_follows_max_attempts(backoff: Backoff, seed: int) -> None:
    delays = list(itertools.islice(backoff.schedule(random.Random(seed)), 60))
    if backoff.max_attempts is None:
        assert len(delays) == 60  # forever
    else:
        assert len(delays) == backoff.max_attempts - 1  # retries between the attempts
    assert delays == list(itertools.islice(backoff.schedule(random.Random(seed)), 60))
