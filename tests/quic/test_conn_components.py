"""The connection's components on their own: each narrow interface, each frame writer
against the room it is given, each fate handler."""

from __future__ import annotations

from collections import deque

import pytest

from quic.ack import MAX_ACK_RANGES
from quic.cid import ConnectionIdManager
from quic.conn_acks import AckState
from quic.conn_close import CloseState
from quic.conn_crypto import CryptoStreams
from quic.conn_datagrams import DatagramChannel
from quic.conn_paths import PathManager
from quic.errors import QuicProtocolError, TransportErrorCode
from quic.events import ConnectionTerminated, DatagramReceived, QuicEvent
from quic.frames import (
    AckFrame,
    RetireConnectionIdFrame,
    datagram_frame_header_size,
    decode_frames,
    encode_datagram_frame_header,
)
from quic.packet import PacketType
from quic.packet_builder import PacketAssembler
from quic.protection import initial_keys

WRITE, _ = initial_keys(1, b"\x01" * 8, True)


def _packet(room: int) -> PacketAssembler:
    """An assembler with one open 1-RTT packet of about ``room`` payload bytes."""
    budget = room + 1 + 8 + 4 + 16  # short header, 8-byte DCID, 4-byte PN, AEAD tag
    asm = PacketAssembler(budget)
    asm.begin_datagram(budget)
    assert asm.begin_packet(PacketType.ONE_RTT, 1, b"\x02" * 8, b"", WRITE, 2, 1 << 20, None)
    return asm


def _frames(asm: PacketAssembler) -> list[object]:
    """The frames written so far into the open packet (its plaintext)."""
    current = asm._current
    assert current is not None
    return list(decode_frames(b"".join(bytes(c) for c in current.chunks), PacketType.ONE_RTT))


def test_crypto_data_of_a_discarded_level_is_ignored() -> None:
    crypto = CryptoStreams()
    assert crypto.receive(1, 3, b"def") == b""
    assert crypto.receive(1, 0, b"abc") == b"abcdef"
    crypto.discard(1)
    # a duplicate later in the same packet must not reach TLS again (RFC 9001 §4.9)
    assert crypto.receive(1, 0, b"abcdef") == b""
    assert not crypto.needs_send(1)


def test_crypto_buffer_limit_is_crypto_buffer_exceeded() -> None:
    crypto = CryptoStreams(buffers=(4096, 4096, 4096))  # 4096: the RFC 9000 §7.5 floor
    with pytest.raises(QuicProtocolError) as info:
        crypto.receive(0, 5000, b"x")
    assert info.value.error_code == TransportErrorCode.CRYPTO_BUFFER_EXCEEDED
    assert crypto.receive(1, 4000, b"y") == b""  # within the limit: held


def test_path_manager_keeps_the_newest_responses_and_sends_each_once() -> None:
    paths = PathManager(is_client=False, max_datagram_size=1200, max_responses=3)
    for i in range(10):
        paths.on_path_challenge(bytes([i]) * 8)
    assert paths.pending_responses == 3 and paths.responses_dropped == 7
    asm = _packet(100)
    paths.write(asm)
    sent = [f.data for f in _frames(asm)]  # type: ignore[attr-defined]
    assert sent == [bytes([i]) * 8 for i in (7, 8, 9)]
    assert not paths.wants_send()


def test_path_manager_amplification_budget() -> None:
    paths = PathManager(is_client=False, max_datagram_size=1500, max_responses=8)
    assert paths.send_budget() == 0 and paths.amplification_blocked()
    paths.on_datagram_received(1200)
    assert paths.send_budget() == 1500
    paths.on_datagram_sent(3000)
    assert paths.send_budget() == 600
    paths.validate_address()
    assert paths.send_budget() == 1500 and not paths.amplification_blocked()


