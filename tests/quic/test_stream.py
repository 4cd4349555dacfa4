"""Stream send and receive halves (RFC 9000 §2-§4, §19.4, §19.5, §19.8)."""

from __future__ import annotations

import random

import pytest

from quic.errors import QuicProtocolError, StreamResetError, TransportErrorCode
from quic.stream import (
    QuicStream,
    RecvState,
    RecvStream,
    SendState,
    SendStream,
    StreamUsageError,
)
from quic.stream_recv import _TRANSITIONS as RECV_TRANSITIONS
from quic.stream_send import _TRANSITIONS as SEND_TRANSITIONS
from quic.stream_send import _RangeList

BIG = 1 << 40


def state(half: SendStream | RecvStream) -> SendState | RecvState:
    """Read the state through a call so that mypy does not narrow it between steps."""
    return half.state


def frame(s: SendStream, max_payload: int = 1000, credit: int = BIG) -> tuple[int, bytes, bool]:
    out = s.next_frame(max_payload, credit)
    assert out is not None
    offset, data, fin = out
    return offset, bytes(data), fin


def error_code(exc: pytest.ExceptionInfo[QuicProtocolError]) -> int:
    return exc.value.error_code


# ====================================================================== _RangeList


def test_rangelist_add_merges_and_subtract_splits() -> None:
    r = _RangeList()
    r.add(0, 5)
    r.add(5, 8)  # touching ranges merge
    assert r.ranges() == [(0, 8)]
    r.add(10, 12)
    r.add(3, 4)  # inside: no change
    assert r.ranges() == [(0, 8), (10, 12)]
    r.add(7, 11)
    assert r.ranges() == [(0, 12)]
    r.subtract(3, 5)
    assert r.ranges() == [(0, 3), (5, 12)]
    r.subtract(0, 3)
    r.subtract(10, 12)
    assert r.ranges() == [(5, 10)]
    r.subtract(0, 100)
    assert not r


def test_rangelist_gaps() -> None:
    r = _RangeList()
    r.add(2, 4)
    r.add(6, 8)
    assert r.gaps(0, 10) == [(0, 2), (4, 6), (8, 10)]
    assert r.gaps(3, 7) == [(4, 6)]
    assert r.gaps(2, 4) == []
    assert r.gaps(4, 6) == [(4, 6)]


def test_rangelist_random_against_set() -> None:
    rng = random.Random(7)
    r = _RangeList()
    model: set[int] = set()
    for _ in range(500):
        a = rng.randrange(60)
        b = a + rng.randrange(10)
        if rng.random() < 0.6:
            r.add(a, b)
            model.update(range(a, b))
        else:
            r.subtract(a, b)
            model.difference_update(range(a, b))
        covered = {x for s, e in r.ranges() for x in range(s, e)}
        assert covered == model
        flat = r.b
        assert all(flat[i] < flat[i + 1] for i in range(len(flat) - 1))
        gaps = {x for s, e in r.gaps(0, 70) for x in range(s, e)}
        assert gaps == set(range(70)) - model


# ====================================================================== SendStream


def test_state_tables_cover_every_state() -> None:
    assert set(SEND_TRANSITIONS) == set(SendState)
    assert set(RECV_TRANSITIONS) == set(RecvState)


def test_send_large_write_is_zero_copy() -> None:
    data = bytes(range(256)) * 40
    s = SendStream(0, BIG)
    s.write(data)
    out = s.next_frame(1000, BIG)
    assert out is not None
    offset, view, fin = out
    assert offset == 0 and not fin
    assert isinstance(view, memoryview)
    assert view.obj is data
    assert bytes(view) == data[:1000]


def test_send_whole_chunk_returned_as_is() -> None:
    data = b"x" * 2000
    s = SendStream(0, BIG)
    s.write(data)
    out = s.next_frame(5000, BIG)
    assert out is not None
    assert out[1] is data


def test_send_mutable_input_is_copied() -> None:
    buf = bytearray(b"abcdef" * 300)
    s = SendStream(0, BIG)
    s.write(buf)
    buf[0:3] = b"zzz"
    assert frame(s)[1][:6] == b"abcdef"


