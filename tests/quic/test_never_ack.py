"""A peer that never acknowledges: received ranges and sent-packet records stay bounded
(issue 8, finding 8; RFC 9000 §13.2.3, §13.2.4; RFC 9002 §6).

Unit tests drive :class:`~quic.ack.AckTracker` and :class:`~quic.recovery.LossRecovery`
directly; the connection test plays a client that sends stream data in packets with
gaps in their numbers (each one makes the server acknowledge at once, in an ACK-only
packet) and never acknowledges anything, for N and 4N packets.
"""

from __future__ import annotations

from typing import Any

import pytest

from quic.ack import DEFAULT_MAX_ACK_RANGES_TRACKED, MAX_ACK_RANGES, AckTracker
from quic.congestion import NewReno
from quic.events import StreamDataReceived
from quic.frames import encode_stream_frame_header
from quic.recovery import (
    DEFAULT_MAX_ACK_ONLY_TRACKED,
    LossRecovery,
    SentPacket,
)
from quic.rtt import RttEstimator
from tests.support.inject import one_rtt_from
from tests.support.opcount import count_lines
from tests.support.quicpair import CLIENT_ADDR, make_pair

APP = 2

# ---------------------------------------------------------------------- AckTracker


def test_received_ranges_are_capped_with_gaps_every_other_packet() -> None:
    sizes = {}
    for n in (1000, 4000):
        ack = AckTracker(0.025, immediate=False)
        for pn in range(0, 2 * n, 2):
            assert not ack.is_duplicate(pn)
            ack.on_packet(pn, True, 0.0)
        sizes[n] = len(ack.received)
        assert ack.largest == 2 * n - 2
        assert len(ack.ranges()) == MAX_ACK_RANGES
        assert ack.ranges()[0] == (2 * n - 2, 2 * n - 2)
    assert sizes[1000] == sizes[4000] == DEFAULT_MAX_ACK_RANGES_TRACKED


def test_duplicate_detection_stays_sound_below_the_floor() -> None:
    ack = AckTracker(0.025, immediate=False, max_ranges=4)
    seen = list(range(0, 40, 3))  # 0, 3, 6, ...: a gap before every packet
    for pn in seen:
        ack.on_packet(pn, True, 0.0)
    assert len(ack.received) == 4
    # everything received is still a duplicate, whether kept or forgotten
    assert all(ack.is_duplicate(pn) for pn in seen)
    # a packet number never received but below the floor is refused too (§13.2.3): the
    # peer declared it lost long ago and resent its frames
    assert ack.floor > 1 and ack.is_duplicate(1)
    # above the floor, holes are still accepted
    hole = max(seen) - 1
    assert not ack.is_duplicate(hole)
    ack.on_packet(hole, True, 0.0)
    assert ack.is_duplicate(hole)


def test_in_order_packets_never_trigger_trimming() -> None:
    ack = AckTracker(0.025, immediate=False, max_ranges=1)
    for pn in range(1000):
        ack.on_packet(pn, True, 0.0)
    assert list(ack.received) == [range(0, 1000)]
    assert ack.floor == 0
    ack.on_packet(1001, True, 0.0)  # a gap: the older range goes, the floor rises
    assert list(ack.received) == [range(1001, 1002)]
    assert ack.floor == 1000
    assert ack.is_duplicate(999) and not ack.is_duplicate(1000)


def test_ack_of_ack_after_trimming_keeps_the_floor_monotonic() -> None:
    ack = AckTracker(0.025, immediate=False, max_ranges=2)
    for pn in (0, 2, 4, 6):
        ack.on_packet(pn, True, 0.0)
    floor = ack.floor
    ack.on_ack_acked(1)  # an old ACK frame acknowledged: must not lower the floor
    assert ack.floor >= floor
    ack.on_ack_acked(6)
    assert ack.floor == 6 and ack.largest == 6
    assert 6 in ack.received


