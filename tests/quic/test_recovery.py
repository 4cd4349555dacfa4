"""Loss detection, PTO and persistent congestion (RFC 9002 §6, §7.6, Appendix A)."""

from __future__ import annotations

import pytest

from quic.congestion import NewReno
from quic.errors import QuicProtocolError, TransportErrorCode
from quic.recovery import (
    NO_PROBE,
    LossRecovery,
    PacketSpace,
    ProbeRequest,
    SentPacket,
)

INITIAL, HANDSHAKE, APP = PacketSpace.INITIAL, PacketSpace.HANDSHAKE, PacketSpace.APPLICATION
MDS = 1200


class SpyNewReno(NewReno):
    """NewReno that records persistent congestion declarations."""

    __slots__ = ("persistent",)

    def __init__(self, max_datagram_size: int) -> None:
        super().__init__(max_datagram_size)
        self.persistent: list[float] = []

    def on_persistent_congestion(self, now: float) -> None:
        self.persistent.append(now)
        super().on_persistent_congestion(now)


class Harness:
    """A LossRecovery with a NewReno controller and a log of handler calls."""

    def __init__(self, *, is_client: bool = False, confirmed: bool = True) -> None:
        self.cc = SpyNewReno(MDS)
        self.rec = LossRecovery(self.cc, max_ack_delay=0.025, is_client=is_client)
        self.rec.handshake_confirmed = confirmed
        self.rec.has_handshake_keys = confirmed
        self.events: list[tuple[bool, int, int]] = []
        self.next_pn: dict[int, int] = {INITIAL: 0, HANDSHAKE: 0, APP: 0}

    def handler(self, acked: bool, space: int, pn: int) -> None:
        self.events.append((acked, space, pn))

    def send(
        self,
        t: float,
        space: int = APP,
        *,
        size: int = MDS,
        ack_eliciting: bool = True,
        in_flight: bool = True,
    ) -> SentPacket:
        pn = self.next_pn[space]
        self.next_pn[space] = pn + 1
        packet = SentPacket(space, pn, size, ack_eliciting=ack_eliciting, in_flight=in_flight)
        packet.handlers.append((self.handler, (space, pn)))
        self.rec.on_packet_sent(packet, t)
        return packet

    def acked(self) -> list[int]:
        return [pn for ok, _, pn in self.events if ok]

    def lost(self) -> list[int]:
        return [pn for ok, _, pn in self.events if not ok]


def pns(packets: object) -> list[int]:
    return [p.packet_number for p in packets]  # type: ignore[attr-defined]


# -- acknowledgments and RTT ---------------------------------------------------------


def test_ack_calls_handlers_and_updates_rtt() -> None:
    h = Harness()
    for _ in range(3):
        h.send(1.0)
    assert h.cc.bytes_in_flight == 3 * MDS
    result = h.rec.on_ack_received(APP, [(0, 2)], ack_delay=0.0, now=1.1)
    assert pns(result.acked) == [0, 1, 2]
    assert result.lost == []
    assert result.rtt_sample == pytest.approx(0.1)
    assert h.rec.rtt.smoothed_rtt == pytest.approx(0.1)
    assert h.events == [(True, APP, 0), (True, APP, 1), (True, APP, 2)]
    assert h.cc.bytes_in_flight == 0
    assert h.rec.get_loss_detection_timer() is None  # nothing in flight


def test_duplicate_ack_is_ignored() -> None:
    h = Harness()
    h.send(1.0)
    h.rec.on_ack_received(APP, [(0, 0)], 0.0, 1.1)
    result = h.rec.on_ack_received(APP, [(0, 0)], 0.0, 1.5)
    assert result.acked == [] and result.rtt_sample is None
    assert h.acked() == [0]
    assert h.rec.rtt.latest_rtt == pytest.approx(0.1)


def test_multiple_ranges_acked_in_packet_number_order() -> None:
    h = Harness()
    for _ in range(10):
        h.send(1.0)
    result = h.rec.on_ack_received(APP, [(8, 9), (4, 5), (0, 1)], 0.0, 1.1)
    assert pns(result.acked) == [0, 1, 4, 5, 8, 9]
    # 2, 3 are >= 3 below the largest acknowledged (9): packet threshold.
    # 6 and 7 are not: they wait for the time threshold.
    assert pns(result.lost) == [2, 3, 6]  # 6: 9 >= 6 + 3
    assert h.lost() == [2, 3, 6]
    assert h.rec.spaces[APP].loss_time is not None


