"""CUBIC's undo of a spurious congestion event (RFC 9438 §4.9): the controller restores
what the reduction changed once every packet declared lost in it is acknowledged after
all; loss recovery remembers a bounded number of lost packets to notice it."""

from __future__ import annotations

import sys
from typing import Any

from quic.cc_cubic import BETA_CUBIC, Cubic
from quic.congestion import NewReno
from quic.recovery import DEFAULT_MAX_LOST_TRACKED, LossRecovery, SentPacket
from quic.rtt import RttEstimator
from tests.support.quicpair import make_pair

MDS = 1200


def _sent(cc: Cubic | NewReno, count: int, now: float, first: int = 0) -> list[SentPacket]:
    packets = []
    for pn in range(first, first + count):
        p = SentPacket(2, pn, MDS)
        p.time_sent = now
        cc.on_packet_sent(MDS, now, p)
        packets.append(p)
    return packets


def _in_congestion_avoidance(rtt: RttEstimator) -> tuple[Cubic, list[SentPacket]]:
    """A CUBIC controller past one real reduction, in congestion avoidance, with a
    window of packets in flight."""
    cc = Cubic(MDS, rtt)
    flight = _sent(cc, 10, 0.0)
    cc.on_packets_lost(flight[:1], 0.1)  # a first (real) congestion event
    cc.on_packets_acked(flight[1:], 0.1)
    flight = _sent(cc, cc.congestion_window // MDS, 0.2, first=10)
    cc.on_packets_acked(flight[:3], 0.3)  # the epoch starts
    return cc, flight[3:]


def test_spurious_reduction_is_undone() -> None:
    rtt = RttEstimator()
    cc, flight = _in_congestion_avoidance(rtt)
    before = (cc.congestion_window, cc.ssthresh, cc.w_max, cc.k, cc.epoch_start, cc.w_est)
    lost = flight[:2]
    cc.on_packets_lost(lost, 0.4)
    assert cc.congestion_window == int(before[0] * BETA_CUBIC)
    assert cc.w_max != before[2]
    cc.on_spurious_loss(lost[:1], 0.45)
    assert cc.spurious_undos == 0  # one of the two lost packets is still missing
    cc.on_spurious_loss(lost[1:], 0.46)
    assert cc.spurious_undos == 1
    after = (cc.congestion_window, cc.ssthresh, cc.w_max, cc.k, cc.epoch_start, cc.w_est)
    assert after == before
    # the recovery period is the one before the undone event again (RFC 9002 §7.3.2)
    assert cc.congestion_recovery_start_time == 0.1


def test_undo_keeps_a_recovery_period_moved_by_a_path_change() -> None:
    # RFC 9000 §9.4: LossRecovery.on_path_change moves the recovery start so that
    # packets sent on the old path cannot reduce the window; an undo must not undo that
    cc, flight = _in_congestion_avoidance(RttEstimator())
    cc.on_packets_lost(flight[:1], 0.4)
    cc.congestion_recovery_start_time = 0.42  # what on_path_change does
    cc.on_spurious_loss(flight[:1], 0.45)
    assert cc.spurious_undos == 1 and cc.congestion_recovery_start_time == 0.42


def test_later_loss_in_the_same_event_prevents_the_undo() -> None:
    cc, flight = _in_congestion_avoidance(RttEstimator())
    cc.on_packets_lost(flight[:1], 0.4)
    reduced = cc.congestion_window
    cc.on_packets_lost(flight[1:2], 0.41)  # same recovery period: no second reduction
    assert cc.congestion_window == reduced
    cc.on_spurious_loss(flight[:1], 0.45)  # the other one was really lost
    assert cc.spurious_undos == 0 and cc.congestion_window == reduced


def test_ce_and_persistent_congestion_are_never_undone() -> None:
    cc, flight = _in_congestion_avoidance(RttEstimator())
    cc.on_ecn_ce(0.35, 0.4)
    reduced = cc.congestion_window
    cc.on_packets_lost(flight[:1], 0.41)  # in the CE event's recovery period
    cc.on_spurious_loss(flight[:1], 0.45)
    assert cc.spurious_undos == 0 and cc.congestion_window == reduced
    cc2, flight2 = _in_congestion_avoidance(RttEstimator())
    cc2.on_packets_lost(flight2[:2], 0.4)
    cc2.on_persistent_congestion(0.4)
    cc2.on_spurious_loss(flight2[:2], 0.45)
    assert cc2.spurious_undos == 0 and cc2.congestion_window == cc2.minimum_window


def test_window_already_regained_keeps_the_current_state() -> None:
    # RFC 9438 §4.9: detection after cwnd grew past cwnd_prior: current values stay
    cc, flight = _in_congestion_avoidance(RttEstimator())
    cc.on_packets_lost(flight[:1], 0.4)
    cc.congestion_window = int(cc.cwnd_prior) + MDS  # regained meanwhile
    state = (cc.congestion_window, cc.ssthresh, cc.w_max)
    cc.on_spurious_loss(flight[:1], 0.45)
    assert cc.spurious_undos == 0
    assert (cc.congestion_window, cc.ssthresh, cc.w_max) == state


def test_newreno_keeps_its_reduction() -> None:
    cc = NewReno(MDS)
    flight = _sent(cc, 10, 0.0)
    cc.on_packets_lost(flight[:1], 0.1)
    reduced = cc.congestion_window
    cc.on_spurious_loss(flight[:1], 0.2)
    assert cc.congestion_window == reduced and cc.spurious_undos == 0


# -- loss recovery: noticing the spurious loss ---------------------------------------


def _recovery(max_lost: int = DEFAULT_MAX_LOST_TRACKED) -> tuple[LossRecovery, Cubic]:
    rtt = RttEstimator()
    cc = Cubic(MDS, rtt)
    recovery = LossRecovery(cc, rtt, is_client=False, max_lost=max_lost)
    recovery.handshake_confirmed = True
    return recovery, cc


def _send(recovery: LossRecovery, pns: range, now: float) -> None:
    for pn in pns:
        recovery.on_packet_sent(SentPacket(2, pn, MDS), now)


def test_reordered_packet_acknowledged_after_being_declared_lost() -> None:
    recovery, cc = _recovery()
    _send(recovery, range(10), 0.0)
    recovery.on_ack_received(2, [(0, 1)], 0.0, 0.1)
    window = cc.congestion_window
    _send(recovery, range(10, 20), 0.1)
    # 3..12 arrive before 2: packet threshold loss (RFC 9002 §6.1.1)
    result = recovery.on_ack_received(2, [(3, 12), (0, 1)], 0.0, 0.2)
    assert [p.packet_number for p in result.lost] == [2]
    assert cc.congestion_window < window and recovery.spaces[2].lost
    reduced = cc.congestion_window
    # the late packet 2 arrives: an ACK frame that acknowledges nothing new but it
    result = recovery.on_ack_received(2, [(0, 12)], 0.0, 0.21)
    assert result.acked == [] and result.lost == []
    assert cc.spurious_undos == 1 and cc.congestion_window > reduced
    assert not recovery.spaces[2].lost


def test_old_lost_packets_are_forgotten() -> None:
    recovery, cc = _recovery()
    _send(recovery, range(10), 0.0)
    recovery.on_ack_received(2, [(0, 1)], 0.0, 0.1)
    recovery.on_ack_received(2, [(3, 9), (0, 1)], 0.0, 0.2)
    assert 2 in recovery.spaces[2].lost
    late = 0.2 + 10 * recovery.rtt.pto_base()
    _send(recovery, range(10, 12), late)
    recovery.on_ack_received(2, [(0, 11)], 0.0, late + 0.1)
    assert cc.spurious_undos == 0  # too late to be a reordering: a real loss


def test_lost_packet_table_is_bounded_n_vs_4n() -> None:
    """N packets declared lost (every other one missing from the ACKs) and never
    acknowledged: the table holds at most ``max_lost`` of them, and the work for 4N
    is about four times the work for N."""

    def run(n: int) -> tuple[int, int]:
        recovery, _ = _recovery(max_lost=16)
        calls = [0]
        peak = 0

        def profile(frame: Any, event: str, arg: object) -> None:
            if event == "call":
                calls[0] += 1

        sys.setprofile(profile)
        try:
            now = 0.0
            for i in range(n):
                base = 20 * i
                _send(recovery, range(base, base + 20), now)
                now += 0.01
                # odd packet numbers arrive: the even ones are declared lost
                ranges = [(pn, pn) for pn in range(base + 19, base - 1, -2)]
                recovery.on_ack_received(2, ranges, 0.0, now)
                peak = max(peak, len(recovery.spaces[2].lost))
        finally:
            sys.setprofile(None)
        return calls[0], peak

    small, peak_small = run(50)
    big, peak_big = run(200)
    assert peak_small == peak_big == 16
    assert big / small < 6, big / small


# -- connections ----------------------------------------------------------------------


def _upload(undo: bool, **link: Any) -> tuple[int, int, int]:
    """(spurious undos, mean window in bytes, ACK-processing rounds) of a 3 MB CUBIC
    upload over a link with ``link`` attributes."""
    pair = make_pair(seed=1, client_kwargs={"congestion_control": "cubic"}, delay=0.02, **link)
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    cc = pair.client.recovery.congestion
    assert isinstance(cc, Cubic)
    cc.undo_spurious = undo
    samples: list[int] = []
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, bytes(3_000_000), end_stream=True)

    def done() -> bool:
        samples.append(cc.congestion_window)
        return pair.stream_done(sid)

    pair.run(done, max_time=120)
    return cc.spurious_undos, sum(samples) // len(samples), len(samples)


def test_reordering_link_keeps_the_window() -> None:
    # 5 ms of jitter on a 20 ms link reorders packets: without the undo every reordering
    # beyond three packets (RFC 9002 §6.1.1) multiplies the window by 0.7; with it the
    # reduction is taken back once the "lost" packet is acknowledged
    undos, mean, _ = _upload(True, jitter=0.005)
    undos_off, mean_off, _ = _upload(False, jitter=0.005)
    assert undos > 10 and undos_off == 0
    assert mean > 5 * mean_off, (mean, mean_off)


def test_real_losses_are_not_undone() -> None:
    undos, _, _ = _upload(True, loss=0.01)
    assert undos == 0
