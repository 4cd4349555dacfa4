"""Property tests for the Devious Baton codec (pywebtransport.baton.codec): messages
round-trip whatever the chunking; arbitrary bytes, chunked arbitrarily, and arbitrary
query strings never raise anything but the module's own errors (BatonError with a
draft session code, QueryError with a 4xx status); a stateful machine drives one
endpoint's bookkeeping with arbitrary peer behaviour and checks it stays bounded.
``FUZZ_PROFILE=deep`` runs each with at least 100,000 examples (fuzz/profiles.py)."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from fuzz.profiles import examples
from pywebtransport.baton.codec import (
    Answer,
    BatonDecoder,
    BatonError,
    BatonGame,
    BatonMessage,
    QueryError,
    SessionErrorCode,
    decode_baton,
    encode_baton,
    parse_query,
)

values = st.integers(0, 255)
paddings = st.integers(0, 5000)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, start = [], 0
    for point in points:
        out.append(data[start:point])
        start = point
    out.append(data[start:])
    return out


@settings(max_examples=examples(300), deadline=None)
@given(values, paddings, st.lists(st.integers(0, 1 << 16), max_size=8))
def test_round_trip_any_chunking(value: int, padding: int, cuts: list[int]) -> None:
    data = encode_baton(value, padding)
    assert decode_baton(data) == BatonMessage(value, padding)
    decoder = BatonDecoder()
    for chunk in _chunks(data, cuts):
        decoder.feed(chunk)
    assert decoder.finish() == BatonMessage(value, padding)


@settings(max_examples=examples(500), deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=6), st.integers(0, 300))
def test_random_bytes_only_raise_baton_errors(data: bytes, cuts: list[int], limit: int) -> None:
    decoder = BatonDecoder(max_padding=limit)
    try:
        for chunk in _chunks(data, cuts):
            decoder.feed(chunk)
        message = decoder.finish()
    except BatonError as exc:
        assert exc.code in (SessionErrorCode.BRUH, SessionErrorCode.BORED)
        return
    # accepted: it was exactly one message within our padding limit
    assert message.padding_length <= limit
    assert encode_baton(message.value, message.padding_length)[-1] == data[-1]
    assert len(encode_baton(message.value, message.padding_length)) <= len(data)
    assert decode_baton(data, limit) == message  # chunked and whole agree


@settings(max_examples=examples(500), deadline=None)
@given(
    st.one_of(
        st.text(max_size=80),
        st.lists(
            st.tuples(
                st.sampled_from(["version", "baton", "count", "x", ""]),
                st.one_of(st.integers(-5, 400).map(str), st.text(max_size=6)),
            ),
            max_size=5,
        ).map(lambda kv: "&".join(f"{k}={v}" for k, v in kv)),
    ),
    st.integers(1, 300),
)
def test_queries_only_raise_query_errors(query: str, max_count: int) -> None:
    try:
        params = parse_query(query, max_count)
    except QueryError as exc:
        assert 400 <= exc.status < 500
        return
    assert params.version == 0
    assert params.baton is None or 1 <= params.baton <= 255
    assert 1 <= params.count <= max_count


class GameMachine(RuleBasedStateMachine):
    """One endpoint's bookkeeping under arbitrary (also hostile) peer behaviour: it
    raises only BatonError, the active count only goes down, and the expected-value
    table never holds more than the answers we asked for."""

    @initialize(is_client=st.booleans(), count=st.integers(1, 6), initial=st.none() | values)
    def start(self, is_client: bool, count: int, initial: int | None) -> None:
        self.game = BatonGame(is_client, count, initial)
        self.count = count
        self.asked = count if is_client and initial is not None else 0
        self.last_active = count

    def _safely(self, action: Callable[[], object]) -> None:
        try:
            action()
        except BatonError as exc:
            assert exc.code is SessionErrorCode.SUS

    @rule(value=values, answer=st.sampled_from(list(Answer)))
    def send(self, value: int, answer: Answer) -> None:
        if self.game.over:
            return
        self.game.expect_answer(value, answer)
        if value and answer is not Answer.SAME:
            self.asked += 1
        self.game.sent(value)

    @rule(value=values, bidirectional=st.booleans())
    def peer_message(self, value: int, bidirectional: bool) -> None:
        self._safely(lambda: self.game.on_new_stream_message(value, bidirectional))

    @rule(sent=values, value=values)
    def reply(self, sent: int, value: int) -> None:
        self._safely(lambda: self.game.on_reply(sent, value))

    @rule(value=values)
    def receive(self, value: int) -> None:
        if not self.game.over:
            nxt = self.game.received(value)
            assert nxt is None if value == 0 else nxt == (value + 1) % 256

    @rule()
    def reset(self) -> None:
        if not self.game.over:
            self.game.lost()

    @rule()
    def peer_stream(self) -> None:
        game = self.game
        try:
            game.peer_stream_opened()
        except BatonError as exc:
            assert exc.code is SessionErrorCode.SUS
            assert game.incoming > game.active
        game.peer_stream_read()

    @invariant()
    def bounded(self) -> None:
        game = self.game
        assert game.active <= self.last_active
        self.last_active = game.active
        assert game.completed + game.reset + game.active == self.count
        assert game.expected_size() <= self.asked
        assert game.incoming >= 0


GameMachine.TestCase.settings = settings(
    max_examples=examples(150), stateful_step_count=30, deadline=None
)
test_game_machine = GameMachine.TestCase