def test_datagram_channel_drops_the_oldest_and_checks_received_sizes() -> None:
    events: deque[QuicEvent] = deque()
    channel = DatagramChannel(100, max_queue=2, events=events)
    with pytest.raises(ValueError):
        channel.send(b"x", 8, 1200)  # the peer did not offer DATAGRAM
    channel.set_peer_max_frame_size(65536)
    for i in range(5):
        channel.send(bytes([i]), 8, 1200)
    assert channel.pending == 2 and channel.dropped == 3
    channel.on_frame(b"y" * 99)
    assert events.popleft() == DatagramReceived(b"y" * 99)
    with pytest.raises(QuicProtocolError):
        channel.on_frame(b"y" * 100)  # 1 + 100 > our max_datagram_frame_size


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 200, 1100])
def test_datagram_frames_written_match_the_generic_encoder(size: int) -> None:
    # write() and room_needed() encode and size the frame header inline (one- and
    # two-byte Lengths): the frame must be what encode_datagram_frame_header gives
    channel = DatagramChannel(65536, 4, deque())
    channel.set_peer_max_frame_size(65536)
    data = bytes(range(256)) * 5
    channel.send(memoryview(data[:size]), 8, 1452)  # a memoryview is copied
    assert channel.room_needed(1400) == datagram_frame_header_size(size) + size
    asm = _packet(1400)
    channel.write(asm)
    current = asm._current
    assert current is not None
    written = b"".join(bytes(c) for c in current.chunks)
    assert written == encode_datagram_frame_header(size) + data[:size]
    assert channel.pending == 0 and current.sent.ack_eliciting


@pytest.mark.parametrize(
    ("peer_max", "mtu"), [(65536, 1200), (100, 1200), (65536, 60), (65536, 20), (0, 1200)]
)
def test_datagram_send_size_check_is_max_payload(peer_max: int, mtu: int) -> None:
    # send() checks the size inline: exactly max_payload(), and an empty datagram
    # whenever the peer takes datagrams at all
    channel = DatagramChannel(65536, 100, deque())
    channel.set_peer_max_frame_size(peer_max)
    limit = channel.max_payload(8, mtu)
    for size in {0, 1, limit - 1, limit, limit + 1} - {-1}:
        fits = bool(peer_max) and size <= limit
        if fits:
            channel.send(b"z" * size, 8, mtu)
        else:
            with pytest.raises(ValueError):
                channel.send(b"z" * size, 8, mtu)


@pytest.mark.parametrize("mtu", [16384 + 20, 16384 + 40, 65507])
def test_a_datagram_of_max_payload_fits_its_packet_above_16k(mtu: int) -> None:
    # a Length above 16,383 takes 4 bytes (RFC 9000 §16): the largest datagram offered
    # must still fit one packet of the PLPMTU, not be dropped when it is written
    channel = DatagramChannel(65536, 100, deque())
    channel.set_peer_max_frame_size(65536)
    limit = channel.max_payload(8, mtu)
    channel.send(b"z" * limit, 8, mtu)
    asm = _packet(mtu - (1 + 8 + 4 + 16))
    channel.write(asm)
    assert channel.pending == 0 and channel.dropped_too_large == 0
    assert asm.room >= 0 and asm.payload_size == datagram_frame_header_size(limit) + limit


def test_ack_frame_is_cut_to_the_room_left() -> None:
    acks = AckState(0.025, 3)
    for pn in range(0, 4 * MAX_ACK_RANGES, 2):  # a gap after every packet
        acks.on_packet(2, pn, True, 0.0)
    assert acks.write(_packet(1000), 2, 0.0)  # everything fits
    acks.on_packet(2, 10_000, True, 0.0)
    small = _packet(24)
    assert acks.write(small, 2, 0.0)
    (frame,) = _frames(small)
    assert isinstance(frame, AckFrame) and len(frame.ranges) < MAX_ACK_RANGES
    assert frame.ranges[0] == (10_000, 10_000)
    full = _packet(100)
    full.push(bytes(full.room - 3))  # PADDING: 3 bytes left
    assert not acks.write(full, 2, 0.0)  # not even one range fits: nothing written
    assert full.room == 3


