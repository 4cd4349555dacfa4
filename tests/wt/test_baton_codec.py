"""Devious Baton, Sans-I/O: the message codec, the query parameters and the game's
bookkeeping (draft-frindell-webtrans-devious-baton-00 §3.1, §4)."""

from __future__ import annotations

import tracemalloc

import pytest

from pywebtransport.baton.codec import (
    DEFAULT_PATH,
    Answer,
    BatonConfig,
    BatonDecoder,
    BatonError,
    BatonGame,
    BatonMessage,
    QueryError,
    SessionErrorCode,
    decode_baton,
    encode_baton,
    max_datagram_padding,
    next_value,
    parse_query,
    query_string,
)
from quic.buffer import encode_varint

# ======================================================================================
# messages (§4.3)
# ======================================================================================


@pytest.mark.parametrize("padding", [0, 1, 63, 64, 16383, 16384, 70000])
@pytest.mark.parametrize("value", [0, 1, 7, 128, 255])
def test_round_trip(value: int, padding: int) -> None:
    data = encode_baton(value, padding)
    assert data[-1] == value
    assert decode_baton(data) == BatonMessage(value, padding)


def test_wire_format() -> None:
    assert encode_baton(5) == b"\x00\x05"
    assert encode_baton(200, 3) == b"\x03\x00\x00\x00\xc8"
    assert encode_baton(1, 64) == b"\x40\x40" + bytes(64) + b"\x01"
    with pytest.raises(ValueError):
        encode_baton(256)


def test_split_at_every_byte() -> None:
    """Chunk boundaries anywhere (inside the varint, the padding, before the baton)."""
    data = encode_baton(77, 300)
    for cut in range(len(data) + 1):
        decoder = BatonDecoder()
        decoder.feed(data[:cut])
        assert decoder.done == (cut == len(data))
        decoder.feed(data[cut:])
        assert decoder.finish() == BatonMessage(77, 300)
    decoder = BatonDecoder()
    for byte in data:
        decoder.feed(bytes((byte,)))
    assert decoder.finish() == BatonMessage(77, 300)


@pytest.mark.parametrize(
    "data",
    [
        b"",  # an empty stream
        b"\x40",  # the padding length cut short
        b"\x05\x00\x00",  # the padding cut short
        b"\x03\x00\x00\x00",  # padding complete, no baton
        b"\x00",  # no baton
    ],
)
def test_incomplete_is_bruh(data: bytes) -> None:
    """§4.7: a gracefully closed stream (or datagram) with an incomplete message."""
    with pytest.raises(BatonError) as info:
        decode_baton(data)
    assert info.value.code is SessionErrorCode.BRUH


def test_bytes_after_the_baton_are_bruh() -> None:
    for extra in (b"\x00", b"\x05\x01\x02"):
        with pytest.raises(BatonError) as info:
            decode_baton(encode_baton(9, 2) + extra)
        assert info.value.code is SessionErrorCode.BRUH
    decoder = BatonDecoder()
    decoder.feed(encode_baton(9))
    with pytest.raises(BatonError):
        decoder.feed(b"x")


def test_padding_above_the_limit_is_bored() -> None:
    """Our limit: an announced padding above max_padding ends the game (BORED)."""
    decoder = BatonDecoder(max_padding=1000)
    decoder.feed(encode_varint(1000) + bytes(1000) + b"\x01")
    assert decoder.finish().value == 1
    decoder = BatonDecoder(max_padding=1000)
    with pytest.raises(BatonError) as info:
        decoder.feed(encode_varint(1001))
    assert info.value.code is SessionErrorCode.BORED
    with pytest.raises(BatonError) as info:  # announced: no padding byte needed to refuse
        BatonDecoder(max_padding=1 << 20).feed(encode_varint((1 << 62) - 1))
    assert info.value.code is SessionErrorCode.BORED


def test_max_datagram_padding() -> None:
    for size in range(0, 20000, 7):
        padding = max_datagram_padding(size)
        if padding < 0:
            assert size < 2
            continue
        assert len(encode_baton(3, padding)) <= size
        assert len(encode_baton(3, padding + 1)) > size


