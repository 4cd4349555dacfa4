"""Stream ids, stream limits and per-frame stream rules (RFC 9000 §2.1, §3.2, §4.6, §19)."""

from __future__ import annotations

import pytest

from quic.errors import QuicProtocolError, TransportErrorCode
from quic.stream_manager import (
    FRAME_MAX_STREAM_DATA,
    FRAME_RESET_STREAM,
    FRAME_STOP_SENDING,
    FRAME_STREAM,
    FRAME_STREAM_DATA_BLOCKED,
    StreamLimitReached,
    StreamLimits,
    StreamManager,
    is_bidi,
    is_client_initiated,
    is_local,
    is_unidirectional,
    stream_id_for,
    stream_index,
)

LIMITS = StreamLimits(
    max_streams_bidi=4,
    max_streams_uni=3,
    max_stream_data_bidi_local=1000,
    max_stream_data_bidi_remote=2000,
    max_stream_data_uni=3000,
)
PEER = StreamLimits(
    max_streams_bidi=2,
    max_streams_uni=1,
    max_stream_data_bidi_local=100,
    max_stream_data_bidi_remote=200,
    max_stream_data_uni=300,
)

ALL_FRAMES = [
    FRAME_STREAM,
    FRAME_RESET_STREAM,
    FRAME_STREAM_DATA_BLOCKED,
    FRAME_MAX_STREAM_DATA,
    FRAME_STOP_SENDING,
]


def client() -> StreamManager:
    return StreamManager(True, LIMITS, PEER)


def server() -> StreamManager:
    return StreamManager(False, LIMITS, PEER)


def code_of(info: pytest.ExceptionInfo[QuicProtocolError]) -> int:
    return info.value.error_code


# ---------------------------------------------------------------------- id arithmetic


@pytest.mark.parametrize(
    ("sid", "client_init", "bidi"),
    [(0, True, True), (1, False, True), (2, True, False), (3, False, False), (4, True, True)],
)
def test_stream_id_bits(sid: int, client_init: bool, bidi: bool) -> None:
    # RFC 9000 §2.1, Table 1
    assert is_client_initiated(sid) is client_init
    assert is_bidi(sid) is bidi
    assert is_unidirectional(sid) is (not bidi)
    assert is_local(sid, is_client=True) is client_init
    assert is_local(sid, is_client=False) is (not client_init)


def test_stream_id_for_and_index() -> None:
    assert stream_id_for(0, client=True, bidi=True) == 0
    assert stream_id_for(2, client=False, bidi=False) == 11
    assert stream_index(11) == 2
    for idx in range(5):
        for c in (True, False):
            for b in (True, False):
                sid = stream_id_for(idx, c, b)
                assert stream_index(sid) == idx
                assert is_client_initiated(sid) is c
                assert is_bidi(sid) is b


# ---------------------------------------------------------------------- local opening


def test_open_stream_ids_in_order() -> None:
    c = client()
    assert [c.open_stream(True), c.open_stream(True)] == [0, 4]
    assert c.open_stream(False) == 2
    s = server()
    assert [s.open_stream(True), s.open_stream(True), s.open_stream(False)] == [1, 5, 3]


def test_open_stream_halves_and_initial_credits() -> None:
    c = client()
    bidi = c.get(c.open_stream(True))
    uni = c.get(c.open_stream(False))
    assert bidi is not None and uni is not None
    assert bidi.send is not None and bidi.recv is not None
    # RFC 9000 §18.2: peer's bidi_remote applies to streams we open
    assert bidi.send.credit.max_data == 200
    assert bidi.recv.window.max_data == 1000  # our bidi_local
    assert uni.recv is None and uni.send is not None
    assert uni.send.credit.max_data == 300  # peer's uni


def test_peer_stream_initial_credits() -> None:
    s = server()
    bidi = s.stream_for_frame(0, FRAME_STREAM)
    uni = s.stream_for_frame(2, FRAME_STREAM)
    assert bidi is not None and uni is not None
    assert bidi.send is not None and bidi.recv is not None
    assert bidi.send.credit.max_data == 100  # peer's bidi_local
    assert bidi.recv.window.max_data == 2000  # our bidi_remote
    assert uni.send is None and uni.recv is not None
    assert uni.recv.window.max_data == 3000  # our uni


