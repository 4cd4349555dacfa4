"""NewReno congestion control (RFC 9002 §7, Appendix B) and the pacer (§7.7)."""

from __future__ import annotations

import pytest

from quic.congestion import CongestionController, NewReno, initial_window, minimum_window
from quic.pacing import Pacer
from quic.recovery import SentPacket

MDS = 1200


def packet(pn: int, size: int = MDS, time_sent: float = 0.0, in_flight: bool = True) -> SentPacket:
    p = SentPacket(2, pn, size, ack_eliciting=in_flight, in_flight=in_flight)
    p.time_sent = time_sent
    return p


def send(cc: NewReno, count: int, t: float, first_pn: int = 0) -> list[SentPacket]:
    out = []
    for i in range(count):
        p = packet(first_pn + i, time_sent=t)
        assert cc.can_send(p.size)
        cc.on_packet_sent(p.size, t)
        out.append(p)
    return out


def test_protocol_conformance() -> None:
    cc: CongestionController = NewReno(MDS)
    assert cc.ssthresh is None


@pytest.mark.parametrize(
    ("mds", "expected"),
    [(1200, 12000), (1472, 14720), (1500, 14720), (7360, 14720), (9000, 18000), (1400, 14000)],
)
def test_initial_window(mds: int, expected: int) -> None:
    # RFC 9002 §7.2: min(10 * mds, max(14720, 2 * mds)).
    assert initial_window(mds) == expected
    assert NewReno(mds).congestion_window == expected
    assert minimum_window(mds) == 2 * mds


def test_rejects_small_datagram_size() -> None:
    with pytest.raises(ValueError):
        NewReno(1000)


def test_window_blocks_sending() -> None:
    cc = NewReno(MDS)
    send(cc, 10, 0.0)
    assert cc.bytes_in_flight == 12000
    assert cc.available() == 0
    assert not cc.can_send(1)


def test_slow_start_doubles_per_round_trip() -> None:
    cc = NewReno(MDS)
    flight = send(cc, 10, 0.0)
    cc.on_packets_acked(flight, 0.1)
    assert cc.congestion_window == 24000
    assert cc.bytes_in_flight == 0
    assert cc.in_slow_start
    flight = send(cc, 20, 0.1, first_pn=10)
    cc.on_packets_acked(flight, 0.2)
    assert cc.congestion_window == 48000


def test_app_limited_does_not_grow() -> None:
    # RFC 9002 §7.8: a sender that uses a fraction of the window does not grow it.
    cc = NewReno(MDS)
    for i in range(20):
        (p,) = send(cc, 1, float(i), first_pn=i)
        cc.on_packets_acked([p], float(i) + 0.1)
    assert cc.congestion_window == 12000


def test_loss_halves_window_and_enters_recovery() -> None:
    cc = NewReno(MDS)
    flight = send(cc, 10, 1.0)
    cc.on_packets_lost([flight[0]], now=2.0)
    assert cc.ssthresh == 6000
    assert cc.congestion_window == 6000
    assert cc.congestion_recovery_start_time == 2.0
    assert cc.bytes_in_flight == 12000 - MDS
    assert not cc.in_slow_start


def test_recovery_period_does_not_reduce_twice() -> None:
    cc = NewReno(MDS)
    flight = send(cc, 10, 1.0)
    cc.on_packets_lost([flight[0]], now=2.0)
    # A second loss of a packet sent before recovery started: no further reduction.
    cc.on_packets_lost([flight[1]], now=2.1)
    assert cc.congestion_window == 6000 and cc.ssthresh == 6000
    # ECN-CE for a packet sent before recovery started: no reduction either.
    cc.on_ecn_ce(1.0, now=2.2)
    assert cc.congestion_window == 6000
    # Acks of packets sent before recovery do not grow the window.
    cc.on_packets_acked(flight[2:], now=2.3)
    assert cc.congestion_window == 6000
    assert cc.bytes_in_flight == 0
    # A packet sent during recovery and then lost starts a new congestion event.
    later = send(cc, 5, 2.5, first_pn=100)
    cc.on_packets_lost([later[0]], now=3.0)
    assert cc.congestion_window == 3000 and cc.ssthresh == 3000
    assert cc.congestion_recovery_start_time == 3.0


def test_window_never_below_minimum() -> None:
    cc = NewReno(MDS)
    t = 0.0
    for pn in range(10):
        t += 1.0
        (p,) = send(cc, 1, t, first_pn=pn)
        cc.on_packets_lost([p], now=t + 0.5)
    assert cc.congestion_window == 2 * MDS
    assert cc.ssthresh is not None and cc.ssthresh < 2 * MDS


def test_congestion_avoidance_adds_one_datagram_per_window() -> None:
    cc = NewReno(MDS)
    flight = send(cc, 10, 1.0)
    cc.on_packets_lost([flight[0]], now=1.5)  # cwnd = ssthresh = 6000
    cc.on_packets_acked(flight[1:], now=1.6)  # sent before recovery: no growth
    assert cc.congestion_window == 6000
    # One full window (5 packets) sent after recovery start and acknowledged: +1 MDS.
    flight = send(cc, 5, 2.0, first_pn=20)
    cc.on_packets_acked(flight, now=2.1)
    assert cc.congestion_window == 7200
    # Only part of a window acknowledged: no growth yet, the bytes are remembered.
    # The sender keeps the window full (window-limited) between ACKs.
    flight = send(cc, 6, 3.0, first_pn=30)
    cc.on_packets_acked(flight[:3], now=3.1)
    assert cc.congestion_window == 7200
    refill = send(cc, 3, 3.1, first_pn=40)
    cc.on_packets_acked(flight[3:], now=3.2)
    assert cc.congestion_window == 8400
    assert cc.bytes_in_flight == 3 * MDS
    cc.on_packets_acked(refill, now=3.3)  # now app-limited (window mostly empty)
    assert cc.congestion_window == 8400