def test_no_rtt_sample_if_largest_not_newly_acked() -> None:
    h = Harness()
    h.send(1.0)
    h.send(1.0)
    h.rec.on_ack_received(APP, [(1, 1)], 0.0, 1.1)
    result = h.rec.on_ack_received(APP, [(0, 1)], 0.0, 1.5)
    assert pns(result.acked) == [0]
    assert result.rtt_sample is None  # RFC 9002 §5.1: largest (1) already acknowledged
    assert h.rec.rtt.latest_rtt == pytest.approx(0.1)


def test_no_rtt_sample_for_non_ack_eliciting_only() -> None:
    h = Harness()
    h.send(1.0, ack_eliciting=False, in_flight=False, size=40)
    assert h.cc.bytes_in_flight == 0  # ACK-only packets are not in flight
    assert h.rec.get_loss_detection_timer() is None  # and arm no timer
    result = h.rec.on_ack_received(APP, [(0, 0)], 0.0, 1.3)
    assert pns(result.acked) == [0]
    assert result.rtt_sample is None  # RFC 9002 §5.1
    assert not h.rec.rtt.has_sample
    assert h.acked() == [0]  # the ACK subsystem still learns of the ACK's fate


def test_ack_delay_ignored_in_initial_space_and_capped_after_confirmation() -> None:
    h = Harness(confirmed=False)
    h.send(0.0, INITIAL)
    h.rec.on_ack_received(INITIAL, [(0, 0)], 0.0, 0.1)  # first sample: 100 ms
    h.send(1.0, INITIAL)
    h.rec.on_ack_received(INITIAL, [(1, 1)], ack_delay=0.05, now=1.2)
    # Initial: ack delay ignored, adjusted = 200 ms.
    assert h.rec.rtt.smoothed_rtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.2)
    srtt = h.rec.rtt.smoothed_rtt
    # Handshake space, unconfirmed: the full ack delay of 80 ms is subtracted.
    h.send(2.0, HANDSHAKE)
    h.rec.on_ack_received(HANDSHAKE, [(0, 0)], ack_delay=0.08, now=2.2)
    assert h.rec.rtt.smoothed_rtt == pytest.approx(0.875 * srtt + 0.125 * 0.12)
    srtt = h.rec.rtt.smoothed_rtt
    # Confirmed: capped at max_ack_delay (25 ms).
    h.rec.handshake_confirmed = True
    h.send(3.0, APP)
    h.rec.on_ack_received(APP, [(0, 0)], ack_delay=0.08, now=3.2)
    assert h.rec.rtt.smoothed_rtt == pytest.approx(0.875 * srtt + 0.125 * 0.175)


def test_ack_of_unsent_packet_is_protocol_violation() -> None:
    h = Harness()
    for _ in range(4):
        h.send(1.0)
    with pytest.raises(QuicProtocolError) as info:
        h.rec.on_ack_received(APP, [(4, 4), (0, 2)], 0.0, 1.1)
    assert info.value.error_code == TransportErrorCode.PROTOCOL_VIOLATION
    # Nothing changed: the frame was rejected before any processing.
    space = h.rec.spaces[APP]
    assert space.largest_acked == -1 and len(space.sent) == 4
    assert h.events == [] and h.cc.bytes_in_flight == 4 * MDS
    with pytest.raises(QuicProtocolError):
        h.rec.on_ack_received(HANDSHAKE, [(0, 0)], 0.0, 1.1)  # nothing sent there


def test_ack_of_skipped_packet_number_is_protocol_violation() -> None:
    h = Harness()
    h.send(1.0)  # pn 0
    h.rec.on_packet_number_skipped(APP, 1)
    h.next_pn[APP] = 2
    h.send(1.0)  # pn 2
    with pytest.raises(QuicProtocolError) as info:
        h.rec.on_ack_received(APP, [(0, 2)], 0.0, 1.1)
    assert info.value.error_code == TransportErrorCode.PROTOCOL_VIOLATION
    result = h.rec.on_ack_received(APP, [(2, 2), (0, 0)], 0.0, 1.1)
    assert pns(result.acked) == [0, 2]


