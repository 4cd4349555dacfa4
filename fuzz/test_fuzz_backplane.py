"""Property tests for the rooms backplane (pywebtransport.backplane).

The frame codec: every frame round-trips, through the length-prefixed stream reader
too, whatever the chunking; arbitrary bytes decode to a frame or raise FrameError —
nothing else — and the reader never holds more than one frame. Remote member counts:
a stateful machine applies COUNTS, forgets and expiries in any order and checks the
running totals against a plain model, and the bounds.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from fuzz.profiles import examples
from pywebtransport.backplane import BackplaneStats, RemoteCounts
from pywebtransport.backplane.codec import (
    Bye,
    Counts,
    EventKind,
    Frame,
    FrameError,
    FrameReader,
    Hello,
    RoomEvent,
    decode_body,
    encode_body,
    encode_frame,
)

names = st.text(min_size=1, max_size=80).filter(lambda s: 1 <= len(s.encode()) <= 255)
frames_st: st.SearchStrategy[Frame] = st.one_of(
    st.builds(Hello, names),
    st.builds(Bye, names),
    st.builds(RoomEvent, names, names, st.sampled_from(EventKind), st.binary(max_size=300)),
    st.builds(
        Counts,
        names,
        st.booleans(),
        st.lists(st.tuples(names, st.integers(0, 2**32 - 1)), max_size=8).map(tuple),
    ),
)


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(frames_st, max_size=6), st.data())
def test_round_trip_through_the_reader(items: list[Frame], data: st.DataObject) -> None:
    for item in items:
        assert decode_body(encode_body(item)) == item
    stream = b"".join(encode_frame(item) for item in items)
    reader = FrameReader(max_frame=1 << 16)
    got: list[Frame] = []
    pos = 0
    while pos < len(stream):
        step = data.draw(st.integers(1, 64))
        got += reader.feed(stream[pos : pos + step])
        pos += step
    assert got == items and reader.buffered == 0


@settings(max_examples=examples(500), deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bodies_parse_or_raise_frame_error(body: bytes) -> None:
    try:
        item = decode_body(body)
    except FrameError:
        return
    assert encode_body(item) == body  # what parses is exactly what the encoder writes


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=10), st.integers(1, 64))
def test_arbitrary_streams_parse_or_raise_and_stay_bounded(chunks: list[bytes], limit: int) -> None:
    reader = FrameReader(max_frame=limit)
    try:
        for chunk in chunks:
            reader.feed(chunk)
            assert reader.buffered < 4 + limit
    except FrameError:
        pass


origins = st.sampled_from([f"i{n}" for n in range(6)])
rooms = st.sampled_from([f"r{n}" for n in range(6)])


class RemoteCountsMachine(RuleBasedStateMachine):
    """RemoteCounts against a dict-of-dicts model (bounds 4 instances x 4 rooms)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts = RemoteCounts(max_instances=4, max_rooms=4, stats=BackplaneStats())
        self.model: dict[str, dict[str, int]] = {}
        self.expires: dict[str, float] = {}

    @rule(
        origin=origins,
        pairs=st.lists(st.tuples(rooms, st.integers(0, 5)), max_size=6),
        replace=st.booleans(),
        expires=st.integers(0, 10),
    )
    def update(
        self, origin: str, pairs: list[tuple[str, int]], replace: bool, expires: int
    ) -> None:
        accepted = self.counts.update(origin, tuple(pairs), replace=replace, expires=expires)
        known = origin in self.model
        assert accepted == (known or len(self.model) < 4)
        if not accepted:
            return
        mine = self.model.setdefault(origin, {})
        self.expires[origin] = expires
        if replace:
            listed = {room for room, _ in pairs}
            for room in [room for room in mine if room not in listed]:
                del mine[room]
        for room, count in pairs:
            if count == 0:
                mine.pop(room, None)
            elif room in mine or len(mine) < 4:
                mine[room] = count

    @rule(origin=origins)
    def forget(self, origin: str) -> None:
        self.counts.forget(origin)
        self.model.pop(origin, None)
        self.expires.pop(origin, None)

    @rule(now=st.integers(0, 10))
    def expire(self, now: int) -> None:
        gone = set(self.counts.expire(float(now)))
        assert gone == {o for o, e in self.expires.items() if e <= now}
        for origin in gone:
            del self.model[origin]
            del self.expires[origin]

    @invariant()
    def totals_match(self) -> None:
        assert sorted(self.counts.instances) == sorted(self.model)
        for origin, mine in self.model.items():
            assert self.counts.counts_of(origin) == mine
        for n in range(6):
            room = f"r{n}"
            assert self.counts.total(room) == sum(m.get(room, 0) for m in self.model.values())
        assert self.counts.rooms() == len({r for m in self.model.values() for r in m})


TestRemoteCounts = RemoteCountsMachine.TestCase
TestRemoteCounts.settings = settings(max_examples=examples(100), deadline=None)
