"""LostPackets: the memory of packets declared lost (RFC 9438 §4.9) and persistent
congestion (RFC 9002 §7.6.2), on its own and as owned by LossRecovery."""

from __future__ import annotations

import random

import pytest

import quic.recovery as recovery_module
from quic.congestion import NewReno
from quic.lost_packets import (
    DEFAULT_MAX_LOST_TRACKED,
    K_PERSISTENT_CONGESTION_THRESHOLD,
    LostPackets,
)
from quic.recovery import LossRecovery
from quic.recovery_state import PacketSpaceRecovery, SentPacket
from quic.rtt import RttEstimator

APP = 2
MAX_ACK_DELAY = 0.025


def _rtt() -> RttEstimator:
    """An estimator with one sample of 100 ms taken at t=0.1: pto_base = 0.3 s, so the
    persistent congestion duration is (0.3 + 0.025) * 3 = 0.975 s."""
    rtt = RttEstimator()
    rtt.update(0.1, 0.0, 0.1)
    return rtt


def _packet(pn: int, t: float, *, ack_eliciting: bool = True, in_flight: bool = True) -> SentPacket:
    packet = SentPacket(APP, pn, 1200, ack_eliciting=ack_eliciting, in_flight=in_flight)
    packet.time_sent = t
    return packet


def _flight(times: dict[int, float]) -> list[SentPacket]:
    return [_packet(pn, t) for pn, t in sorted(times.items())]


def test_duration_of_the_fixture() -> None:
    rtt = _rtt()
    assert rtt.pto_base() == pytest.approx(0.3)
    assert K_PERSISTENT_CONGESTION_THRESHOLD == 3


def test_record_remembers_in_flight_packets_in_declaration_order() -> None:
    st = PacketSpaceRecovery()
    losses = LostPackets(_rtt(), max_lost=8)
    lost = [_packet(3, 0.2), _packet(4, 0.2, ack_eliciting=False, in_flight=False), _packet(5, 0.3)]
    assert losses.record(st, lost, MAX_ACK_DELAY) is False
    assert list(st.lost) == [3, 5]  # the ACK-only packet is not remembered
    assert st.lost[5] is lost[2]


def test_record_bound_forgets_the_oldest() -> None:
    st = PacketSpaceRecovery()
    losses = LostPackets(_rtt(), max_lost=4)
    losses.record(st, [_packet(pn, 0.2) for pn in range(3)], MAX_ACK_DELAY)
    losses.record(st, [_packet(pn, 0.2) for pn in range(10, 13)], MAX_ACK_DELAY)
    assert list(st.lost) == [2, 10, 11, 12]


def test_max_lost_zero_remembers_nothing() -> None:
    st = PacketSpaceRecovery()
    losses = LostPackets(_rtt(), max_lost=0)
    losses.record(st, [_packet(1, 0.2), _packet(2, 0.2)], MAX_ACK_DELAY)
    assert not st.lost


def test_negative_bound_is_refused() -> None:
    with pytest.raises(ValueError):
        LostPackets(_rtt(), max_lost=-1)
    with pytest.raises(ValueError):
        LossRecovery(NewReno(1200), is_client=False, max_lost=-1)


def test_persistent_congestion_needs_more_than_the_duration() -> None:
    losses = LostPackets(_rtt())
    # 0.9 s apart: below 0.975 s
    assert not losses.record(
        PacketSpaceRecovery(), _flight({1: 0.2, 2: 0.6, 3: 1.1}), MAX_ACK_DELAY
    )
    # 1.0 s apart: above it
    assert losses.record(PacketSpaceRecovery(), _flight({1: 0.2, 2: 0.6, 3: 1.2}), MAX_ACK_DELAY)
    # a larger max_ack_delay lengthens the duration: (0.3 + 0.1) * 3 = 1.2 s
    assert not losses.record(PacketSpaceRecovery(), _flight({1: 0.2, 2: 1.2}), 0.1)


def test_persistent_congestion_needs_two_packets_and_a_sample() -> None:
    losses = LostPackets(_rtt())
    assert not losses.record(PacketSpaceRecovery(), [_packet(1, 0.2)], MAX_ACK_DELAY)
    fresh = LostPackets(RttEstimator())  # no RTT sample yet
    assert not fresh.record(PacketSpaceRecovery(), _flight({1: 0.2, 2: 5.0}), MAX_ACK_DELAY)


def test_packets_sent_before_the_first_sample_do_not_count() -> None:
    losses = LostPackets(_rtt())  # first sample at t=0.1
    assert not losses.record(
        PacketSpaceRecovery(), _flight({1: 0.05, 2: 0.1, 3: 1.0}), MAX_ACK_DELAY
    )
    assert losses.record(PacketSpaceRecovery(), _flight({1: 0.05, 2: 0.11, 3: 1.1}), MAX_ACK_DELAY)