def test_packet_numbers_must_increase() -> None:
    h = Harness()
    h.send(1.0)
    with pytest.raises(ValueError):
        h.rec.on_packet_sent(SentPacket(APP, 0, MDS), 1.0)
    with pytest.raises(ValueError):
        h.rec.on_packet_number_skipped(APP, 0)


# -- loss detection ------------------------------------------------------------------


def test_packet_threshold_loss() -> None:
    h = Harness()
    for _ in range(5):
        h.send(1.0)
    result = h.rec.on_ack_received(APP, [(3, 3)], 0.0, 1.01)
    assert pns(result.lost) == [0]  # 3 >= 0 + kPacketThreshold
    assert h.lost() == [0]
    assert h.cc.congestion_window == 6000  # one congestion event
    result = h.rec.on_ack_received(APP, [(4, 4)], 0.0, 1.02)
    assert pns(result.lost) == [1]
    assert h.lost() == [0, 1]


def test_time_threshold_loss_via_timer() -> None:
    h = Harness()
    h.send(0.0)  # pn 0
    h.send(0.01)  # pn 1
    result = h.rec.on_ack_received(APP, [(1, 1)], 0.0, 0.1)
    assert result.lost == []
    # latest_rtt = smoothed = 90 ms; loss delay = 9/8 * 90 ms = 101.25 ms.
    deadline = h.rec.get_loss_detection_timer()
    assert deadline == pytest.approx(0.10125)
    assert h.rec.spaces[APP].loss_time == deadline
    # Firing early does nothing.
    assert h.rec.on_loss_detection_timeout(0.1) is NO_PROBE
    assert h.events == [(True, APP, 1)]
    assert deadline is not None
    probe = h.rec.on_loss_detection_timeout(deadline)
    assert pns(probe.lost) == [0]
    assert probe.count == 0 and probe.space is None
    assert h.lost() == [0]
    assert h.rec.pto_count == 0  # a time-threshold loss is not a PTO
    assert h.rec.get_loss_detection_timer() is None
    assert h.cc.bytes_in_flight == 0


def test_lost_packets_reported_once_and_spurious_ack_accepted() -> None:
    h = Harness()
    for _ in range(5):
        h.send(1.0)
    h.rec.on_ack_received(APP, [(3, 4)], 0.0, 1.05)
    assert h.lost() == [0, 1]
    # The "lost" packet 0 was only delayed: its ACK is accepted without error.
    result = h.rec.on_ack_received(APP, [(3, 4), (0, 0)], 0.0, 1.2)
    assert result.acked == [] and result.lost == []
    # Packet 2 is declared lost exactly once, by the time threshold.
    timer = h.rec.get_loss_detection_timer()
    assert timer is not None
    h.rec.on_loss_detection_timeout(timer)
    h.rec.on_loss_detection_timeout(timer + 10.0)
    assert h.lost() == [0, 1, 2]
    assert sorted(h.acked()) == [3, 4]


# -- probe timeout -------------------------------------------------------------------


def test_pto_with_exponential_backoff() -> None:
    h = Harness()  # server, handshake confirmed
    h.send(1.0)
    # PTO = smoothed + 4 * rttvar + max_ack_delay = 0.333 + 0.666 + 0.025.
    assert h.rec.get_loss_detection_timer() == pytest.approx(2.024)
    assert h.rec.on_loss_detection_timeout(2.0) is NO_PROBE  # not yet due
    probe = h.rec.on_loss_detection_timeout(2.024)
    assert probe == ProbeRequest(space=APP, count=2)
    assert h.rec.pto_count == 1
    assert h.lost() == []  # RFC 9002 §6.2: a PTO does not declare anything lost
    assert h.rec.get_loss_detection_timer() == pytest.approx(1.0 + 2 * 1.024)
    h.rec.on_loss_detection_timeout(3.048)
    assert h.rec.pto_count == 2
    assert h.rec.get_loss_detection_timer() == pytest.approx(1.0 + 4 * 1.024)
    # The probe is sent; the timer restarts from it (still backed off).
    h.send(5.096)
    assert h.rec.get_loss_detection_timer() == pytest.approx(5.096 + 4 * 1.024)
    # Its acknowledgment resets the backoff and declares packet 0 lost by time.
    result = h.rec.on_ack_received(APP, [(1, 1)], 0.0, 5.2)
    assert pns(result.lost) == [0]
    assert h.rec.pto_count == 0
    assert h.rec.get_loss_detection_timer() is None


