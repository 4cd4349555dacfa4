"""ACK frequency (draft-ietf-quic-ack-frequency): the codec, the transport parameter,
the receiver's acknowledgment policy, the sender's requests, and the errors."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from quic.ack import AckTracker
from quic.buffer import encode_varint
from quic.conn_ackfreq import MAX_ACK_ELICITING_THRESHOLD, AckFrequencySender
from quic.connection import ConnectionState
from quic.errors import QuicProtocolError, TransportErrorCode
from quic.frames import (
    FRAME_INFO,
    IMMEDIATE_ACK_FRAME,
    AckFrame,
    AckFrequencyFrame,
    FrameType,
    ImmediateAckFrame,
    decode_frame,
    decode_frames,
    encode_ack_frequency_frame,
)
from quic.packet import PacketType
from quic.recovery import SentPacket
from quic.tparams import TransportParameters
from tests.support.netsim import Link
from tests.support.quicinject import seal_1rtt
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, Pair, make_pair

# -- codec ------------------------------------------------------------------------------


def test_ack_frequency_frame_round_trip() -> None:
    frame = encode_ack_frequency_frame(7, 9, 25_000, 1)
    assert frame[:2] == b"\x40\xaf"  # type 0xaf as a two-byte varint
    decoded, end = decode_frame(frame + b"\x01", 0)
    assert end == len(frame)
    assert decoded == AckFrequencyFrame(7, 9, 25_000, 1)
    assert decoded.encode() == frame
    assert decoded.frame_type == FrameType.ACK_FREQUENCY == 0xAF


def test_immediate_ack_frame_round_trip() -> None:
    assert IMMEDIATE_ACK_FRAME == b"\x1f"
    decoded, end = decode_frame(IMMEDIATE_ACK_FRAME, 0)
    assert decoded == ImmediateAckFrame() and end == 1
    assert decoded.encode() == IMMEDIATE_ACK_FRAME


def test_frame_rules() -> None:
    for ftype in (0xAF, 0x1F):
        info = FRAME_INFO[ftype]
        assert info.ack_eliciting and info.congestion_controlled  # draft §4, §5
        # 1-RTT only: draft §3 forbids them in 0-RTT, and they are not handshake frames
        assert info.packet_types == frozenset({PacketType.ONE_RTT})


@pytest.mark.parametrize("cut", range(2, 6))
def test_truncated_ack_frequency_is_frame_encoding_error(cut: int) -> None:
    frame = encode_ack_frequency_frame(1, 2, 3000, 4)
    with pytest.raises(QuicProtocolError) as info:
        decode_frame(frame[:cut], 0)
    assert info.value.error_code == TransportErrorCode.FRAME_ENCODING_ERROR
    assert info.value.frame_type == 0xAF


def test_non_minimal_frame_type_is_protocol_violation() -> None:
    frame = b"\x80\x00\x00\xaf" + bytes(4)  # 0xaf on four bytes (RFC 9000 §12.4)
    with pytest.raises(QuicProtocolError) as info:
        decode_frame(frame, 0)
    assert info.value.error_code == TransportErrorCode.PROTOCOL_VIOLATION


def test_not_allowed_in_handshake_packets() -> None:
    with pytest.raises(QuicProtocolError) as info:
        decode_frames(encode_ack_frequency_frame(0, 1, 1000, 1), PacketType.HANDSHAKE)
    assert info.value.error_code == TransportErrorCode.PROTOCOL_VIOLATION
    with pytest.raises(QuicProtocolError):
        decode_frames(IMMEDIATE_ACK_FRAME, PacketType.ZERO_RTT)
    assert decode_frames(IMMEDIATE_ACK_FRAME, PacketType.ONE_RTT) == [ImmediateAckFrame()]


def test_encoder_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        encode_ack_frequency_frame(-1, 0, 0, 0)
    with pytest.raises(ValueError):
        encode_ack_frequency_frame(0, 0, 1 << 62, 0)


# -- transport parameter -------------------------------------------------------------------


def test_min_ack_delay_parameter_round_trip() -> None:
    params = TransportParameters(min_ack_delay=1000)
    raw = params.encode()
    assert encode_varint(0xFF04DE1B) in raw
    assert TransportParameters.decode(raw, is_client_sender=True).min_ack_delay == 1000
    assert TransportParameters.decode(b"", is_client_sender=True).min_ack_delay is None


def test_min_ack_delay_above_max_ack_delay_is_rejected() -> None:
    raw = TransportParameters(max_ack_delay=5, min_ack_delay=5001).encode()
    with pytest.raises(QuicProtocolError) as info:
        TransportParameters.decode(raw, is_client_sender=False)
    assert info.value.error_code == TransportErrorCode.TRANSPORT_PARAMETER_ERROR
    ok = TransportParameters(max_ack_delay=5, min_ack_delay=5000).encode()
    assert TransportParameters.decode(ok, is_client_sender=False).min_ack_delay == 5000


# -- receiver policy (AckTracker) ---------------------------------------------------------


def _tracker() -> AckTracker:
    return AckTracker(0.025, immediate=False)


def _acks_for(tracker: AckTracker, pns: list[int], now: float = 0.0) -> list[int]:
    """Packet numbers whose arrival made an ACK due at once (ACK sent right away)."""
    out = []
    for pn in pns:
        tracker.on_packet(pn, True, now)
        if tracker.wants_ack(now):
            out.append(pn)
            tracker.on_ack_sent(tracker.largest)  # what AckState.write reports
    return out


def test_default_policy_is_every_second_packet() -> None:
    # RFC 9000 §13.2.2 until the peer sends ACK_FREQUENCY (draft §6)
    assert _acks_for(_tracker(), list(range(10))) == [1, 3, 5, 7, 9]


def test_ack_eliciting_threshold_is_respected() -> None:
    tracker = _tracker()
    tracker.on_ack_frequency(0, 9, 0.010, 1, 0.0)
    assert _acks_for(tracker, list(range(30))) == [9, 19, 29]
    assert tracker.max_ack_delay == 0.010
    tracker.on_packet(30, True, 1.0)
    assert tracker.deadline == pytest.approx(1.010)  # the requested max_ack_delay


def test_threshold_zero_acknowledges_every_packet() -> None:
    tracker = _tracker()
    tracker.on_ack_frequency(0, 0, 0.025, 1, 0.0)
    assert _acks_for(tracker, [0, 1, 2]) == [0, 1, 2]


def test_stale_sequence_numbers_are_ignored() -> None:
    tracker = _tracker()
    tracker.on_ack_frequency(5, 9, 0.025, 1, 0.0)
    tracker.on_ack_frequency(5, 0, 0.025, 1, 0.0)  # not greater: ignored (draft §4)
    tracker.on_ack_frequency(3, 0, 0.025, 1, 0.0)
    assert tracker.packet_tolerance == 10


def test_reordering_threshold_zero_ignores_gaps() -> None:
    tracker = _tracker()
    tracker.on_ack_frequency(0, 9, 0.025, 0, 0.0)
    assert _acks_for(tracker, [0, 2, 4, 6, 1, 3]) == []


def test_reordering_threshold_one_acknowledges_gaps_at_once() -> None:
    tracker = _tracker()
    tracker.on_ack_frequency(0, 9, 0.025, 1, 0.0)
    assert _acks_for(tracker, [0, 1, 3, 4, 2]) == [3, 2]


@pytest.mark.parametrize(
    ("threshold", "received", "expected"),
    [
        # draft §6.2.1, Figure "reordering threshold of 3"
        (3, [0, 1, 3, 4, 5, 8, 9, 10], [5, 9, 10]),
        # draft §6.2.1, Figure "reordering threshold of 5"
        (5, [0, 1, 3, 5, 6, 7, 8, 9], [7, 9]),
    ],
)
def test_reordering_threshold_examples_from_the_draft(
    threshold: int, received: list[int], expected: list[int]
) -> None:
    tracker = _tracker()
    tracker.on_ack_frequency(0, 100, 0.025, threshold, 0.0)  # only reordering sends ACKs
    assert _acks_for(tracker, received) == expected


def test_late_packet_below_reported_missing_is_acknowledged() -> None:
    # draft §6.2: a packet at or below Largest Acked - Reordering Threshold that arrives
    # late was likely declared lost already: acknowledge it at once.
    tracker = _tracker()
    tracker.on_ack_frequency(0, 100, 0.025, 3, 0.0)
    assert _acks_for(tracker, [0, 1, 3, 4, 5]) == [5]
    assert _acks_for(tracker, [2]) == [2]


def test_immediate_ack_request() -> None:
    tracker = _tracker()
    tracker.on_ack_frequency(0, 9, 0.025, 1, 0.0)
    tracker.request_immediate_ack()
    assert _acks_for(tracker, [0]) == [0]
    assert _acks_for(tracker, [1]) == []


def _ce_acks(tracker: AckTracker, marks: list[bool]) -> list[int]:
    """Packet numbers (0, 1, ...; ``marks[pn]``: CE-marked) that made an ACK due."""
    out = []
    for pn, ce in enumerate(marks):
        tracker.on_packet(pn, True, 0.0, ce)
        if tracker.wants_ack(0.0):
            out.append(pn)
            tracker.on_ack_sent(tracker.largest)
    return out


def test_ce_run_is_acknowledged_once_above_threshold_one() -> None:
    # draft §6.3: threshold > 1: an immediate ACK only on the non-CE -> CE transition;
    # the rest of the run waits for the Ack-Eliciting Threshold (9: every 10th packet).
    tracker = _tracker()
    tracker.on_ack_frequency(0, 9, 0.025, 1, 0.0)
    marks = [False] * 3 + [True] * 12 + [False] * 5 + [True] * 3
    assert _ce_acks(tracker, marks) == [3, 13, 20]


def test_non_eliciting_ce_packet_counts_as_the_previous_packet() -> None:
    # "the previously received packet was not marked CE": any packet, ack-eliciting or not
    tracker = _tracker()
    tracker.on_ack_frequency(0, 9, 0.025, 1, 0.0)
    tracker.on_packet(0, False, 0.0, True)  # an ACK-only packet, CE-marked
    tracker.on_packet(1, True, 0.0, True)
    assert not tracker.wants_ack(0.0)
    tracker.on_packet(2, False, 0.0, False)
    tracker.on_packet(3, True, 0.0, True)
    assert tracker.wants_ack(0.0)


@pytest.mark.parametrize("threshold", [None, 0, 1])
def test_every_ce_packet_is_acknowledged_at_threshold_one_or_less(threshold: int | None) -> None:
    # draft §6.3: threshold 0 acknowledges everything, threshold 1 (and no ACK_FREQUENCY
    # at all) is RFC 9000 §13.2.1: every CE-marked packet at once
    tracker = _tracker()
    if threshold is not None:
        tracker.on_ack_frequency(0, threshold, 0.025, 1, 0.0)
    assert _ce_acks(tracker, [True] * 6) == list(range(6))


def test_ce_runs_cost_one_ack_each_n_vs_4n() -> None:
    """N packets in CE runs of 50 (threshold 99): the immediate ACKs are one per run, the
    tracker's state stays one range (4N makes four times as many, nothing else grows)."""

    def run(n: int) -> tuple[int, int]:
        tracker = _tracker()
        tracker.on_ack_frequency(0, 99, 0.025, 1, 0.0)
        marks = [(pn // 50) % 2 == 1 for pn in range(n)]
        acks = _ce_acks(tracker, marks)
        assert acks == [pn for pn in range(50, n, 100)]  # the first of each run only
        return len(acks), len(tracker.received)

    assert run(1000) == (10, 1)
    assert run(4000) == (40, 1)


def test_ce_marking_link_gets_one_immediate_ack_per_ce_run() -> None:
    """A 3 MB upload whose link marks CE in runs of 30 datagrams: the server (asked for
    an Ack-Eliciting Threshold above 1) acknowledges at once only the first CE-marked
    packet of each run (draft §6.3), yet the client still reacts to every run."""
    pair = make_pair(seed=4, ecn=True, delay=0.02)
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    marked = [0]

    def mark(ecn: int, rng: Any) -> int:  # CE on datagrams 300..329 of every 600
        if ecn in (1, 2):
            marked[0] += 1
            if marked[0] % 600 >= 300 and marked[0] % 600 < 330:
                return 3
        return ecn

    pair.net.link(CLIENT_ADDR, SERVER_ADDR).mark = mark  # type: ignore[method-assign]
    tracker = pair.server.acks.trackers[2]
    seen = {"ce": 0, "runs": 0, "immediate": 0, "tolerance": 0, "last": False}

    class Watched(AckTracker):
        __slots__ = ()

        def on_packet(self, pn: int, eliciting: bool, now: float, ce: bool = False) -> None:
            due_before = self.wants_ack(now)
            super().on_packet(pn, eliciting, now, ce)
            if ce and not seen["last"]:
                seen["runs"] += 1
            seen["last"] = ce
            if ce and eliciting:
                seen["ce"] += 1
                reached = self.ack_eliciting_since_ack >= self.packet_tolerance
                if self.wants_ack(now) and not due_before and not reached:
                    seen["immediate"] += 1
                    seen["tolerance"] = max(seen["tolerance"], self.packet_tolerance)

    tracker.__class__ = Watched
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, bytes(3_000_000), end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=60)
    assert seen["ce"] >= 100 and seen["tolerance"] > 2  # threshold > 1 when it mattered
    # one immediate ACK per run at most (old code: one per CE-marked packet)
    assert 0 < seen["immediate"] <= seen["runs"] < seen["ce"] / 5
    # the client learnt every CE mark from the ACK_ECN counts and reduced its window
    assert pair.client.ecn.ce_events >= 3
    assert pair.client.recovery.congestion.ssthresh is not None


# -- sender policy --------------------------------------------------------------------------


class _Recovery:
    max_ack_delay = 0.025


def test_sender_chooses_from_window_and_rtt() -> None:
    sender = AckFrequencySender(_Recovery())  # type: ignore[arg-type]
    sender.set_peer_params(1000, 25)
    assert sender.wanted(12_000, 1200, 0.1) == (1, 25_000)  # initial window: every 2nd
    assert sender.wanted(48_000, 1200, 0.02) == (9, 5_000)  # srtt / 4
    assert sender.wanted(10**7, 1200, 0.002) == (MAX_ACK_ELICITING_THRESHOLD, 1000)


def test_requested_delay_has_a_floor() -> None:
    """QuicConfiguration.ack_frequency_min_delay (25 ms by default): a low-RTT path no
    longer asks for a 1 ms ACK delay, which made the PTO ~3 ms and let a busy peer draw
    probe storms; the threshold still lowers the ACK count; the peer's max_ack_delay
    still caps it."""
    sender = AckFrequencySender(_Recovery(), True, 25_000)  # type: ignore[arg-type]
    sender.set_peer_params(1000, 25)
    assert sender.wanted(10**7, 1200, 0.002) == (MAX_ACK_ELICITING_THRESHOLD, 25_000)
    assert sender.wanted(48_000, 1200, 0.2) == (9, 25_000)  # srtt/4 = 50 ms, capped
    sender.set_peer_params(1000, 10)
    assert sender.wanted(10**7, 1200, 0.002) == (MAX_ACK_ELICITING_THRESHOLD, 10_000)


def test_default_configuration_asks_for_the_floor_on_a_fast_path() -> None:
    pair = make_pair(seed=9)
    pair.handshake()
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, bytes(400_000), end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=30)
    requested = pair.client.ackfreq.requested
    assert requested is not None and requested[1] == 25_000