def _retained_by_decoder(padding: int, chunk: int = 4096) -> tuple[int, int]:
    """Bytes still allocated after the decoder read ``padding`` bytes of padding (its
    chunks dropped as a stream reader drops them), and the number of feed calls."""
    head = encode_varint(padding)
    piece = bytes(chunk)
    tracemalloc.start()
    try:
        decoder = BatonDecoder()
        before = tracemalloc.get_traced_memory()[0]
        decoder.feed(head)
        feeds = 1
        left = padding
        while left:
            take = min(left, chunk)
            decoder.feed(piece[:take] if take < chunk else piece)
            left -= take
            feeds += 1
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    decoder.feed(b"\x2a")
    assert decoder.finish() == BatonMessage(42, padding)
    return retained, feeds


def test_scale_padding_is_not_kept() -> None:
    """N vs 4N bytes of padding: the decoder keeps nothing of it (bounded memory) and
    its work is one step per chunk (linear)."""
    n = 1 << 20
    small, small_feeds = _retained_by_decoder(n)
    large, large_feeds = _retained_by_decoder(4 * n)
    assert small < 4096 and large < 4096, (small, large)
    assert large <= small + 512
    assert 3.5 < large_feeds / small_feeds < 4.5
    # (a decoder that kept the message until FIN, as read_all() would, retains
    # 1 and 4 MiB here: both asserts fail)


# ======================================================================================
# query parameters (§3.1)
# ======================================================================================


def test_query_defaults_and_values() -> None:
    params = parse_query("")
    assert (params.version, params.baton, params.count) == (0, None, 1)
    params = parse_query("version=0&baton=255&count=7&other=x")
    assert (params.version, params.baton, params.count) == (0, 255, 7)
    assert parse_query("baton=1").baton == 1
    assert parse_query("count=256").count == 256