def test_pto_with_less_than_a_datagram_in_flight_asks_one_probe() -> None:
    """RFC 9002 §6.2.4: at least one probe, up to two; two only where a flight could
    lose a datagram's worth (issue 10: a burst of small requests to a busy peer)."""
    h = Harness()
    h.send(1.0, size=97)  # a small request
    timer = h.rec.get_loss_detection_timer()
    assert timer is not None
    assert h.rec.on_loss_detection_timeout(timer) == ProbeRequest(space=APP, count=1)
    h.send(timer, size=29)  # the probe (a PING): still less than one datagram
    timer = h.rec.get_loss_detection_timer()
    assert timer is not None
    assert h.rec.on_loss_detection_timeout(timer).count == 1
    h.send(timer, size=MDS - 97 - 29)  # now a full datagram's worth is in flight
    timer = h.rec.get_loss_detection_timer()
    assert timer is not None
    assert h.rec.on_loss_detection_timeout(timer).count == 2


def test_small_flights_before_confirmation_keep_two_probes() -> None:
    h = Harness(confirmed=False)
    h.rec.has_handshake_keys = True
    h.send(0.0, HANDSHAKE, size=80)  # e.g. a client's Finished
    timer = h.rec.get_loss_detection_timer()
    assert timer is not None
    assert h.rec.on_loss_detection_timeout(timer) == ProbeRequest(space=HANDSHAKE, count=2)


def test_pto_probes_earliest_handshake_space_and_lists_others() -> None:
    h = Harness(confirmed=False)
    h.rec.has_handshake_keys = True
    h.send(0.0, INITIAL)
    h.send(0.01, HANDSHAKE)
    # Initial and Handshake PTOs have no max_ack_delay; the earlier one wins.
    assert h.rec.get_loss_detection_timer() == pytest.approx(0.999)
    timer = h.rec.get_loss_detection_timer()
    assert timer is not None
    probe = h.rec.on_loss_detection_timeout(timer)
    assert probe.space == INITIAL and probe.count == 2
    assert probe.other_spaces == (HANDSHAKE,)
    assert not probe.pad_initial


def test_no_application_pto_before_handshake_confirmed() -> None:
    h = Harness(confirmed=False)  # server: address validation assumed complete
    h.send(1.0, APP)
    assert h.rec.get_loss_detection_timer() is None
    h.rec.handshake_confirmed = True
    assert h.rec.get_loss_detection_timer() == pytest.approx(1.0 + 0.999 + 0.025)


def test_server_blocked_by_amplification_limit_arms_no_pto() -> None:
    h = Harness(confirmed=False)
    h.send(0.0, INITIAL)
    h.rec.amplification_limited = True
    assert h.rec.get_loss_detection_timer() is None
    assert h.rec.on_loss_detection_timeout(5.0) is NO_PROBE
    h.rec.amplification_limited = False  # a datagram arrived
    assert h.rec.get_loss_detection_timer() == pytest.approx(0.999)  # already due


def test_client_anti_deadlock_probes() -> None:
    h = Harness(is_client=True, confirmed=False)
    h.send(0.0, INITIAL)
    h.rec.on_ack_received(INITIAL, [(0, 0)], 0.0, 0.1)  # RTT 100 ms; pto base 300 ms
    assert h.rec.ack_eliciting_in_flight == 0
    assert not h.rec.peer_completed_address_validation
    # RFC 9002 §6.2.2.1: the client keeps a timer with nothing in flight.
    assert h.rec.get_loss_detection_timer() == pytest.approx(0.4)
    probe = h.rec.on_loss_detection_timeout(0.4)
    assert probe == ProbeRequest(space=INITIAL, count=1, pad_initial=True)
    assert h.rec.pto_count == 1
    assert h.rec.get_loss_detection_timer() == pytest.approx(0.4 + 0.6)
    h.rec.has_handshake_keys = True
    probe = h.rec.on_loss_detection_timeout(1.0)
    assert probe == ProbeRequest(space=HANDSHAKE, count=1, pad_initial=False)
    assert h.rec.pto_count == 2
    # A Handshake ACK proves the server validated the address: no more timer.
    h.send(1.0, HANDSHAKE)
    h.rec.on_ack_received(HANDSHAKE, [(0, 0)], 0.0, 1.1)
    assert h.rec.peer_completed_address_validation
    assert h.rec.pto_count == 0
    assert h.rec.get_loss_detection_timer() is None