class _Asm:
    """The part of PacketAssembler the sender uses."""

    def __init__(self) -> None:
        self.room = 1000
        self.packet = SentPacket(2, 0, 0, ack_eliciting=False, in_flight=False)
        self.frames: list[bytes] = []

    def push(self, frame: bytes) -> None:
        self.frames.append(frame)


def test_pto_uses_the_largest_delay_until_acknowledged() -> None:
    # draft §7: until the request is acknowledged, max(current, in flight)
    recovery = _Recovery()
    sender = AckFrequencySender(recovery)  # type: ignore[arg-type]
    sender.set_peer_params(1000, 25)
    assert sender.wants_send(0.0, 12_000, 1200, 0.02, True)
    asm = _Asm()
    sender.write(asm, 0.0)  # type: ignore[arg-type]
    (frame,) = asm.frames
    decoded, _ = decode_frame(frame, 0)
    assert decoded == AckFrequencyFrame(0, 1, 5000, 1)
    assert asm.packet.ack_eliciting and asm.packet.in_flight
    assert recovery.max_ack_delay == 0.025  # the peer's value while in flight
    handler, args = asm.packet.handlers[0]
    handler(True, *args)
    assert recovery.max_ack_delay == 0.005  # acknowledged: the requested delay


def test_lost_request_is_sent_again_with_a_new_sequence_number() -> None:
    sender = AckFrequencySender(_Recovery())  # type: ignore[arg-type]
    sender.set_peer_params(1000, 25)
    assert sender.wants_send(0.0, 12_000, 1200, 0.02, True)
    first = _Asm()
    sender.write(first, 0.0)  # type: ignore[arg-type]
    handler, args = first.packet.handlers[0]
    handler(False, *args)  # lost
    assert sender.pending
    again = _Asm()
    sender.write(again, 0.1)  # type: ignore[arg-type]
    assert decode_frame(again.frames[0], 0)[0] == AckFrequencyFrame(1, 1, 5000, 1)