def test_open_stream_blocked_by_peer_limit() -> None:
    c = client()
    c.open_stream(True)
    c.open_stream(True)
    assert not c.can_open(True)
    assert c.streams_available(True) == 0
    with pytest.raises(StreamLimitReached) as info:
        c.open_stream(True)
    assert info.value.bidi is True
    assert info.value.limit == 2
    # RFC 9000 §4.6, §19.14: STREAMS_BLOCKED, once per limit
    assert c.has_pending_control()
    assert c.streams_blocked_frames() == [(True, 2)]
    assert not c.has_pending_control()
    with pytest.raises(StreamLimitReached):
        c.open_stream(True)
    assert not c.has_pending_control()
    assert c.streams_blocked_frames() == []
    c.on_streams_blocked_lost(True, 2)
    assert c.streams_blocked_frames() == [(True, 2)]
    # MAX_STREAMS raises the limit; decreases are ignored (§19.11)
    assert c.on_max_streams(True, 3) is True
    assert c.on_max_streams(True, 1) is False
    assert c.peer_max_streams(True) == 3
    assert c.open_stream(True) == 8
    with pytest.raises(StreamLimitReached):
        c.open_stream(True)
    assert c.streams_blocked_frames() == [(True, 3)]


def test_streams_blocked_dropped_once_unblocked() -> None:
    c = client()
    c.open_stream(False)
    with pytest.raises(StreamLimitReached):
        c.open_stream(False)
    c.on_max_streams(False, 5)
    assert c.streams_blocked_frames() == []  # no longer blocked: nothing to say
    c.on_streams_blocked_lost(False, 1)
    assert c.streams_blocked_frames() == []


def test_no_peer_limits_means_no_streams() -> None:
    m = StreamManager(True, LIMITS)
    with pytest.raises(StreamLimitReached):
        m.open_stream(True)
    m.set_peer_limits(PEER)
    sid = m.open_stream(True)
    stream = m.get(sid)
    assert stream is not None and stream.send is not None
    assert stream.send.credit.max_data == 200


def test_set_peer_limits_raises_existing_credit() -> None:
    m = StreamManager(
        True, LIMITS, StreamLimits(max_streams_bidi=1, max_stream_data_bidi_remote=10)
    )
    sid = m.open_stream(True)
    m.set_peer_limits(PEER)
    stream = m.get(sid)
    assert stream is not None and stream.send is not None
    assert stream.send.credit.max_data == 200
    assert m.peer_max_streams(True) == 2


# ---------------------------------------------------------------------- peer opening


def test_peer_stream_beyond_limit_is_stream_limit_error() -> None:
    s = server()  # we allow the client 4 bidi and 3 uni streams
    assert s.stream_for_frame(12, FRAME_STREAM) is not None  # index 3: last allowed
    with pytest.raises(QuicProtocolError) as info:
        s.on_stream_frame(16, 0, b"x", False)
    assert code_of(info) == TransportErrorCode.STREAM_LIMIT_ERROR
    assert info.value.frame_type == FRAME_STREAM
    with pytest.raises(QuicProtocolError) as info:
        s.stream_for_frame(14, FRAME_RESET_STREAM)  # uni index 3 >= 3
    assert code_of(info) == TransportErrorCode.STREAM_LIMIT_ERROR


def test_implicit_open_of_lower_streams() -> None:
    s = server()
    stream = s.stream_for_frame(8, FRAME_STREAM)
    assert stream is not None and stream.stream_id == 8
    assert 0 in s and 4 in s and 8 in s
    assert s.take_opened_by_peer() == [0, 4, 8]
    s.stream_for_frame(4, FRAME_STREAM)
    assert s.take_opened_by_peer() == []
    s.stream_for_frame(10, FRAME_STREAM)
    assert s.take_opened_by_peer() == [2, 6, 10]
    assert s.opened_count(2) == 3


def test_peer_opens_bidi_with_max_stream_data_or_stop_sending() -> None:
    # RFC 9000 §3.2: MAX_STREAM_DATA / STOP_SENDING open a peer's bidirectional stream
    s = server()
    assert s.on_max_stream_data(0, 500) is True
    stream = s.get(0)
    assert stream is not None and stream.send is not None
    assert stream.send.credit.max_data == 500
    assert s.on_stop_sending(4, 7) is True
    stream4 = s.get(4)
    assert stream4 is not None and stream4.send is not None
    assert stream4.send.reset_frame() == (7, 0, None)


@pytest.mark.parametrize("frame_type", ALL_FRAMES)
def test_frame_for_unopened_local_stream_is_stream_state_error(frame_type: int) -> None:
    c = client()
    c.open_stream(True)  # stream 0 exists, 4 does not
    with pytest.raises(QuicProtocolError) as info:
        c.stream_for_frame(4, frame_type)
    assert code_of(info) == TransportErrorCode.STREAM_STATE_ERROR
    assert info.value.frame_type == frame_type
    assert 4 not in c


