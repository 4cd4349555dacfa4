"""RESET_STREAM_AT: stream resets with partial delivery (draft-ietf-quic-reliable-stream-reset).

Codec and transport parameter (§3, §4), the receive and send halves (§5, §5.2, §5.3),
end to end over lossy in-memory links, and at scale (every reset stream leaves every
table; cost grows linearly with the number of streams).
"""

from __future__ import annotations

import tracemalloc

import pytest

from quic.connection import ConnectionState
from quic.errors import QuicProtocolError, StreamResetError, TransportErrorCode
from quic.events import ConnectionTerminated, StreamDataReceived, StreamReset
from quic.frames import (
    FrameType,
    ResetStreamAtFrame,
    decode_frame,
    encode_reset_stream_at_frame,
)
from quic.stream_recv import RecvState, RecvStream
from quic.stream_send import SendState, SendStream
from quic.tparams import TransportParameters
from tests.quic.test_conn_hostile import Attack, _established
from tests.support.quicpair import Pair, make_pair

# -- codec (§4) -----------------------------------------------------------------------------


def test_frame_round_trip() -> None:
    frame = ResetStreamAtFrame(4, 0x1234, 100_000, 77)
    data = frame.encode()
    assert data[0] == FrameType.RESET_STREAM_AT == 0x24
    assert decode_frame(data + b"\x00", 0) == (frame, len(data))
    for cut in range(len(data)):  # truncated anywhere: FRAME_ENCODING_ERROR
        with pytest.raises(QuicProtocolError) as info:
            decode_frame(data[:cut], 0)
        assert info.value.error_code == TransportErrorCode.FRAME_ENCODING_ERROR


def test_reliable_size_above_final_size_is_frame_encoding_error() -> None:
    # §4: "If the Reliable Size is larger than the Final Size ... FRAME_ENCODING_ERROR"
    data = b"\x24\x04\x00\x05\x06"
    with pytest.raises(QuicProtocolError) as info:
        decode_frame(data, 0)
    assert info.value.error_code == TransportErrorCode.FRAME_ENCODING_ERROR
    assert info.value.frame_type == 0x24
    with pytest.raises(ValueError):
        encode_reset_stream_at_frame(4, 0, 5, 6)


def test_transport_parameter_is_empty_and_round_trips() -> None:
    params = TransportParameters(reset_stream_at=True, initial_source_connection_id=b"")
    raw = params.encode()
    assert b"\x1d\x00" in raw  # id 0x1d, empty value (§3)
    assert TransportParameters.decode(raw, is_client_sender=True).reset_stream_at
    assert not TransportParameters.decode(
        TransportParameters(initial_source_connection_id=b"").encode(), is_client_sender=True
    ).reset_stream_at
    with pytest.raises(QuicProtocolError) as info:  # §3: non-empty value
        TransportParameters.decode(b"\x1d\x01\x00", is_client_sender=True)
    assert info.value.error_code == TransportErrorCode.TRANSPORT_PARAMETER_ERROR


# -- receive half (§5) ------------------------------------------------------------------------


def test_receiver_delivers_up_to_the_reliable_size_then_reports_the_reset() -> None:
    r = RecvStream(1, 10_000)
    r.on_stream_frame(0, b"a" * 100, False)
    r.on_stream_frame(300, b"c" * 100, False)  # beyond the reliable size: dropped
    assert r.on_reset(9, 500, 200, at=True) == 100  # final size 500: 100 more bytes
    assert r.state is RecvState.SIZE_KNOWN  # §5.3: waits for bytes 100..200
    r.on_stream_frame(100, b"b" * 150, False)  # 200..250 is not kept
    assert r.state is RecvState.RESET_RECVD
    assert r.read(-1) == b"a" * 100 + b"b" * 100
    with pytest.raises(StreamResetError) as info:
        r.read(-1)
    assert info.value.error_code == 9
    assert r.state is RecvState.RESET_READ
    # the 300 bytes the reset abandoned went back to the connection (RFC 9000 §4.5)
    assert r.pop_released() + r.release_uncredited() == 300