def test_congestion_avoidance_app_limited_does_not_grow() -> None:
    cc = NewReno(MDS)
    flight = send(cc, 10, 1.0)
    cc.on_packets_lost([flight[0]], now=1.5)
    cc.on_packets_acked(flight[1:], now=1.6)
    for i in range(20):  # one packet per round trip in a 6000-byte window
        (p,) = send(cc, 1, 2.0 + i, first_pn=100 + i)
        cc.on_packets_acked([p], now=2.5 + i)
    assert cc.congestion_window == 6000


def test_send_one_packet_allowance_after_entering_recovery() -> None:
    # RFC 9002 §7.3.2: with an immediate reduction one packet may still be sent.
    cc = NewReno(MDS)
    flight = send(cc, 10, 1.0)
    cc.on_packets_lost([flight[0]], now=2.0)
    assert cc.bytes_in_flight > cc.congestion_window
    assert cc.can_send(MDS)
    assert cc.available() == MDS
    cc.on_packet_sent(MDS, 2.0)
    assert not cc.can_send(MDS)
    assert cc.available() == 0


def test_persistent_congestion_collapses_window() -> None:
    cc = NewReno(MDS)
    flight = send(cc, 10, 1.0)
    cc.on_packets_lost(flight, now=5.0)
    cc.on_persistent_congestion(now=5.0)
    assert cc.congestion_window == 2 * MDS
    assert cc.ssthresh == 6000
    assert cc.in_slow_start  # cwnd < ssthresh: back to slow start
    assert cc.congestion_recovery_start_time == float("-inf")
    assert cc.bytes_in_flight == 0


def test_ecn_ce_is_a_congestion_event() -> None:
    cc = NewReno(MDS)
    send(cc, 10, 1.0)
    cc.on_ecn_ce(sent_time=1.0, now=1.1)
    assert cc.congestion_window == 6000
    assert cc.congestion_recovery_start_time == 1.1


def test_not_in_flight_packets_ignored() -> None:
    cc = NewReno(MDS)
    ack_only = packet(0, size=50, in_flight=False)
    cc.on_packets_lost([ack_only], now=1.0)
    assert cc.ssthresh is None and cc.congestion_window == 12000
    cc.on_packets_acked([ack_only], now=1.0)
    assert cc.bytes_in_flight == 0


def test_discard_removes_bytes_without_reaction() -> None:
    cc = NewReno(MDS)
    flight = send(cc, 3, 0.0)
    for p in flight:
        cc.on_packet_discarded(p)
    assert cc.bytes_in_flight == 0
    assert cc.congestion_window == 12000 and cc.ssthresh is None


def test_set_max_datagram_size() -> None:
    cc = NewReno(MDS)
    cc.set_max_datagram_size(1400)
    assert cc.congestion_window == 14000  # still the initial window: recomputed
    flight = send(cc, 4, 1.0)
    cc.on_packets_lost(flight, now=2.0)
    cc.on_persistent_congestion(now=2.0)
    cc.set_max_datagram_size(1500)
    assert cc.congestion_window == 3000  # raised to the new minimum window
    with pytest.raises(ValueError):
        cc.set_max_datagram_size(500)


# -- pacer ---------------------------------------------------------------------------


def test_pacer_unpaced_until_rate_known() -> None:
    pacer = Pacer(MDS)
    assert pacer.rate is None
    assert pacer.next_send_time(3.0) == 3.0
    pacer.on_packet_sent(MDS, 3.0)
    assert pacer.next_send_time(3.0) == 3.0


def test_pacer_burst_then_interval() -> None:
    pacer = Pacer(MDS, multiplier=1.25)
    pacer.update_rate(congestion_window=24000, smoothed_rtt=0.1, now=0.0)
    assert pacer.rate == pytest.approx(1.25 * 24000 / 0.1)  # 300 000 B/s
    assert pacer.capacity == 12000  # burst limited to the initial window
    for _ in range(10):  # the burst leaves at once
        assert pacer.next_send_time(0.0) == 0.0
        pacer.on_packet_sent(MDS, 0.0)
    # Then one packet per 1200 / 300000 s = 4 ms.
    assert pacer.next_send_time(0.0) == pytest.approx(0.004)
    assert pacer.next_send_time(0.002) == pytest.approx(0.004)
    assert pacer.next_send_time(0.004) == pytest.approx(0.004)
    pacer.on_packet_sent(MDS, 0.004)
    assert pacer.next_send_time(0.004) == pytest.approx(0.008)


def test_pacer_bucket_refills_up_to_capacity() -> None:
    pacer = Pacer(MDS)
    pacer.update_rate(congestion_window=2400, smoothed_rtt=0.1, now=0.0)
    assert pacer.capacity == 2400  # small window: burst = window (>= 2 datagrams)
    pacer.on_packet_sent(MDS, 0.0)
    pacer.on_packet_sent(MDS, 0.0)
    assert pacer.next_send_time(0.0) > 0.0
    # After a long idle period only a burst's worth is available.
    assert pacer.next_send_time(10.0) == 10.0
    pacer.on_packet_sent(MDS, 10.0)
    pacer.on_packet_sent(MDS, 10.0)
    assert pacer.next_send_time(10.0) > 10.0


def test_pacer_validates_multiplier() -> None:
    with pytest.raises(ValueError):
        Pacer(MDS, multiplier=0.5)