@pytest.mark.parametrize("frame_type", [FRAME_MAX_STREAM_DATA, FRAME_STOP_SENDING])
def test_receiver_frame_for_unopened_local_uni_is_stream_state_error(frame_type: int) -> None:
    s = server()
    s.open_stream(False)  # stream 3 exists, 7 does not
    assert s.stream_for_frame(3, frame_type) is not None
    with pytest.raises(QuicProtocolError) as info:
        s.stream_for_frame(7, frame_type)
    assert code_of(info) == TransportErrorCode.STREAM_STATE_ERROR


@pytest.mark.parametrize(
    "frame_type", [FRAME_STREAM, FRAME_RESET_STREAM, FRAME_STREAM_DATA_BLOCKED]
)
@pytest.mark.parametrize("opened", [False, True])
def test_sender_frames_on_send_only_stream(frame_type: int, opened: bool) -> None:
    # RFC 9000 §19.4, §19.8, §19.13: STREAM / RESET_STREAM / STREAM_DATA_BLOCKED for a
    # send-only (our unidirectional) stream is STREAM_STATE_ERROR
    c = client()
    if opened:
        c.open_stream(False)
    with pytest.raises(QuicProtocolError) as info:
        c.stream_for_frame(2, frame_type)
    assert code_of(info) == TransportErrorCode.STREAM_STATE_ERROR
    assert info.value.frame_type == frame_type


@pytest.mark.parametrize("frame_type", [FRAME_MAX_STREAM_DATA, FRAME_STOP_SENDING])
@pytest.mark.parametrize("opened", [False, True])
def test_receiver_frames_on_receive_only_stream(frame_type: int, opened: bool) -> None:
    # RFC 9000 §19.5, §19.10: MAX_STREAM_DATA / STOP_SENDING for a receive-only stream
    c = client()
    if opened:
        c.stream_for_frame(3, FRAME_STREAM)
    with pytest.raises(QuicProtocolError) as info:
        c.stream_for_frame(3, frame_type)
    assert code_of(info) == TransportErrorCode.STREAM_STATE_ERROR
    assert info.value.frame_type == frame_type


def test_valid_frames_on_each_type() -> None:
    c = client()
    c.open_stream(True)
    c.open_stream(False)
    for frame_type in ALL_FRAMES:
        assert c.stream_for_frame(0, frame_type) is not None  # local bidi
        assert c.stream_for_frame(1, frame_type) is not None  # peer bidi
    for frame_type in (FRAME_MAX_STREAM_DATA, FRAME_STOP_SENDING):
        assert c.stream_for_frame(2, frame_type) is not None  # local uni
    for frame_type in (FRAME_STREAM, FRAME_RESET_STREAM, FRAME_STREAM_DATA_BLOCKED):
        assert c.stream_for_frame(3, frame_type) is not None  # peer uni
    assert c.on_stream_data_blocked(1, 0) is not None


# ---------------------------------------------------------------------- data routing


def test_on_stream_frame_routes_and_returns_delta() -> None:
    s = server()
    assert s.on_stream_frame(0, 0, b"hello", False) == 5
    assert s.on_stream_frame(0, 3, b"lo world", True) == 6
    stream = s.get(0)
    assert stream is not None and stream.recv is not None
    assert stream.recv.read() == b"hello world"


def test_on_stream_frame_errors_carry_frame_type() -> None:
    s = server()
    with pytest.raises(QuicProtocolError) as info:
        s.on_stream_frame(2, 0, b"x" * 3001, False, frame_type=0x0E)
    assert code_of(info) == TransportErrorCode.FLOW_CONTROL_ERROR
    assert info.value.frame_type == 0x0E
    s.on_stream_frame(2, 0, b"abc", True)
    with pytest.raises(QuicProtocolError) as info:
        s.on_reset_stream(2, 0, 4)
    assert code_of(info) == TransportErrorCode.FINAL_SIZE_ERROR
    assert info.value.frame_type == FRAME_RESET_STREAM


def test_on_reset_stream_returns_delta() -> None:
    s = server()
    s.on_stream_frame(2, 0, b"abc", False)
    assert s.on_reset_stream(2, 9, 10) == 7
    stream = s.get(2)
    assert stream is not None and stream.recv is not None
    assert stream.recv.reset_error_code == 9


# ---------------------------------------------------------------------- closing


def finish_peer_uni(m: StreamManager, sid: int) -> None:
    m.on_stream_frame(sid, 0, b"data", True)
    stream = m.get(sid)
    assert stream is not None and stream.recv is not None
    stream.recv.read()