def test_send_small_writes_coalesce_and_span() -> None:
    s = SendStream(0, BIG)
    expected = b""
    for i in range(50):
        piece = bytes([i]) * 37
        s.write(piece)
        expected += piece
    assert len(s._chunks) < 5
    s.write(b"Z" * 3000)
    expected += b"Z" * 3000
    got = b""
    while (out := s.next_frame(700, BIG)) is not None:
        assert out[0] == len(got)
        got += bytes(out[1])
    assert got == expected


def test_send_fin_with_last_data_and_states() -> None:
    s = SendStream(4, BIG)
    assert state(s) is SendState.READY
    s.write(b"hello ")
    assert frame(s) == (0, b"hello ", False)
    assert state(s) is SendState.SEND
    s.write(b"world", end_stream=True)
    assert frame(s) == (6, b"world", True)
    assert state(s) is SendState.DATA_SENT
    assert s.next_frame(1000, BIG) is None
    s.on_acked(6, 5, True)
    assert state(s) is SendState.DATA_SENT  # first frame not acked yet
    s.on_acked(0, 6, False)
    assert state(s) is SendState.DATA_RECVD
    assert s.is_finished
    assert s.buffered == 0


def test_send_fin_only_frame() -> None:
    s = SendStream(0, 0)
    s.write(b"", end_stream=True)
    # A FIN-only frame needs no credit.
    assert frame(s, credit=0) == (0, b"", True)
    assert state(s) is SendState.DATA_SENT
    s.on_acked(0, 0, True)
    assert state(s) is SendState.DATA_RECVD


def test_send_fin_only_after_data_sent() -> None:
    s = SendStream(0, BIG)
    s.write(b"abc")
    assert frame(s) == (0, b"abc", False)
    s.write(b"", end_stream=True)
    assert frame(s) == (3, b"", True)


def test_send_write_after_fin_is_usage_error() -> None:
    s = SendStream(0, BIG)
    s.write(b"a", end_stream=True)
    with pytest.raises(StreamUsageError):
        s.write(b"b")


def test_send_limited_by_payload_and_credits() -> None:
    s = SendStream(0, max_stream_data=10)
    s.write(b"0123456789abcdef")
    assert frame(s, max_payload=4) == (0, b"0123", False)
    assert frame(s, credit=3) == (4, b"456", False)  # connection credit
    assert frame(s) == (7, b"789", False)  # stream credit (10)
    assert s.next_frame(1000, BIG) is None
    assert s.highest_sent == 10
    assert s.unsent == 6
    assert s.on_max_stream_data(5) is False  # decrease ignored
    assert s.on_max_stream_data(20) is True
    assert frame(s) == (10, b"abcdef", False)


def test_send_zero_connection_credit_blocks_new_data_only() -> None:
    s = SendStream(0, BIG)
    s.write(b"abcdef")
    assert frame(s, max_payload=3) == (0, b"abc", False)
    s.on_lost(0, 3, False)
    # Retransmission is not limited by credit; new data is.
    assert frame(s, credit=0) == (0, b"abc", False)
    assert s.next_frame(1000, 0) is None
    assert frame(s, credit=10) == (3, b"def", False)


def test_send_retransmits_lost_before_new_data() -> None:
    s = SendStream(0, BIG)
    s.write(b"A" * 10 + b"B" * 10 + b"C" * 10)
    assert frame(s, 10) == (0, b"A" * 10, False)
    assert frame(s, 10) == (10, b"B" * 10, False)
    s.on_lost(0, 10, False)
    assert frame(s, 4) == (0, b"AAAA", False)  # split retransmission
    assert frame(s, 100) == (4, b"A" * 6, False)
    assert frame(s, 100) == (20, b"C" * 10, False)


def test_send_lost_then_acked_not_retransmitted() -> None:
    s = SendStream(0, BIG)
    s.write(b"x" * 30)
    frame(s, 30)
    s.on_lost(0, 30, False)
    s.on_acked(10, 10, False)  # a late ACK for part of it (another copy)
    assert frame(s, 100) == (0, b"x" * 10, False)
    assert frame(s, 100) == (20, b"x" * 10, False)
    assert s.next_frame(100, BIG) is None