@pytest.mark.parametrize(
    "query",
    [
        "version=1",  # unsupported
        "version=x",
        "version=",
        "baton=0",
        "baton=256",
        "baton=-1",
        "baton=abc",
        "baton=",
        "baton=+5",
        "baton= 5",
        "baton=5&baton=6",
        "count=0",
        "count=-1",
        "count=257",  # above max_count (256)
        "count=1.5",
        "count=" + "9" * 30,
        "count=1&count=1",
    ],
)
def test_query_errors_are_4xx(query: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_query(query)
    assert 400 <= info.value.status < 500


def test_query_max_count_and_field_flood() -> None:
    assert parse_query("count=1000", max_count=1000).count == 1000
    with pytest.raises(QueryError):
        parse_query("count=1001", max_count=1000)
    with pytest.raises(QueryError):
        parse_query("&".join(f"f{i}=1" for i in range(100)))


def test_query_string() -> None:
    assert query_string() == ""
    assert query_string(version=0, baton=3, count=2) == "version=0&baton=3&count=2"
    assert query_string(count=5) == "count=5"
    assert DEFAULT_PATH == "/webtransport/devious-baton"


def test_config_checks() -> None:
    with pytest.raises(ValueError):
        BatonConfig(max_count=0)
    with pytest.raises(ValueError):
        BatonConfig(padding=10, max_padding=5)
    with pytest.raises(ValueError):
        BatonConfig(idle_timeout=0)


# ======================================================================================
# the game (§4)
# ======================================================================================


# §4.2: where message i of a baton travels, from the server's first uni stream on:
# uni (server opened), bidi (client opened), reply on it, uni (client opened),
# bidi (server opened), reply on it, ... (a cycle of three)
def _kind(index: int) -> Answer:
    return (Answer.PEER_UNI, Answer.PEER_BIDI, Answer.SAME)[index % 3]


def test_one_baton_both_sides() -> None:
    """The messages of one baton from 250: both sides accept each one and end with no
    active baton and nothing left expected."""
    server = BatonGame(is_client=False, count=1, initial=250)
    client = BatonGame(is_client=True, count=1, initial=250)
    sender, value, prev, index = server, 250, -1, 0
    sender.expect_answer(value, _kind(1))
    sender.sent(value)
    while True:
        receiver = client if sender is server else server
        kind = _kind(index)
        if kind is Answer.SAME:
            receiver.on_reply(prev, value)
        else:
            receiver.on_new_stream_message(value, kind is Answer.PEER_BIDI)
        nxt = receiver.received(value)
        if nxt is None:
            break
        index += 1
        receiver.expect_answer(nxt, _kind(index + 1))
        receiver.sent(nxt)
        sender, prev, value = receiver, value, nxt
    assert server.over and client.over
    assert server.completed == client.completed == 1
    assert server.messages_sent + client.messages_sent == 256 - 250 + 1  # 250..255, 0
    assert server.messages_received + client.messages_received == 256 - 250 + 1
    assert server.expected_size() == client.expected_size() == 0
    assert next_value(255) == 0


def test_unexpected_values_are_sus() -> None:
    client = BatonGame(is_client=True, count=2, initial=10)
    client.on_new_stream_message(10, False)
    with pytest.raises(BatonError) as info:
        client.on_new_stream_message(11, False)
    assert info.value.code is SessionErrorCode.SUS
    with pytest.raises(BatonError):  # the first batons come on unidirectional streams
        client.on_new_stream_message(10, True)
    with pytest.raises(BatonError):
        client.on_reply(20, 22)
    client.on_reply(255, 0)
    # without a `baton` parameter the first `count` values are free, then no more
    free = BatonGame(is_client=True, count=2, initial=None)
    free.on_new_stream_message(99, False)
    free.on_new_stream_message(5, False)
    with pytest.raises(BatonError):
        free.on_new_stream_message(5, False)
    # the server expects the answers to its batons once it sent them, on a bidi stream
    server = BatonGame(is_client=False, count=1, initial=7)
    with pytest.raises(BatonError):  # nothing sent yet
        server.on_new_stream_message(8, True)
    server.expect_answer(7, Answer.PEER_BIDI)
    with pytest.raises(BatonError):  # the answer to a uni stream comes on a bidi one
        server.on_new_stream_message(8, False)
    server.on_new_stream_message(8, True)


def test_expected_values_follow_sends_and_resets() -> None:
    game = BatonGame(is_client=False, count=3, initial=1)
    game.expect_answer(40, Answer.PEER_UNI)
    game.unsent(40, Answer.PEER_UNI)  # STOP_SENDING: reset, no answer coming
    assert game.reset == 1 and game.active == 2
    with pytest.raises(BatonError):
        game.on_new_stream_message(41, False)
    game.expect_answer(50, Answer.SAME)  # answered on the same stream: nothing expected
    with pytest.raises(BatonError):
        game.on_new_stream_message(51, True)
    assert game.expected_size() == 0
    game.lost()
    game.sent(0)
    assert game.over and game.completed == 1 and game.reset == 2


def test_more_peer_streams_than_batons_is_sus() -> None:
    """Bounded state: peer streams read at once never exceed the active batons."""
    game = BatonGame(is_client=False, count=2, initial=1)
    game.peer_stream_opened()
    game.peer_stream_opened()
    with pytest.raises(BatonError) as info:
        game.peer_stream_opened()
    assert info.value.code is SessionErrorCode.SUS
    game = BatonGame(is_client=False, count=2, initial=1)
    game.peer_stream_opened()
    game.peer_stream_read()
    game.lost()
    game.peer_stream_opened()
    with pytest.raises(BatonError):
        game.peer_stream_opened()


def test_datagram_rule() -> None:
    """§4.4: clients echo values = 1 mod 7, servers values = 0 mod 7."""
    client = BatonGame(is_client=True, count=1, initial=None)
    server = BatonGame(is_client=False, count=1, initial=1)
    assert [v for v in range(30) if client.wants_datagram(v)] == [1, 8, 15, 22, 29]
    assert [v for v in range(30) if server.wants_datagram(v)] == [0, 7, 14, 21, 28]