def test_on_packet_work_does_not_grow_with_the_ranges() -> None:
    costs = {}
    for n in (1000, 4000):
        ack = AckTracker(0.025, immediate=False)
        for pn in range(0, 2 * n, 2):
            ack.on_packet(pn, True, 0.0)
        costs[n], _ = count_lines(ack.on_packet, 2 * n, True, 0.0)
        in_order, _ = count_lines(ack.on_packet, 2 * n + 1, True, 0.0)
        assert in_order <= costs[n]
    assert costs[4000] <= costs[1000]


def test_max_ranges_must_be_positive() -> None:
    with pytest.raises(ValueError):
        AckTracker(0.025, immediate=False, max_ranges=0)


# ---------------------------------------------------------------------- LossRecovery


def _recovery(**kwargs: Any) -> LossRecovery:
    rec = LossRecovery(NewReno(1200), RttEstimator(), 0.025, is_client=False, **kwargs)
    rec.handshake_confirmed = True
    return rec


def _ack_only(pn: int, fates: list[tuple[int, bool]]) -> SentPacket:
    p = SentPacket(APP, pn, 50, ack_eliciting=False, in_flight=False)
    p.handlers.append((lambda acked, n: fates.append((n, acked)), (pn,)))
    return p


def test_ack_only_records_are_capped() -> None:
    sizes = {}
    for n in (1000, 4000):
        rec = _recovery()
        fates: list[tuple[int, bool]] = []
        for pn in range(n):
            rec.on_packet_sent(_ack_only(pn, fates), pn * 0.001)
        space = rec.spaces[APP]
        sizes[n] = len(space.sent)
        assert len(space.ack_only or ()) <= DEFAULT_MAX_ACK_ONLY_TRACKED
        # the oldest went first, each reported once as not acknowledged
        assert fates == [(pn, False) for pn in range(n - DEFAULT_MAX_ACK_ONLY_TRACKED)]
        assert min(space.sent) == space.lowest_unacked == n - DEFAULT_MAX_ACK_ONLY_TRACKED
        # an acknowledgment of the newest still works (ACK-of-ACK tracking)
        result = rec.on_ack_received(APP, [(n - 1, n - 1)], 0.0, n * 0.001)
        assert [p.packet_number for p in result.acked] == [n - 1]
        # and one for a forgotten packet is accepted and ignored
        assert not rec.on_ack_received(APP, [(0, 0)], 0.0, n * 0.001).acked
    assert sizes[1000] == sizes[4000] == DEFAULT_MAX_ACK_ONLY_TRACKED


def test_ack_only_fifo_skips_records_already_gone() -> None:
    rec = _recovery(max_ack_only=3)
    fates: list[tuple[int, bool]] = []
    for pn in range(3):
        rec.on_packet_sent(_ack_only(pn, fates), 0.0)
    rec.on_ack_received(APP, [(0, 1)], 0.0, 0.1)  # 0 and 1 acknowledged
    for pn in range(3, 6):
        rec.on_packet_sent(_ack_only(pn, fates), 0.2)
    assert sorted(rec.spaces[APP].sent) == [3, 4, 5]
    assert (2, False) in fates and (0, True) in fates and (1, True) in fates


def test_ack_only_fifo_goes_when_nothing_is_tracked() -> None:
    """Once every tracked packet has left (acknowledged), the FIFO's entries are all
    stale: it goes (memory per idle connection, issue 10), and comes back with the
    next ACK-only packet, still bounded."""
    rec = _recovery(max_ack_only=3)
    fates: list[tuple[int, bool]] = []
    space = rec.spaces[APP]
    for pn in range(3):
        rec.on_packet_sent(_ack_only(pn, fates), 0.0)
    rec.on_ack_received(APP, [(0, 1)], 0.0, 0.1)
    assert space.ack_only is not None  # packet 2 is still tracked
    rec.on_ack_received(APP, [(2, 2)], 0.0, 0.2)
    assert not space.sent and space.ack_only is None
    for pn in range(3, 8):
        rec.on_packet_sent(_ack_only(pn, fates), 0.3)
    assert sorted(space.sent) == [5, 6, 7] and list(space.ack_only or ()) == [5, 6, 7]