def test_send_acked_data_not_requeued_on_loss() -> None:
    s = SendStream(0, BIG)
    s.write(b"y" * 30)
    frame(s, 30)
    s.on_acked(0, 10, False)
    s.on_acked(20, 5, False)
    s.on_lost(0, 30, False)
    assert frame(s, 100) == (10, b"y" * 10, False)
    assert frame(s, 100) == (25, b"y" * 5, False)
    assert s.next_frame(100, BIG) is None


def test_send_lost_fin_only_retransmitted() -> None:
    s = SendStream(0, BIG)
    s.write(b"abc")
    frame(s)
    s.write(b"", end_stream=True)
    assert frame(s) == (3, b"", True)
    s.on_acked(0, 3, False)
    s.on_lost(3, 0, True)
    assert s.needs_send
    assert frame(s) == (3, b"", True)
    s.on_acked(3, 0, True)
    assert state(s) is SendState.DATA_RECVD


def test_send_lost_data_carries_fin_again() -> None:
    s = SendStream(0, BIG)
    s.write(b"abcdef", end_stream=True)
    assert frame(s) == (0, b"abcdef", True)
    s.on_lost(0, 6, True)
    assert frame(s, 4) == (0, b"abcd", False)
    assert frame(s, 4) == (4, b"ef", True)
    assert s.next_frame(100, BIG) is None


def test_send_retransmission_carries_fin_written_later() -> None:
    s = SendStream(0, BIG)
    s.write(b"abc")
    assert frame(s) == (0, b"abc", False)
    s.on_lost(0, 3, False)
    s.write(b"", end_stream=True)
    assert frame(s) == (0, b"abc", True)  # no separate FIN-only frame needed
    assert state(s) is SendState.DATA_SENT
    assert s.next_frame(1000, BIG) is None
    s.on_acked(0, 3, True)
    assert state(s) is SendState.DATA_RECVD


def test_send_ack_releases_buffer() -> None:
    s = SendStream(0, BIG)
    for _ in range(100):
        s.write(b"q" * 2000)
    assert s.buffered == 200_000
    sent: list[tuple[int, int]] = []
    while (out := s.next_frame(1200, BIG)) is not None:
        sent.append((out[0], len(out[1])))
    for off, n in sent[:-1]:
        s.on_acked(off, n, False)
    last = sent[-1]
    assert s.buffered == last[1]
    assert s._head > 0 or len(s._chunks) < 100
    s.on_acked(last[0], last[1], False)
    assert s.buffered == 0


def test_send_out_of_order_acks_advance_prefix() -> None:
    s = SendStream(0, BIG)
    s.write(b"z" * 30, end_stream=True)
    frames = [s.next_frame(10, BIG) for _ in range(3)]
    assert all(f is not None for f in frames)
    s.on_acked(20, 10, True)
    s.on_acked(10, 10, False)
    assert s.buffered == 30
    assert state(s) is SendState.DATA_SENT
    s.on_acked(0, 10, False)
    assert s.buffered == 0
    assert state(s) is SendState.DATA_RECVD


def test_send_on_acked_returns_what_is_still_buffered() -> None:
    """on_acked returns :attr:`buffered`: the bytes written and not yet acknowledged
    while sending, 0 once finished (a late duplicate included) and once reset."""
    s = SendStream(0, BIG)
    s.write(b"z" * 30, end_stream=True)
    frames = [s.next_frame(10, BIG) for _ in range(3)]
    assert all(f is not None for f in frames)
    assert s.on_acked(20, 10, True) == 30 == s.buffered  # out of order, FIN acked
    assert s.on_acked(0, 10, False) == 20 == s.buffered
    assert not s.is_finished
    assert s.on_acked(10, 10, False) == 0  # the gap closed: Data Recvd
    assert s.is_finished
    assert s.on_acked(10, 10, False) == 0  # a duplicate
    r = SendStream(4, BIG)
    r.write(b"y" * 20)
    assert r.next_frame(10, BIG) is not None
    assert r.reset(7)
    assert r.on_acked(0, 10, False) == 0 == r.buffered  # Reset Sent: nothing held
    assert not r.is_finished
    t = SendStream(8, BIG)  # a reliable reset keeps its first bytes until acknowledged
    t.write(b"x" * 40)
    assert t.next_frame(30, BIG) is not None
    assert t.reset(9, reliable_size=20)
    assert t.on_acked(0, 10, False) == t.buffered == 20