def test_receiver_lower_reliable_size_wins_higher_is_ignored() -> None:
    r = RecvStream(1, 10_000)
    r.on_stream_frame(0, b"x" * 50, False)
    r.on_reset(3, 400, 300, at=True)
    r.on_reset(3, 400, 350, at=True)  # §5.2: ignored
    assert r.reliable_size == 300
    r.on_reset(3, 400, 40, at=True)  # lower: takes effect at once (50 >= 40)
    assert r.state is RecvState.RESET_RECVD and r.reliable_size == 40
    assert r.read(-1) == b"x" * 40


@pytest.mark.parametrize(
    ("second", "code"),
    [
        ((4, 400, 10, True), TransportErrorCode.STREAM_STATE_ERROR),  # new error code
        ((3, 401, 10, True), TransportErrorCode.FINAL_SIZE_ERROR),  # new final size
        ((4, 400, 0, False), TransportErrorCode.STREAM_STATE_ERROR),  # RESET_STREAM, new code
    ],
)
def test_receiver_refuses_a_changed_code_or_final_size(
    second: tuple[int, int, int, bool], code: TransportErrorCode
) -> None:
    r = RecvStream(1, 10_000)
    r.on_reset(3, 400, 300, at=True)
    error, final, reliable, at = second
    with pytest.raises(QuicProtocolError) as info:
        r.on_reset(error, final, reliable, at=at)
    assert info.value.error_code == code  # §5.2


def test_repeated_reset_stream_with_a_new_code_stays_allowed() -> None:
    # RFC 9000 has no rule on it; the draft's §5.2 concerns RESET_STREAM_AT only
    r = RecvStream(1, 10_000)
    r.on_reset(3, 400)
    r.on_reset(4, 400)
    assert r.is_reset


# -- send half (§5, §5.3) ---------------------------------------------------------------------


def test_sender_retransmits_only_below_the_reliable_size() -> None:
    s = SendStream(0, 10_000)
    s.write(b"z" * 1000)
    frame = s.next_frame(600, 10_000)
    assert frame is not None and frame[0] == 0 and len(frame[1]) == 600
    assert s.reset(7, 400)
    assert s.final_size == 600  # what was sent: the final size (RFC 9000 §4.5)
    assert s.reset_frame() == (7, 600, 400)  # every byte below the final size was sent
    assert s.state is SendState.DATA_SENT  # §5.3: like a FIN
    s.on_lost(0, 600, False)
    again = s.next_frame(1200, 10_000)
    assert again is not None and (again[0], len(again[1]), again[2]) == (0, 400, False)
    assert s.next_frame(1200, 10_000) is None  # nothing beyond the reliable size
    s.on_reset_acked(400)
    assert s.state is SendState.DATA_SENT  # the reliable bytes are not acknowledged yet
    s.on_acked(0, 400, False)
    assert s.state is SendState.DATA_RECVD


def test_sender_waits_with_the_frame_until_the_reliable_bytes_were_sent() -> None:
    s = SendStream(0, 10_000)
    s.write(b"z" * 1000)
    assert s.reset(7, 800)
    assert s.reset_frame() is None  # §4: the final size (800) is not sent yet
    frame = s.next_frame(2000, 10_000)
    assert frame is not None and len(frame[1]) == 800 and not frame[2]
    assert s.reset_frame() == (7, 800, 800)


def test_sender_never_raises_the_reliable_size_and_keeps_its_code() -> None:
    s = SendStream(0, 10_000)
    s.write(b"z" * 1000)
    s.next_frame(2000, 10_000)
    assert s.reset(7, 500)
    assert s.reset(8, 600) is False  # §5.2: MUST NOT increase
    assert s.reset(8, 100)  # lower: a new frame, same code and final size
    assert s.reset_frame() == (7, 1000, 100)
    s.on_reset_lost(500)  # a stale frame's loss: not sent again
    assert s.reset_frame() is None
    assert s.reset(9, 0)  # a RESET_STREAM: same code, same final size
    assert s.reset_frame() == (7, 1000, None)
    assert s.state is SendState.RESET_SENT
    with pytest.raises(ValueError):
        SendStream(0, 10).reset(1, 5)  # more than was written


