"""Stateful property test: the impairment proxy's link model (quic.interop.impair).

Whatever the impairment and the sequence of datagrams and arrival times, a decision
holds at most two copies, none delivered before the datagram arrived (plus the delay),
random drops and corruptions never exceed the burst cap in a row, a corrupted copy differs from
the original in exactly one byte among the first 51, Version Negotiation is never
corrupted, and the model's state stays bounded (the queue never holds more than the
queue limit plus the datagram on the link).
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from fuzz.profiles import examples
from quic.interop.impair import CORRUPT_WINDOW, Fate, Impairment, LinkModel

probability = st.sampled_from([0.0, 0.05, 0.3, 0.9, 1.0])


@st.composite
def impairments(draw: st.DrawFn) -> Impairment:
    queue = draw(st.none() | st.integers(0, 5))
    return Impairment(
        delay=draw(st.sampled_from([0.0, 0.015, 0.75])),
        loss=draw(probability),
        corrupt=draw(probability),
        max_burst=draw(st.none() | st.integers(1, 4)),
        drops=frozenset(draw(st.lists(st.integers(1, 30), max_size=6))),
        duplicate=draw(probability),
        reorder=draw(probability),
        reorder_delay=draw(st.sampled_from([0.0, 0.01])),
        bandwidth=draw(st.none() | st.sampled_from([1e5, 1e7])),
        queue=queue,
        blackholes=draw(st.sampled_from([(), ((0.01, 0.02),), ((0.0, 0.005), (0.03, 0.5))])),
    )


datagrams = st.one_of(
    st.binary(min_size=1, max_size=120),
    st.just(b"\x80\x00\x00\x00\x00" + bytes(20)),  # Version Negotiation
)


class LinkMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.dropped_in_a_row = 0
        self.corrupted_in_a_row = 0

    @initialize(imp=impairments(), seed=st.integers(0, 2**16))
    def start(self, imp: Impairment, seed: int) -> None:
        self.imp = imp
        self.model = LinkModel(imp, seed)

    @rule(data=datagrams, gap=st.sampled_from([0.0, 0.0001, 0.001, 0.02]))
    def send(self, data: bytes, gap: float) -> None:
        self.now += gap
        decision = self.model.process(data, self.now)
        assert decision.index == self.model.count
        if decision.fate is Fate.LOST:
            self.dropped_in_a_row += 1
            cap = self.imp.max_burst
            assert cap is None or self.dropped_in_a_row <= cap
        elif decision.fate in (Fate.FORWARDED, Fate.CORRUPTED, Fate.QUEUE):
            self.dropped_in_a_row = 0  # it passed the random loss stage
        if decision.fate.dropped:
            assert decision.deliveries == ()
            return
        assert 1 <= len(decision.deliveries) <= 2
        for at, payload in decision.deliveries:
            assert at >= self.now + self.imp.delay - 1e-12
            assert len(payload) == len(data)
        payload = decision.deliveries[0][1]
        if decision.fate is Fate.CORRUPTED:
            self.corrupted_in_a_row += 1
            cap = self.imp.max_burst
            assert cap is None or self.corrupted_in_a_row <= cap
            diff = [i for i in range(len(data)) if payload[i] != data[i]]
            assert diff == [decision.corrupted_at]
            assert diff[0] <= CORRUPT_WINDOW
            assert data[:5] != b"\x80\x00\x00\x00\x00"
        else:
            self.corrupted_in_a_row = 0
            assert payload == data

    @invariant()
    def bounded(self) -> None:
        if hasattr(self, "model") and self.imp.queue is not None:
            assert len(self.model._departures) <= self.imp.queue + 1
        if hasattr(self, "model"):
            assert sum(self.model.fates.values()) == self.model.count


LinkMachine.TestCase.settings = settings(
    max_examples=examples(60), stateful_step_count=40, deadline=None
)
TestLinkMachine = LinkMachine.TestCase