def test_send_highest_sent_and_write_offset_follow_the_stream() -> None:
    s = SendStream(0, BIG)
    s.write(b"a" * 2500)
    assert (s.highest_sent, s.write_offset) == (0, 2500)
    frame(s, 1000)
    frame(s, 1000)
    assert (s.highest_sent, s.write_offset) == (2000, 2500)
    s.on_lost(0, 1000, False)
    assert frame(s, 1000)[0] == 0  # a retransmission does not move highest_sent
    assert s.highest_sent == 2000
    s.write(b"b" * 10, end_stream=True)
    assert s.write_offset == 2510


def test_send_reset_pending_until_the_frame_is_taken() -> None:
    """reset_pending: a reset frame is owed; reset_ready: it may go now (a
    RESET_STREAM_AT waits until every byte below its final size was sent once)."""
    s = SendStream(0, BIG)
    s.write(b"r" * 30)
    assert not s.reset_pending and not s.reset_ready
    assert s.reset(3, reliable_size=20)
    assert s.reset_pending and not s.reset_ready  # nothing sent yet
    assert frame(s, 25)[1] == b"r" * 20  # the write buffer was cut at the final size
    assert s.reset_pending and s.reset_ready
    assert s.reset_frame() == (3, 20, 20)
    assert not s.reset_pending and not s.reset_ready
    s.on_reset_lost(20)
    assert s.reset_pending and s.reset_ready


def test_send_reset_final_size_is_highest_sent() -> None:
    s = SendStream(8, BIG)
    s.write(b"a" * 100)
    frame(s, 40)
    assert s.reset(7) is True
    assert state(s) is SendState.RESET_SENT
    assert s.final_size == 40
    assert s.reset_frame() == (7, 40, None)
    assert s.reset_frame() is None
    assert s.next_frame(1000, BIG) is None  # §19.4: no more STREAM frames
    s.on_lost(0, 40, False)  # ignored after reset
    assert s.next_frame(1000, BIG) is None
    s.on_reset_lost()
    assert s.reset_frame() == (7, 40, None)
    s.on_reset_acked()
    assert state(s) is SendState.RESET_RECVD
    assert s.is_finished
    s.on_reset_lost()  # too late: no resend
    assert s.reset_frame() is None
    assert s.reset(9) is False


def test_send_reset_from_ready_and_write_after_reset() -> None:
    s = SendStream(12, BIG)
    assert s.reset(3)
    assert s.reset_frame() == (3, 0, None)
    with pytest.raises(StreamResetError) as info:
        s.write(b"x")
    assert info.value.error_code == 3
    assert info.value.stream_id == 12


def test_send_reset_after_data_recvd_is_noop() -> None:
    s = SendStream(0, BIG)
    s.write(b"x", end_stream=True)
    frame(s)
    s.on_acked(0, 1, True)
    assert state(s) is SendState.DATA_RECVD
    assert s.reset(1) is False
    assert s.reset_frame() is None


def test_send_stop_sending_resets_with_code() -> None:
    # RFC 9000 §3.5: copy the STOP_SENDING error code into RESET_STREAM
    s = SendStream(0, BIG)
    s.write(b"data")
    frame(s)
    assert s.on_stop_sending(0x42) is True
    assert s.reset_frame() == (0x42, 4, None)
    assert s.on_stop_sending(0x43) is False


def test_send_blocked_frame_once_per_limit() -> None:
    s = SendStream(0, max_stream_data=4)
    assert s.blocked_frame() is None  # nothing to send
    s.write(b"abcdefgh")
    assert s.blocked_frame() is None  # credit left
    frame(s)
    assert s.blocked_frame() == 4
    assert s.blocked_frame() is None
    s.on_blocked_lost(4)
    assert s.blocked_frame() == 4
    s.on_max_stream_data(6)
    frame(s)
    assert s.blocked_frame() == 6


def test_send_blocked_frame_moves_ready_to_send() -> None:
    s = SendStream(0, max_stream_data=0)
    s.write(b"abc")
    assert s.next_frame(1000, BIG) is None
    assert state(s) is SendState.READY
    assert s.blocked_frame() == 0
    assert state(s) is SendState.SEND


def test_send_needs_send() -> None:
    s = SendStream(0, max_stream_data=2)
    assert not s.needs_send
    s.write(b"abc")
    assert s.needs_send
    frame(s)
    assert not s.needs_send  # blocked on stream credit
    s.on_lost(0, 2, False)
    assert s.needs_send