def test_wants_send_asks_for_what_wanted_says() -> None:
    """The request wants_send() decides on is wanted()'s, and once that was requested
    it asks for nothing more."""
    cases = [
        (window, 1200 + extra, srtt, floor, peer_min, peer_max)
        for window in (2_400, 12_000, 48_000, 10**7)
        for extra in (0, 252)
        for srtt in (0.0005, 0.002, 0.02, 0.2)
        for floor in (1000, 25_000)
        for peer_min in (0, 1000, 30_000)
        for peer_max in (10, 25)
    ]
    for window, mds, srtt, floor, peer_min, peer_max in cases:
        sender = AckFrequencySender(_Recovery(), True, floor)  # type: ignore[arg-type]
        sender.set_peer_params(peer_min, peer_max)
        threshold, delay = sender.wanted(window, mds, srtt)
        assert sender.wants_send(0.0, window, mds, srtt, True)
        asm = _Asm()
        sender.write(asm, 0.0)  # type: ignore[arg-type]
        assert decode_frame(asm.frames[0], 0)[0] == AckFrequencyFrame(0, threshold, delay, 1)
        assert sender.requested == (threshold, delay)
        handler, args = asm.packet.handlers[0]
        handler(True, *args)  # acknowledged: nothing in flight any more
        assert not sender.wants_send(1.0, window, mds, srtt, True)  # nothing new to ask
        assert sender.wants_send(2.0, 4 * window, mds, srtt, True) == (
            sender.wanted(4 * window, mds, srtt) != (threshold, delay)
        )