def test_sent_records_beyond_the_cap_are_declared_lost() -> None:
    rec = _recovery(max_sent=50)
    rec.congestion.congestion_window = 10**9
    lost: list[int] = []
    for pn in range(200):
        p = SentPacket(APP, pn, 1200)
        p.handlers.append((lambda acked, n: None if acked else lost.append(n), (pn,)))
        rec.on_packet_sent(p, pn * 0.001)
    space = rec.spaces[APP]
    assert len(space.sent) == 50
    assert lost == list(range(150))
    assert space.ack_eliciting_in_flight == 50
    assert rec.congestion.bytes_in_flight == 50 * 1200
    assert rec.congestion.congestion_window < 10**9  # a congestion event
    assert space.lowest_unacked == 150
    result = rec.on_ack_received(APP, [(0, 199)], 0.0, 0.5)
    assert len(result.acked) == 50 and rec.congestion.bytes_in_flight == 0


def test_recovery_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        _recovery(max_sent=0)


# ---------------------------------------------------------------------- connection


def _never_acking_client(packets: int, **server_kwargs: Any) -> tuple[Any, bytes]:
    """Handshake, then the client sends ``packets`` packets of stream data, each after a
    skipped packet number, and never an ACK. Returns (pair, data the server read)."""
    limits = {"initial_max_data": 1 << 30, "initial_max_stream_data": 1 << 30}
    pair = make_pair(server_kwargs={**limits, **server_kwargs})
    pair.handshake()
    client, server = pair.client, pair.server
    sid = client.create_stream()
    now = pair.net.now
    received = bytearray()
    chunk = bytes(range(256)) * 4
    for k in range(packets):
        frame = encode_stream_frame_header(sid, k * len(chunk), len(chunk), False) + chunk
        server.receive_datagram(one_rtt_from(client, frame, skip=1), CLIENT_ADDR, now)
        server.datagrams_to_send(now)  # ACK-only packets the client never sees
        timer = server.get_timer()
        if timer is not None and timer <= now:
            server.handle_timer(now)
        while (event := server.next_event()) is not None:
            if isinstance(event, StreamDataReceived):
                received += event.data
                server.consume_stream_data(event.stream_id, len(event.data))
        now += 0.002
    assert received == chunk * packets
    return pair, bytes(received)


def test_server_tables_stay_bounded_against_a_never_acking_client() -> None:
    """Finding 8: received ranges and sent-packet records grew forever."""
    sent = {}
    ranges = {}
    for n in (2000, 8000):
        pair, _ = _never_acking_client(n)
        server = pair.server
        sent[n] = len(server.recovery.spaces[APP].sent)
        ranges[n] = len(server.acks.trackers[APP].received)
        assert not server.is_closed
        # ACK-only records are capped; ack-eliciting ones (a PING every 16 ACK-only
        # packets, PTO probes) stop when the congestion window is full of them
        in_flight = [p for p in server.recovery.spaces[APP].sent.values() if p.in_flight]
        assert len(in_flight) < 200
    assert ranges[2000] == ranges[8000] == DEFAULT_MAX_ACK_RANGES_TRACKED
    assert sent[8000] < 1.1 * sent[2000]
    assert sent[8000] < DEFAULT_MAX_ACK_ONLY_TRACKED + 200


def test_connection_limits_are_configurable() -> None:
    pair, _ = _never_acking_client(
        300,
        max_ack_ranges_tracked=20,
        max_ack_only_packets_tracked=30,
        max_sent_packets_tracked=5000,
    )
    server = pair.server
    assert server.recovery.max_sent == 5000
    assert len(server.acks.trackers[APP].received) == 20
    ack_only = [p for p in server.recovery.spaces[APP].sent.values() if not p.ack_eliciting]
    assert len(ack_only) <= 30