def test_finished_peer_streams_refresh_max_streams() -> None:
    s = server()  # client may open 3 uni streams at once
    for sid in (2, 6, 10):
        s.stream_for_frame(sid, FRAME_STREAM)
    with pytest.raises(QuicProtocolError):
        s.stream_for_frame(14, FRAME_STREAM)
    assert s.max_streams_frames() == []
    finish_peer_uni(s, 2)
    assert not s.has_pending_control()
    assert s.maybe_discard(2) is True
    assert 2 not in s
    assert s.has_pending_control()
    # RFC 9000 §4.6: keep the peer's concurrency at the configured limit
    assert s.max_streams_frames() == [(False, 4)]
    assert s.max_streams_frames() == []
    assert s.stream_for_frame(14, FRAME_STREAM) is not None
    s.on_max_streams_lost(False, 4)
    assert s.max_streams_frames() == [(False, 4)]
    finish_peer_uni(s, 6)
    finish_peer_uni(s, 10)
    assert sorted(s.discard_finished()) == [6, 10]
    s.on_max_streams_lost(False, 4)  # superseded by 6: nothing to resend
    assert s.max_streams_frames() == [(False, 6)]


def test_late_frames_for_finished_stream_are_ignored() -> None:
    s = server()
    finish_peer_uni(s, 2)
    assert s.maybe_discard(2)
    assert s.on_stream_frame(2, 0, b"data", True) == 0
    assert s.on_reset_stream(2, 0, 4) == 0
    assert s.stream_for_frame(2, FRAME_STREAM_DATA_BLOCKED) is None
    assert 2 not in s  # not reopened
    assert s.take_opened_by_peer() == [2]


def test_late_frames_for_finished_local_stream_are_ignored() -> None:
    c = client()
    sid = c.open_stream(True)
    stream = c.get(sid)
    assert stream is not None and stream.send is not None and stream.recv is not None
    stream.send.write(b"x", end_stream=True)
    stream.send.next_frame(100, 100)
    stream.send.on_acked(0, 1, True)
    c.on_stream_frame(sid, 0, b"y", True)
    stream.recv.read()
    assert not c.maybe_discard(12345)
    assert c.maybe_discard(sid)
    assert c.on_max_stream_data(sid, 10_000) is False
    assert c.on_stop_sending(sid, 1) is False
    assert c.max_streams_frames() == []  # local streams do not refresh peer credit
    assert len(c) == 0


def test_maybe_discard_keeps_unfinished() -> None:
    c = client()
    sid = c.open_stream(True)
    assert c.maybe_discard(sid) is False
    assert sid in c
    assert c.streams[sid].stream_id == sid
    assert c.is_local(sid)
    assert not c.is_local(1)


def test_max_streams_is_raised_once_half_the_credit_is_used() -> None:
    """Not a MAX_STREAMS per finished stream: the limit moves to finished + concurrency
    once the peer has less than half of its concurrency left to open (RFC 9000 §4.6)."""
    limits = StreamLimits(max_streams_uni=8, max_stream_data_uni=3000)
    s = StreamManager(False, limits, PEER)
    s.stream_for_frame(2, FRAME_STREAM)
    finish_peer_uni(s, 2)
    assert s.maybe_discard(2)
    assert s.max_streams_frames() == []  # 7 of 8 still to open: nothing to say yet
    for index in range(1, 3):
        s.stream_for_frame(stream_id_for(index, True, False), FRAME_STREAM)
    assert s.max_streams_frames() == []  # 5 left: more than half
    s.stream_for_frame(stream_id_for(3, True, False), FRAME_STREAM)
    assert s.max_streams_frames() == [(False, 9)]  # 4 left: one finished + 8
    # the peer keeps its concurrency of 8: streams 1..8 may all be open at once
    s.stream_for_frame(stream_id_for(4, True, False), FRAME_STREAM)
    for index in range(5, 9):
        s.stream_for_frame(stream_id_for(index, True, False), FRAME_STREAM)
    with pytest.raises(QuicProtocolError):
        s.stream_for_frame(stream_id_for(9, True, False), FRAME_STREAM)


def test_stream_data_blocked_at_our_limit_grows_the_receive_window() -> None:
    m = StreamManager(True, LIMITS, PEER, max_stream_window=8000)
    stream = m.on_stream_data_blocked(1, 2000)  # peer bidi at our initial limit
    assert stream is not None and stream.recv is not None
    assert stream.recv.window.window == 4000
    m.on_stream_data_blocked(1, 1999)  # not our limit: unchanged
    assert stream.recv.window.window == 4000
    m.on_stream_data_blocked(1, 2000)
    assert stream.recv.window.window == 8000  # max_stream_window bounds it
    m.on_stream_data_blocked(1, 2000)
    assert stream.recv.window.window == 8000