def test_sender_needs_peer_support() -> None:
    sender = AckFrequencySender(_Recovery())  # type: ignore[arg-type]
    assert not sender.wants_send(0.0, 10**6, 1200, 0.05, True)
    sender.set_peer_params(1000, 25)
    assert sender.wants_send(0.0, 10**6, 1200, 0.05, True)


# -- connections -----------------------------------------------------------------------------


def _ack_only_count(pair: Pair, size: int, sender_kwargs: dict[str, Any]) -> tuple[int, int]:
    """(ACK-only datagrams server -> client, data datagrams client -> server) for a
    ``size``-byte upload."""
    link: Link = pair.net.link(SERVER_ADDR, CLIENT_ADDR)
    up: Link = pair.net.link(CLIENT_ADDR, SERVER_ADDR)
    small = [0]
    schedule = link.schedule

    def recording(data: bytes, now: float, rng: Any) -> list[tuple[float, bytes]]:
        if len(data) < 100:
            small[0] += 1
        return schedule(data, now, rng)

    link.schedule = recording  # type: ignore[method-assign]
    before = up.sent
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, bytes(size), end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=60)
    return small[0], up.sent - before


def _upload(
    send_ack_frequency: bool, server_min_ack_delay: float | None = 0.001
) -> tuple[Pair, int, int]:
    pair = make_pair(
        seed=4,
        client_kwargs={"send_ack_frequency": send_ack_frequency},
        server_kwargs={"min_ack_delay": server_min_ack_delay},
        delay=0.02,
    )
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    acks, data = _ack_only_count(pair, 3_000_000, {})
    return pair, acks, data


