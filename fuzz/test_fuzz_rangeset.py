"""Stateful property test: RangeSet behaves like a Python set of ints."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fuzz.profiles import examples
from quic.rangeset import RangeSet

values = st.integers(min_value=-20, max_value=120)
spans = st.tuples(values, st.integers(min_value=0, max_value=30))


class RangeSetMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.rs = RangeSet()
        self.model: set[int] = set()

    @rule(value=values)
    def add_one(self, value: int) -> None:
        self.rs.add(value)
        self.model.add(value)

    @rule(span=spans)
    def add_span(self, span: tuple[int, int]) -> None:
        start, length = span
        self.rs.add(start, start + length)
        self.model.update(range(start, start + length))

    @rule(span=spans)
    def add_at_end(self, span: tuple[int, int]) -> None:
        # Exercise the append fast path: start at or just past the current maximum.
        base = max(self.model) + 1 if self.model else 0
        start = base - (span[0] % 3)
        self.rs.add(start, start + span[1])
        self.model.update(range(start, start + span[1]))

    @rule(offset=st.integers(min_value=-2, max_value=2))
    def extend_last(self, offset: int) -> None:
        # the in-order fast path: grows the last range only for the integer just past it
        value = (max(self.model) + 1 if self.model else 0) + offset
        grew = self.rs.extend_last(value)
        assert grew == (offset == 0 and bool(self.model))
        if grew:
            self.model.add(value)

    @rule(span=spans)
    def subtract(self, span: tuple[int, int]) -> None:
        start, length = span
        self.rs.subtract(start, start + length)
        self.model.difference_update(range(start, start + length))

    @rule(value=values)
    def clear_below(self, value: int) -> None:
        self.rs.clear_below(value)
        self.model = {v for v in self.model if v >= value}

    @precondition(lambda self: bool(self.model))
    @rule()
    def shift(self) -> None:
        first = self.rs.shift()
        assert first.start == min(self.model)
        assert all(v in self.model for v in first)
        assert first.stop not in self.model
        self.model.difference_update(first)

    @rule(value=values)
    def contains(self, value: int) -> None:
        assert (value in self.rs) == (value in self.model)

    @rule(span=spans)
    def intersects_covers(self, span: tuple[int, int]) -> None:
        start, length = span
        window = set(range(start, start + length))
        assert self.rs.intersects(start, start + length) == bool(window & self.model)
        assert self.rs.covers(start, start + length) == window.issubset(self.model)

    @rule(limit=st.integers(min_value=0, max_value=8))
    def ack_ranges(self, limit: int) -> None:
        pairs = self.rs.ack_ranges_descending(limit)
        assert len(pairs) == min(limit, len(self.rs))
        expected = [(r.start, r.stop - 1) for r in reversed(list(self.rs))][:limit]
        assert list(pairs) == expected
        for smallest, largest in pairs:
            assert smallest <= largest

    @invariant()
    def matches_model(self) -> None:
        items = list(self.rs)
        flat = [v for r in items for v in r]
        assert flat == sorted(self.model)
        assert self.rs.total() == len(self.model)
        for a, b in pairwise(items):
            assert len(a) > 0 and len(b) > 0
            assert a.stop < b.start  # sorted, disjoint and never adjacent (merged)
        assert len(self.rs) == len(items)
        if self.model:
            assert self.rs.bounds() == range(min(self.model), max(self.model) + 1)
            assert self.rs.first() == items[0]
            assert self.rs.last() == items[-1]


RangeSetMachine.TestCase.settings = settings(
    max_examples=examples(150), stateful_step_count=40, deadline=None
)
TestRangeSet = RangeSetMachine.TestCase