def test_retirements_are_deduplicated_bounded_and_resent_when_lost() -> None:
    cids = ConnectionIdManager(b"\x01" * 8, 8, 4, lambda n: bytes(n), max_pending_retirements=8)
    cids.set_initial_peer_cid(b"\x02" * 8)
    cids.on_new_connection_id(100, 100, b"\x03" * 8, bytes(16))  # retires seq 0
    for _ in range(5):
        cids.on_new_connection_id(50, 0, b"\x04" * 8, bytes(16))  # below RPT: retired once
    assert cids.pending_retirements == 2
    asm = _packet(100)
    cids.write(asm, may_issue=False)
    sent = sorted(f.sequence_number for f in _frames(asm))  # type: ignore[attr-defined]
    assert sent == [0, 50] and cids.pending_retirements == 2  # in flight until acked
    for _seq, (handler, args) in zip(sent, asm.packet.handlers, strict=True):
        handler(False, *args)  # lost: owed again
    assert cids.wants_send(False)
    with pytest.raises(QuicProtocolError) as info:
        for seq in range(60, 70):
            cids.on_new_connection_id(seq, 0, bytes([seq]) * 8, bytes(16))
    assert info.value.error_code == TransportErrorCode.CONNECTION_ID_LIMIT_ERROR
    assert cids.pending_retirements == 8


def test_retire_prior_to_beyond_the_limit_changes_nothing() -> None:
    cids = ConnectionIdManager(b"\x01" * 8, 8, 8, lambda n: bytes(n), max_pending_retirements=1)
    assert cids.max_pending_retirements == 16  # never below 2 x active_connection_id_limit
    cids.set_initial_peer_cid(b"\xff" * 8)
    for seq in range(1, 8):
        cids.on_new_connection_id(seq, 0, bytes([seq]) * 8, bytes(16))
    for seq in range(100, 109):  # each retires everything older
        cids.on_new_connection_id(seq, seq, bytes([seq]) * 8, bytes(16))
    assert cids.pending_retirements == 16
    before = dict(cids.peer)
    with pytest.raises(QuicProtocolError):
        cids.on_new_connection_id(200, 200, b"\xc8" * 8, bytes(16))
    assert cids.peer == before and cids.peer_cid == before[108].cid  # nothing half done


def test_retire_frames_wait_for_room() -> None:
    cids = ConnectionIdManager(b"\x01" * 8, 8, 8, lambda n: bytes(n), max_pending_retirements=500)
    cids.set_initial_peer_cid(b"\x02" * 8)
    cids.on_new_connection_id(10_000, 10_000, b"\x03" * 8, bytes(16))
    for seq in range(9000, 9400):
        cids.on_new_connection_id(seq, 0, seq.to_bytes(8, "big"), bytes(16))
    written = 0
    while cids.wants_send(False):
        asm = _packet(200)
        cids.write(asm, may_issue=False)
        frames = _frames(asm)
        assert frames and all(isinstance(f, RetireConnectionIdFrame) for f in frames)
        assert asm.room >= 0
        written += len(frames)
    assert written == 401


def test_close_state_answers_datagrams_at_most_eight_times() -> None:
    events: deque[QuicEvent] = deque()
    closer = CloseState(events, None)
    closer.begin_closing(False, TransportErrorCode.PROTOCOL_VIOLATION, 0x08, "bad", False)
    assert isinstance(events.popleft(), ConnectionTerminated)
    assert closer.take_pending() is not None and closer.take_pending() is None
    closer.on_close_sent(10.0, 1.0)
    sent = 0
    for _ in range(50):
        closer.on_datagram_while_closing()
        if closer.take_pending() is not None:
            sent += 1
    assert sent == 8  # RFC 9000 §10.2.1: rate limited
    assert not closer.expired(10.5) and closer.expired(11.0)