# -- end to end -------------------------------------------------------------------------------


def _reset_at_run(pair: Pair, count: int, size: int, reliable: int) -> list[int]:
    client = pair.client
    sids = []
    for _ in range(count):
        sid = client.create_stream(bidirectional=False)
        client.send_stream_data(sid, bytes(range(256)) * (size // 256))
        client.reset_stream(sid, 0x33, reliable_size=reliable)
        sids.append(sid)
    done = lambda: len(pair.events_of(StreamReset)) == count  # noqa: E731
    pair.run(done, max_time=60)
    assert done()
    return sids


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reliable_bytes_arrive_over_a_lossy_link_then_the_reset(seed: int) -> None:
    pair = make_pair(seed=seed, loss=0.2, jitter=0.005)
    pair.handshake()
    assert pair.client.peer_accepts_reset_stream_at
    sids = _reset_at_run(pair, 4, 8192, 3000)
    payload = bytes(range(256)) * 32
    for sid in sids:
        got = bytes(pair.data["server"].get(sid, b""))
        assert got[:3000] == payload[:3000] and len(got) >= 3000
        assert sid not in pair.fin["server"]  # a reset, not a clean end (§1)
    for reset in pair.events_of(StreamReset):
        assert (reset.error_code, reset.reliable_size) == (0x33, 3000)
        # the reset comes after the last data of its stream
        events = pair.server_events
        last_data = max(
            i
            for i, e in enumerate(events)
            if isinstance(e, StreamDataReceived) and e.stream_id == reset.stream_id
        )
        assert events.index(reset) > last_data
    pair.net.settle(2.0)
    for conn in (pair.client, pair.server):
        assert len(conn.streams.manager) == 0  # everything left every table


def test_reset_stream_at_needs_the_peers_transport_parameter() -> None:
    pair = make_pair(server_kwargs={"reset_stream_at": False})
    pair.handshake()
    assert not pair.client.peer_accepts_reset_stream_at
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"abc")
    with pytest.raises(ValueError):
        pair.client.reset_stream(sid, 1, reliable_size=2)
    pair.client.reset_stream(sid, 1, reliable_size=0)  # a plain RESET_STREAM is fine
    pair.run(lambda: bool(pair.events_of(StreamReset)))
    assert pair.events_of(StreamReset)[0].reliable_size == 0


def _closed_with(pair: Pair) -> tuple[int, int]:
    """(error code, frame type) of the server's CONNECTION_CLOSE."""
    frame = pair.server.closer.frame
    assert frame is not None and not frame[0]
    return frame[1], frame[2]


def test_unadvertised_reset_stream_at_frame_is_frame_encoding_error() -> None:
    pair = _established(reset_stream_at=False)
    attack = Attack(pair)
    attack.inject(encode_reset_stream_at_frame(0, 1, 10, 5))
    assert _closed_with(pair) == (TransportErrorCode.FRAME_ENCODING_ERROR, 0x24)


def test_flow_control_violation_by_the_final_size_is_flow_control_error() -> None:
    pair = _established(initial_max_stream_data=1000)
    attack = Attack(pair)
    attack.inject(encode_reset_stream_at_frame(0, 1, 5000, 0))  # beyond MAX_STREAM_DATA
    assert _closed_with(pair) == (TransportErrorCode.FLOW_CONTROL_ERROR, 0x24)


def test_stream_state_rules_apply_to_reset_stream_at() -> None:
    # a RESET_STREAM_AT on the server's own unidirectional stream: it has no receiving
    # half (RFC 9000 §19.4 via the draft's §4)
    pair = _established()
    sid = pair.server.create_stream(bidirectional=False)
    pair.server.send_stream_data(sid, b"x")
    Attack(pair).inject(encode_reset_stream_at_frame(sid, 1, 1, 0))
    assert _closed_with(pair) == (TransportErrorCode.STREAM_STATE_ERROR, 0x24)


# -- at scale -------------------------------------------------------------------------------


def _scale_run(n: int) -> tuple[int, int, int]:
    """Reset n streams at a reliable size over a lossy link; returns (packets sent,
    retained bytes after the run, streams left in the tables)."""
    pair = make_pair(seed=7, loss=0.05)
    pair.handshake()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    _reset_at_run(pair, n, 2048, 1000)
    pair.net.settle(2.0)
    for e in pair.events_of(StreamReset):
        assert e.reliable_size == 1000
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    pair.client_events.clear()
    pair.server_events.clear()
    pair.data["server"].clear()
    left = len(pair.client.streams.manager) + len(pair.server.streams.manager)
    sent = pair.net.link(("127.0.0.2", 50000), ("127.0.0.1", 4433)).sent
    assert pair.client.state is ConnectionState.CONNECTED
    assert not pair.events_of(ConnectionTerminated)
    return sent, held, left


def test_many_reliable_resets_cost_linear_and_leave_no_state() -> None:
    n = 30
    sent1, _held1, left1 = _scale_run(n)
    sent4, _held4, left4 = _scale_run(4 * n)
    assert left1 == left4 == 0
    assert sent4 / sent1 < 6  # linear in the number of streams
    assert sent4 / sent1 > 2  # and the work is really there


# -- reliable floor: every reset keeps a header, STOP_SENDING's answer included -------------


def test_floor_raises_a_plain_reset_and_bounds_later_ones() -> None:
    s = SendStream(4, 10_000)
    s.write(b"h" * 10 + b"x" * 90)
    with pytest.raises(ValueError):
        s.set_reliable_floor(101)  # beyond the data written
    s.set_reliable_floor(10)
    assert s.reset(7)  # asked for a plain reset: RESET_STREAM_AT with the floor
    assert s.reliable_size == 10
    assert not s.reset(7, 3)  # never below the floor (and §5.2: never raised)
    assert s.reliable_size == 10


@pytest.mark.parametrize("seed", [1, 2])
def test_stop_sending_is_answered_with_reset_stream_at_keeping_the_floor(seed: int) -> None:
    pair = make_pair(seed=seed, loss=0.1, jitter=0.004)
    pair.handshake()
    client = pair.client
    sids = []
    for _ in range(4):
        sid = client.create_stream(bidirectional=False)
        client.send_stream_data(sid, b"HEADER" + bytes(5000))
        client.set_reliable_floor(sid, 6)
        sids.append(sid)
    pair.run(lambda: all(sid in pair.data["server"] for sid in sids), 10)
    for sid in sids:  # the server wants no more: STOP_SENDING
        pair.server.stop_stream(sid, 0x51)
    done = lambda: len(pair.events_of(StreamReset)) >= len(sids)  # noqa: E731
    pair.run(done, 30)
    resets = {r.stream_id: r for r in pair.events_of(StreamReset)}
    for sid in sids:
        assert (resets[sid].error_code, resets[sid].reliable_size) == (0x51, 6)
        assert bytes(pair.data["server"][sid][:6]) == b"HEADER"


def test_floor_needs_the_peers_transport_parameter() -> None:
    pair = make_pair(server_kwargs={"reset_stream_at": False})
    pair.handshake()
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, b"abc")
    with pytest.raises(ValueError):
        pair.client.set_reliable_floor(sid, 2)


def test_stop_sending_answer_replaces_the_peers_code() -> None:
    s = SendStream(4, 10_000)
    s.write(b"x" * 10)
    s.set_stop_sending_answer(0x77)
    assert s.on_stop_sending(0x01)
    assert s.reset_error_code == 0x77