def test_client_keeps_pto_backoff_on_initial_ack() -> None:
    h = Harness(is_client=True, confirmed=False)
    h.send(0.0, INITIAL)
    h.rec.on_loss_detection_timeout(1.0)
    assert h.rec.pto_count == 1
    h.send(1.0, INITIAL)
    h.rec.on_ack_received(INITIAL, [(1, 1)], 0.0, 1.1)
    assert h.rec.pto_count == 1  # RFC 9002 §6.2.1: not reset by Initial ACKs at a client
    server = Harness(is_client=False, confirmed=False)
    server.send(0.0, INITIAL)
    server.rec.on_loss_detection_timeout(1.0)
    assert server.rec.pto_count == 1
    server.send(1.0, INITIAL)
    server.rec.on_ack_received(INITIAL, [(1, 1)], 0.0, 1.1)
    assert server.rec.pto_count == 0


# -- persistent congestion -----------------------------------------------------------


def _congested(h: Harness, ranges: list[tuple[int, int]]) -> None:
    h.send(0.0)  # pn 0
    h.rec.on_ack_received(APP, [(0, 0)], 0.0, 0.1)  # first RTT sample at t=0.1
    for i in range(1, 11):  # pn 1..10, one every 200 ms
        h.send(0.2 * i)
    h.send(2.1)  # pn 11
    h.rec.on_ack_received(APP, ranges, 0.0, 2.2)


def test_persistent_congestion_collapses_window() -> None:
    h = Harness()
    _congested(h, [(11, 11)])
    # Duration = (0.1 + 4 * 0.0375 + 0.025) * 3 = 0.825 s < 1.8 s between pn 1 and 10.
    assert h.lost() == list(range(1, 11))
    assert h.cc.persistent == [2.2]
    # RFC 9002 B.8: losses are processed first (halve, then collapse to 2 * MDS and
    # leave recovery), then the ACK of pn 11 grows the window in slow start.
    assert h.cc.congestion_window == 3 * MDS
    assert h.cc.ssthresh == 6000
    assert h.cc.bytes_in_flight == 0
    assert h.rec.rtt.min_rtt == h.rec.rtt.latest_rtt


def test_no_persistent_congestion_if_packet_in_between_acked() -> None:
    h = Harness()
    _congested(h, [(11, 11), (5, 5)])
    # Runs 1..4 (0.6 s) and 6..10 (0.8 s) are each shorter than 0.825 s.
    assert h.lost() == [1, 2, 3, 4, 6, 7, 8, 9, 10]
    assert h.cc.persistent == []
    assert h.cc.congestion_window == 6000  # one ordinary congestion event


def test_no_persistent_congestion_before_first_rtt_sample() -> None:
    h = Harness()
    for i in range(10):
        h.send(0.2 * i)
    h.send(2.0)
    h.rec.on_ack_received(APP, [(10, 10)], 0.0, 2.1)
    assert len(h.lost()) == 10
    assert h.cc.persistent == []
    assert h.cc.congestion_window == 6000


def test_persistent_congestion_ignores_non_ack_eliciting_endpoints() -> None:
    h = Harness()
    h.send(0.0)
    h.rec.on_ack_received(APP, [(0, 0)], 0.0, 0.1)
    h.send(0.2)  # pn 1: ack-eliciting
    for i in range(2, 10):  # pn 2..9: ACK-only, spanning a long time
        h.send(0.2 * i, ack_eliciting=False, in_flight=False, size=40)
    h.send(2.1)  # pn 10
    h.rec.on_ack_received(APP, [(10, 10)], 0.0, 2.2)
    assert h.lost() == list(range(1, 10))
    assert h.cc.persistent == []
    assert h.cc.congestion_window == 6000  # only one ack-eliciting packet was lost