def test_ack_frequency_negotiated_and_respected() -> None:
    pair, acks, data = _upload(True)
    sender = pair.client.ackfreq
    assert sender.peer_supports and sender.frames_sent >= 1
    assert sender.requested is not None and sender.requested[0] == MAX_ACK_ELICITING_THRESHOLD
    tracker = pair.server.acks.trackers[2]
    assert tracker.packet_tolerance == MAX_ACK_ELICITING_THRESHOLD + 1
    assert tracker.max_ack_delay == sender.requested[1] / 1_000_000
    # the request was acknowledged: the client's PTO uses the requested delay (§7)
    assert pair.client.recovery.max_ack_delay == sender.requested[1] / 1_000_000
    # about one ACK per ten data packets once the window is large
    assert acks < data / 6
    _, acks_default, data_default = _upload(False)
    # without the request the receiver acknowledges every second packet (RFC 9000)
    assert acks_default > data_default / 3
    assert acks_default > 2 * acks


def test_no_request_to_a_peer_without_support() -> None:
    pair, acks, data = _upload(True, server_min_ack_delay=None)
    assert not pair.client.ackfreq.peer_supports
    assert pair.client.ackfreq.frames_sent == 0
    assert acks > data / 3


def _established(**server_kwargs: Any) -> Pair:
    pair = make_pair(server_kwargs=server_kwargs)
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    pair.net.settle(0.2)
    return pair