def test_an_acknowledged_packet_in_between_breaks_the_run() -> None:
    losses = LostPackets(_rtt())
    flight = _flight({1: 0.2, 2: 0.7, 4: 1.0, 5: 1.5})  # pn 3 was acknowledged
    assert not losses.record(PacketSpaceRecovery(), flight, MAX_ACK_DELAY)
    # the same gap as a skipped packet number (RFC 9000 §21.4) does not break it
    st = PacketSpaceRecovery()
    st.skipped.add(3)
    assert losses.record(st, flight, MAX_ACK_DELAY)


def test_non_ack_eliciting_packets_neither_start_nor_end_a_run() -> None:
    losses = LostPackets(_rtt())
    flight = [
        _packet(1, 0.2, ack_eliciting=False, in_flight=False),
        _packet(2, 0.5),
        _packet(3, 2.0, ack_eliciting=False, in_flight=False),
    ]
    assert not losses.record(PacketSpaceRecovery(), flight, MAX_ACK_DELAY)


def test_packets_of_the_old_path_do_not_count() -> None:
    losses = LostPackets(_rtt())
    losses.path_changed_at = 0.5
    assert not losses.record(
        PacketSpaceRecovery(), _flight({1: 0.2, 2: 0.5, 3: 1.4}), MAX_ACK_DELAY
    )
    assert losses.record(PacketSpaceRecovery(), _flight({1: 0.2, 2: 0.51, 3: 1.5}), MAX_ACK_DELAY)


def test_find_spurious_returns_and_forgets_what_the_ranges_cover() -> None:
    st = PacketSpaceRecovery()
    losses = LostPackets(_rtt())
    losses.record(st, [_packet(pn, 1.0) for pn in (2, 3, 7, 9, 12)], MAX_ACK_DELAY)
    found = losses.find_spurious(st, [(11, 20), (7, 8), (0, 2)], 1.1)
    assert [p.packet_number for p in found] == [2, 7, 12]
    assert list(st.lost) == [3, 9]
    assert losses.find_spurious(st, [(7, 8)], 1.1) == []  # reported once
    assert losses.find_spurious(st, [(20, 30)], 1.1) == []  # above every remembered
    assert list(st.lost) == [3, 9]


def test_find_spurious_forgets_packets_older_than_three_ptos() -> None:
    st = PacketSpaceRecovery()
    losses = LostPackets(_rtt())  # 3 PTO bases = 0.9 s
    losses.record(st, [_packet(1, 0.2), _packet(2, 0.5), _packet(3, 0.8)], MAX_ACK_DELAY)
    found = losses.find_spurious(st, [(0, 10)], 1.45)  # horizon 0.55: pn 1 and 2 go first
    assert [p.packet_number for p in found] == [3]
    assert not st.lost


def test_find_spurious_matches_a_plain_search() -> None:
    rng = random.Random(7)
    for _ in range(300):
        st = PacketSpaceRecovery()
        losses = LostPackets(_rtt(), max_lost=16)
        numbers = sorted(rng.sample(range(60), rng.randint(1, 16)))
        losses.record(st, [_packet(pn, 1.0) for pn in numbers], MAX_ACK_DELAY)
        edges = sorted(rng.sample(range(62), 2 * rng.randint(1, 5)))
        ranges = [(edges[i], edges[i + 1]) for i in range(0, len(edges), 2)][::-1]
        want = [pn for pn in numbers if any(lo <= pn <= hi for lo, hi in ranges)]
        found = losses.find_spurious(st, ranges, 1.0)
        assert [p.packet_number for p in found] == want
        assert sorted(st.lost) == [pn for pn in numbers if pn not in want]


def test_loss_recovery_owns_one_and_reexports_its_names() -> None:
    rec = LossRecovery(NewReno(1200), is_client=False, max_lost=5)
    assert isinstance(rec.losses, LostPackets)
    assert rec.losses.rtt is rec.rtt
    assert rec.losses.max_lost == 5
    rec.on_path_change(3.0)
    assert rec.losses.path_changed_at == 3.0
    assert recovery_module.DEFAULT_MAX_LOST_TRACKED == DEFAULT_MAX_LOST_TRACKED == 64
    assert recovery_module.K_PERSISTENT_CONGESTION_THRESHOLD == 3
    assert recovery_module.LostPackets is LostPackets


def test_loss_recovery_reports_spurious_losses_to_the_controller() -> None:
    calls: list[list[int]] = []

    class Spy(NewReno):
        __slots__ = ()

        def on_spurious_loss(self, packets: object, now: float) -> None:
            calls.append([p.packet_number for p in packets])  # type: ignore[attr-defined]

    rec = LossRecovery(Spy(1200), is_client=False)
    rec.handshake_confirmed = True
    for pn in range(5):
        rec.on_packet_sent(SentPacket(APP, pn, 1200), 0.001 * pn)
    rec.on_ack_received(APP, [(4, 4)], 0.0, 0.1)  # packet threshold: 0 and 1 lost
    assert sorted(rec.spaces[APP].lost) == [0, 1]
    rec.on_ack_received(APP, [(0, 4)], 0.0, 0.11)  # a reordering after all
    assert calls == [[0, 1]]
    assert not rec.spaces[APP].lost