# -- ECN -----------------------------------------------------------------------------


def test_ecn_ce_increase_is_congestion_event() -> None:
    h = Harness()
    for _ in range(4):
        h.send(1.0)
    h.rec.on_ack_received(APP, [(0, 0)], 0.0, 1.1, ecn_ce_count=1)
    assert h.cc.congestion_window == 6000
    h.rec.on_ack_received(APP, [(0, 1)], 0.0, 1.2, ecn_ce_count=1)  # unchanged count
    assert h.cc.congestion_window == 6000
    h.rec.on_ack_received(APP, [(0, 2)], 0.0, 1.3, ecn_ce_count=2)  # sent before recovery
    assert h.cc.congestion_window == 6000
    h.send(2.0)
    h.rec.on_ack_received(APP, [(0, 4)], 0.0, 2.1, ecn_ce_count=3)  # new event
    assert h.cc.congestion_window == 3000


# -- discarding keys -----------------------------------------------------------------


def test_discard_space_removes_bytes_in_flight() -> None:
    h = Harness(is_client=True, confirmed=False)
    h.rec.has_handshake_keys = True
    for _ in range(3):
        h.send(0.0, INITIAL)
    h.send(0.05, HANDSHAKE)
    h.rec.on_loss_detection_timeout(1.0)
    assert h.rec.pto_count == 1
    assert h.cc.bytes_in_flight == 4 * MDS
    h.rec.discard_space(INITIAL, now=1.0)
    assert h.cc.bytes_in_flight == MDS
    assert h.events == []  # handlers are not called for discarded packets
    assert h.rec.pto_count == 0
    space = h.rec.spaces[INITIAL]
    assert not space.sent and space.loss_time is None and space.ack_eliciting_in_flight == 0
    assert h.cc.congestion_window == 12000  # no congestion reaction
    # The timer now follows the Handshake space, without backoff.
    assert h.rec.get_loss_detection_timer() == pytest.approx(0.05 + 0.999)
    # Late ACKs for the discarded space are harmless.
    assert h.rec.on_ack_received(INITIAL, [(0, 2)], 0.0, 1.0).acked == []


def test_discard_with_notify_lost_for_zero_rtt_rejection() -> None:
    h = Harness(is_client=True, confirmed=False)
    h.send(0.0, APP)
    h.send(0.0, APP)
    h.rec.discard_space(APP, notify_lost=True)
    assert h.lost() == [0, 1]
    assert h.cc.bytes_in_flight == 0
    assert h.send(0.5, APP).packet_number == 2  # packet numbers keep increasing
    assert h.rec.spaces[APP].lowest_unacked == 2


def test_timeout_without_timer_returns_no_probe() -> None:
    h = Harness()
    assert h.rec.get_loss_detection_timer() is None
    assert h.rec.on_loss_detection_timeout(100.0) is NO_PROBE


# -- scale ---------------------------------------------------------------------------


def test_large_window_with_cumulative_acks() -> None:
    # A 2000-packet flight acknowledged two packets at a time by cumulative ranges
    # [0, largest]: each ACK must cost O(newly acked), not O(flight).
    h = Harness()
    h.cc.congestion_window = 10**9
    window = 2000
    t = 0.0
    for _ in range(window):
        h.send(t)
    largest = -1
    for _ in range(20_000):
        t += 0.0001
        largest += 2
        h.rec.on_ack_received(APP, [(0, largest)], 0.0, t)
        h.send(t)
        h.send(t)
    space = h.rec.spaces[APP]
    assert len(space.sent) == window
    assert space.lowest_unacked == largest + 1
    assert len(h.acked()) == largest + 1
    assert h.lost() == []


def test_huge_ack_range_with_few_outstanding() -> None:
    h = Harness()
    h.next_pn[APP] = 10**9
    h.rec.spaces[APP].largest_sent = 10**9 - 1
    h.send(1.0)
    h.send(1.0)
    result = h.rec.on_ack_received(APP, [(0, 10**9 + 1)], 0.0, 1.1)
    assert pns(result.acked) == [10**9, 10**9 + 1]