def _inject(pair: Pair, payload: bytes) -> None:
    now = pair.net.now
    pair.server.receive_datagram(seal_1rtt(pair.client, payload, now), CLIENT_ADDR, now)


def _closed_with(pair: Pair, code: int) -> None:
    server = pair.server
    assert server.state is ConnectionState.CLOSING
    frame = server._close_frame
    assert frame is not None and frame[1] == code


def test_requested_delay_below_min_ack_delay_is_protocol_violation() -> None:
    pair = _established(min_ack_delay=0.002)
    _inject(pair, encode_ack_frequency_frame(0, 1, 1999, 1))
    _closed_with(pair, TransportErrorCode.PROTOCOL_VIOLATION)


def test_requested_delay_of_2_14_ms_is_protocol_violation() -> None:
    pair = _established()
    _inject(pair, encode_ack_frequency_frame(0, 1, (1 << 14) * 1000, 1))
    _closed_with(pair, TransportErrorCode.PROTOCOL_VIOLATION)


@pytest.mark.parametrize(
    "frame", [encode_ack_frequency_frame(0, 1, 25_000, 1), IMMEDIATE_ACK_FRAME]
)
def test_frames_without_our_parameter_are_protocol_violation(frame: bytes) -> None:
    pair = _established(min_ack_delay=None)
    assert pair.server.handshake.local_params.min_ack_delay is None
    _inject(pair, frame)
    _closed_with(pair, TransportErrorCode.PROTOCOL_VIOLATION)


def test_immediate_ack_is_answered_at_once() -> None:
    pair = _established()
    server = pair.server
    now = pair.net.now
    _inject(pair, b"\x01")  # PING alone: not due yet (every second packet)
    assert not server.acks.due(2, now)
    _inject(pair, IMMEDIATE_ACK_FRAME)
    assert server.acks.due(2, now)
    out = server.datagrams_to_send(now)
    assert out
    client = pair.client
    opened = client.keys.open(
        2, memoryview(out[0][0]), 1 + len(client.host_cid), client.acks.largest(2), now
    )
    assert opened is not None
    assert any(isinstance(f, AckFrame) for f in decode_frames(opened[2], PacketType.ONE_RTT))


def test_flood_of_ack_frequency_frames_is_bounded_and_linear() -> None:
    """N ACK_FREQUENCY frames (new sequence numbers) change four integers: no table
    grows, and the work for 4N frames is about four times that for N."""

    def run(n: int) -> int:
        pair = _established()
        calls = [0]

        def profile(frame: Any, event: str, arg: object) -> None:
            if event == "call":
                calls[0] += 1

        sizes_before = pair.server.queue_sizes()
        sys.setprofile(profile)
        try:
            for seq in range(n):
                _inject(pair, encode_ack_frequency_frame(seq, seq % 20, 25_000, 1))
        finally:
            sys.setprofile(None)
        assert pair.server.state is ConnectionState.CONNECTED
        assert pair.server.queue_sizes() == sizes_before
        return calls[0]

    n = 200
    ratio = run(4 * n) / run(n)
    assert ratio < 6, ratio