# ====================================================================== RecvStream


def test_recv_in_order_and_fin() -> None:
    r = RecvStream(1, 1000)
    assert r.on_stream_frame(0, b"hello ", False) == 6
    assert r.readable == 6
    assert r.on_stream_frame(6, b"world", True) == 5
    assert state(r) is RecvState.DATA_RECVD
    assert r.read() == b"hello world"
    assert r.at_eof
    assert state(r) is RecvState.DATA_READ
    assert r.is_finished


def test_recv_out_of_order_overlap_duplicate() -> None:
    r = RecvStream(1, 1000)
    assert r.on_stream_frame(10, b"KLMNO", False) == 15
    assert r.readable == 0
    assert r.on_stream_frame(12, b"MNOPQ", False) == 2  # overlap on the right
    assert r.on_stream_frame(5, b"FGHIJKL", False) == 0  # overlap on the left
    assert r.on_stream_frame(10, b"KLM", False) == 0  # duplicate
    assert r.readable == 0
    assert r.on_stream_frame(0, b"ABCDEF", False) == 0
    assert r.read() == b"ABCDEFGHIJKLMNOPQ"
    assert r.on_stream_frame(3, b"DEF", False) == 0  # old data, already read
    assert r.readable == 0


def test_recv_fin_below_received_is_final_size_error() -> None:
    r = RecvStream(1, 1000)
    r.on_stream_frame(10, b"abc", False)
    with pytest.raises(QuicProtocolError) as info:
        r.on_stream_frame(0, b"a", True)
    assert error_code(info) == TransportErrorCode.FINAL_SIZE_ERROR


def test_recv_gap_fill_reassembles() -> None:
    r = RecvStream(1, 1000)
    r.on_stream_frame(2, b"cd", False)
    r.on_stream_frame(6, b"gh", False)
    r.on_stream_frame(10, b"kl", False)
    r.on_stream_frame(1, b"bcdefghijklm", False)
    assert r.readable == 0
    r.on_stream_frame(0, b"a", False)
    assert r.read() == b"abcdefghijklm"


def test_recv_partial_reads() -> None:
    r = RecvStream(1, 1000)
    r.on_stream_frame(0, b"abc", False)
    r.on_stream_frame(3, b"defg", False)
    assert r.read(2) == b"ab"
    assert r.read(3) == b"cde"
    assert r.read(0) == b""
    assert r.read(10) == b"fg"
    assert r.read() == b""
    assert r.read_offset == 7


def test_recv_memoryview_input_is_copied() -> None:
    buf = bytearray(b"0123456789")
    r = RecvStream(1, 1000)
    r.on_stream_frame(0, memoryview(buf)[0:5], False)
    r.on_stream_frame(7, memoryview(buf)[7:10], False)
    buf[:] = b"x" * 10
    r.on_stream_frame(5, b"56", False)
    assert r.read() == b"0123456789"


@pytest.mark.parametrize("seed", range(20))
def test_recv_random_chunking_and_reordering(seed: int) -> None:
    rng = random.Random(seed)
    message = rng.randbytes(rng.randrange(1, 5000))
    pieces: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(message):
        n = rng.randrange(1, 300)
        pieces.append((pos, message[pos : pos + n]))
        pos += n
    # duplicates and overlapping re-cuts
    for _ in range(len(pieces) // 2):
        a = rng.randrange(len(message))
        b = min(len(message), a + rng.randrange(1, 400))
        pieces.append((a, message[a:b]))
    rng.shuffle(pieces)
    r = RecvStream(1, len(message))
    total_delta = 0
    got = bytearray()
    for off, data in pieces:
        fin = off + len(data) == len(message)
        total_delta += r.on_stream_frame(off, data, fin)
        if rng.random() < 0.3:
            got += r.read(rng.randrange(0, 200))
    got += r.read()
    assert bytes(got) == message
    assert total_delta == len(message)
    assert r.at_eof
    assert state(r) is RecvState.DATA_READ


def test_recv_fin_changing_final_size_is_error() -> None:
    r = RecvStream(1, 1000)
    r.on_stream_frame(0, b"abc", True)
    with pytest.raises(QuicProtocolError) as info:
        r.on_stream_frame(0, b"ab", True)
    assert error_code(info) == TransportErrorCode.FINAL_SIZE_ERROR
    r.on_stream_frame(0, b"abc", True)  # same final size: fine


def test_recv_data_beyond_final_size_is_error() -> None:
    r = RecvStream(1, 1000)
    r.on_stream_frame(5, b"", True)
    assert state(r) is RecvState.SIZE_KNOWN
    with pytest.raises(QuicProtocolError) as info:
        r.on_stream_frame(3, b"abc", False)
    assert error_code(info) == TransportErrorCode.FINAL_SIZE_ERROR


def test_recv_data_beyond_final_size_after_read_is_error() -> None:
    r = RecvStream(1, 1000)
    r.on_stream_frame(0, b"abc", True)
    r.read()
    assert state(r) is RecvState.DATA_READ
    with pytest.raises(QuicProtocolError) as info:
        r.on_stream_frame(3, b"d", False)
    assert error_code(info) == TransportErrorCode.FINAL_SIZE_ERROR


def test_recv_flow_control_error() -> None:
    r = RecvStream(1, 10)
    r.on_stream_frame(0, b"x" * 10, False)
    with pytest.raises(QuicProtocolError) as info:
        r.on_stream_frame(5, b"x" * 6, False)
    assert error_code(info) == TransportErrorCode.FLOW_CONTROL_ERROR


def test_recv_flow_control_counts_highest_offset_not_bytes() -> None:
    r = RecvStream(1, 100)
    # a zero-length frame far out still consumes credit up to its offset
    assert r.on_stream_frame(50, b"", False) == 50
    with pytest.raises(QuicProtocolError):
        r.on_stream_frame(101, b"", False)


def test_recv_max_stream_data_after_half_read() -> None:
    r = RecvStream(1, 100)
    r.on_stream_frame(0, b"x" * 100, False)
    r.read(49)
    assert r.max_stream_data_frame() is None
    r.read(1)
    assert r.max_stream_data_frame() == 150
    assert r.max_stream_data_frame() is None
    r.on_max_stream_data_lost(150)
    assert r.max_stream_data_frame() == 150
    r.on_stream_frame(100, b"y" * 50, False)  # new limit accepted


def test_recv_no_max_stream_data_once_size_known() -> None:
    r = RecvStream(1, 100)
    r.on_stream_frame(0, b"x" * 80, True)
    r.read(60)
    assert r.max_stream_data_frame() is None


def test_recv_reset_discards_and_releases() -> None:
    r = RecvStream(3, 1000)
    r.on_stream_frame(0, b"abcdef", False)
    r.on_stream_frame(10, b"kl", False)
    assert r.read(2) == b"ab"
    assert r.on_reset(0x99, 20) == 8
    assert state(r) is RecvState.RESET_RECVD
    assert r.pop_released() == 18  # final size 20 - 2 bytes read
    assert r.pop_released() == 0
    with pytest.raises(StreamResetError) as info:
        r.read()
    assert info.value.error_code == 0x99
    assert info.value.stream_id == 3
    assert state(r) is RecvState.RESET_READ
    assert r.is_finished
    # Late data below the final size is ignored; beyond it is an error.
    assert r.on_stream_frame(6, b"ghij", False) == 0
    with pytest.raises(QuicProtocolError) as exc:
        r.on_stream_frame(18, b"xyz", False)
    assert error_code(exc) == TransportErrorCode.FINAL_SIZE_ERROR


def test_recv_reset_final_size_rules() -> None:
    r = RecvStream(1, 1000)
    r.on_stream_frame(0, b"abcdef", False)
    with pytest.raises(QuicProtocolError) as info:
        r.on_reset(0, 5)  # below data already received
    assert error_code(info) == TransportErrorCode.FINAL_SIZE_ERROR
    r2 = RecvStream(1, 1000)
    r2.on_stream_frame(0, b"abc", True)
    with pytest.raises(QuicProtocolError) as info:
        r2.on_reset(0, 4)  # different from the FIN's final size
    assert error_code(info) == TransportErrorCode.FINAL_SIZE_ERROR
    r3 = RecvStream(1, 10)
    with pytest.raises(QuicProtocolError) as info:
        r3.on_reset(0, 11)
    assert error_code(info) == TransportErrorCode.FLOW_CONTROL_ERROR


def test_recv_reset_repeated_and_change() -> None:
    r = RecvStream(1, 1000)
    assert r.on_reset(1, 10) == 10
    assert r.on_reset(1, 10) == 0
    with pytest.raises(QuicProtocolError) as info:
        r.on_reset(1, 11)
    assert error_code(info) == TransportErrorCode.FINAL_SIZE_ERROR


def test_recv_reset_suppressed_when_all_data_received() -> None:
    r = RecvStream(1, 1000)
    r.on_stream_frame(0, b"abc", True)
    assert state(r) is RecvState.DATA_RECVD
    assert r.on_reset(5, 3) == 0
    assert state(r) is RecvState.DATA_RECVD
    assert r.read() == b"abc"
    assert state(r) is RecvState.DATA_READ


def test_recv_stop_sending_discards() -> None:
    r = RecvStream(1, 1000)
    r.on_stream_frame(0, b"abcd", False)
    r.on_stream_frame(8, b"ij", False)
    assert r.stop_sending(0x10) is True
    assert r.stop_sending_frame() == 0x10
    assert r.stop_sending_frame() is None
    assert r.pop_released() == 4
    assert r.readable == 0
    # Later data still counts for flow control, and is released immediately.
    assert r.on_stream_frame(4, b"efgh", False) == 0
    assert r.pop_released() == 6
    r.on_stop_sending_lost()
    assert r.stop_sending_frame() == 0x10
    assert r.max_stream_data_frame() is None
    r.on_stream_frame(10, b"", True)
    assert state(r) is RecvState.DATA_READ
    r.on_stop_sending_lost()  # no longer needed
    assert r.stop_sending_frame() is None


def test_recv_stop_sending_then_reset() -> None:
    r = RecvStream(1, 1000)
    r.on_stream_frame(0, b"abcd", False)
    r.stop_sending(1)
    assert r.pop_released() == 4
    assert r.on_reset(1, 10) == 6
    assert r.pop_released() == 6
    assert r.stop_sending(2) is False
    with pytest.raises(StreamResetError):
        r.read()


def test_recv_stop_sending_after_reset_or_twice() -> None:
    r = RecvStream(1, 1000)
    r.on_reset(0, 0)
    assert r.stop_sending(1) is False
    r2 = RecvStream(1, 1000)
    assert r2.stop_sending(1) is True
    assert r2.stop_sending(1) is False


def test_recv_empty_stream() -> None:
    r = RecvStream(1, 0)
    assert r.on_stream_frame(0, b"", True) == 0
    assert state(r) is RecvState.DATA_RECVD
    assert r.read() == b""
    assert r.at_eof
    assert state(r) is RecvState.DATA_READ


# ====================================================================== QuicStream


def test_quic_stream_composite_finish() -> None:
    send = SendStream(0, BIG)
    recv = RecvStream(0, 100)
    st = QuicStream(0, send, recv)
    assert st.is_bidi
    assert not st.is_finished
    send.write(b"a", end_stream=True)
    send.next_frame(100, BIG)
    send.on_acked(0, 1, True)
    assert not st.is_finished
    recv.on_stream_frame(0, b"b", True)
    recv.read()
    assert st.is_finished
    assert "Data Read" in repr(st)


def test_quic_stream_uni_halves() -> None:
    recv = RecvStream(3, 10)
    st = QuicStream(3, None, recv)
    assert not st.is_bidi
    recv.on_reset(0, 0)
    assert not st.is_finished  # "Reset Recvd" until the application sees it
    with pytest.raises(StreamResetError):
        recv.read()
    assert st.is_finished
    with pytest.raises(ValueError):
        QuicStream(0, None, None)


def _replay(ops: list[tuple[str, int, int]]) -> SendStream:
    s = SendStream(0, 3000)
    for op, a, b in ops:
        if op == "write":
            s.write(bytes((a % 251,)) * b, end_stream=a % 7 == 0)
        elif op == "send":
            s.next_frame(a, b)
        elif op == "lose":
            s.on_lost(a, b, False)
        elif op == "ack":
            s.on_acked(a, b, False)
        elif op == "credit":
            s.credit.update_limit(a)
    return s


def _random_ops(rng: random.Random) -> list[tuple[str, int, int]]:
    """Operations a sender can meet: frames lost or acknowledged are frames it sent."""
    ref = SendStream(0, 3000)
    ops: list[tuple[str, int, int]] = []
    out: list[tuple[int, int]] = []  # frames in flight
    for _ in range(rng.randrange(1, 10)):
        kind = rng.choice(("write", "write", "send", "send", "lose", "ack", "credit"))
        op: tuple[str, int, int] | None = None
        if kind == "write" and ref.final_size is None:
            op = ("write", rng.randrange(1, 50), rng.choice((10, 500, 2000, 70000)))
        elif kind == "send":
            op = ("send", rng.randrange(1, 1500), rng.randrange(0, 5000))
        elif kind in ("lose", "ack") and out:
            offset, n = out.pop(rng.randrange(len(out)))
            op = (kind, offset, n)
        elif kind == "credit":
            op = ("credit", rng.randrange(1000, 100000), 0)
        if op is None:
            continue
        ops.append(op)
        if op[0] == "send":
            frame = ref.next_frame(op[1], op[2])
            if frame is not None and frame[1]:
                out.append((frame[0], len(frame[1])))
        else:
            if op[0] == "write":
                ref.write(bytes((op[1] % 251,)) * op[2], end_stream=op[1] % 7 == 0)
            elif op[0] == "lose":
                ref.on_lost(op[1], op[2], False)
            elif op[0] == "ack":
                ref.on_acked(op[1], op[2], False)
            else:
                ref.credit.update_limit(op[1])
    return ops


def test_next_new_data_is_next_frames_bulk_case() -> None:
    """next_new_data gives next_frame's frame (offset highest_sent, fin False) and leaves
    the same offsets, or None with nothing changed (then next_frame has a frame of
    another kind: not new data in the Send state from one chunk)."""
    rng = random.Random(10)
    taken = declined = 0
    for _ in range(400):
        ops = _random_ops(rng)
        fast, slow = _replay(ops), _replay(ops)
        room, credit = rng.randrange(0, 1500), rng.randrange(-10, 5000)
        before = fast.highest_sent
        data = fast.next_new_data(room, credit)
        frame = slow.next_frame(room, credit)
        if data is None:
            declined += 1
            same = _replay(ops)
            assert (fast.highest_sent, fast.credit.used, fast.state) == (
                same.highest_sent,
                same.credit.used,
                same.state,
            )
            if frame is not None and frame[1] and not frame[2] and frame[0] == before:
                # new data next_frame cut: not in the Send state, or across chunks
                assert (
                    same.state is not SendState.SEND
                    or type(frame[1]) is not bytes
                    or (len(same._chunks) - same._head > 1)
                )
        else:
            taken += 1
            assert frame == (before, data, False)
            assert type(data) is bytes
            assert (fast.highest_sent, fast.credit.used) == (slow.highest_sent, slow.credit.used)
            assert fast.state == slow.state == SendState.SEND
    assert taken > 50 and declined > 50


def test_next_new_run_is_next_new_data_repeated() -> None:
    """next_new_run(size, count) gives the pieces that count calls of next_new_data give
    for frames ending short of every limit (across chunk boundaries that a piece ends
    on exactly), stops before the first piece that would cross a chunk, and leaves the
    same offsets; an empty list changes nothing."""
    rng = random.Random(11)
    runs = crossed = 0
    for _ in range(400):
        ops = _random_ops(rng)
        fast, slow = _replay(ops), _replay(ops)
        size, count = rng.randrange(1, 1500), rng.randrange(0, 40)
        # the caller's guarantee: every piece ends short of the write offset and credit
        limit = min(slow.write_offset, slow.credit.max_data) - slow.highest_sent - 1
        count = max(0, min(count, limit // size))
        pieces = fast.next_new_run(size, count)
        expected: list[bytes] = []
        while len(expected) < count:
            data = slow.next_new_data(size, 1 << 40)
            if data is None:
                break
            expected.append(data)
        assert pieces == expected
        assert all(len(piece) == size for piece in pieces)
        assert (fast.highest_sent, fast.credit.used) == (slow.highest_sent, slow.credit.used)
        runs += len(pieces) > 1
        crossed += 0 < len(pieces) < count
    assert runs > 20 and crossed > 5
