"""BBR v1 (quic.cc_bbr) on a synthetic path: a bottleneck of known rate and a known
propagation delay. State transitions, the model it learns, and the queue it keeps."""

from __future__ import annotations

import heapq
import math

import pytest

from quic.cc_bbr import HIGH_GAIN, PACING_GAIN_CYCLE, Bbr, BbrState
from quic.congestion import CongestionController
from quic.controllers import create_controller
from quic.recovery import SentPacket

MDS = 1200


class Path:
    """A paced bulk sender behind one bottleneck link (FIFO, ``rate`` bytes/s) with
    ``rtt`` of propagation delay; every packet is acknowledged on arrival."""

    def __init__(self, cc: Bbr, rate: float, rtt: float, buffer: int | None = None) -> None:
        self.cc = cc
        self.rate = rate
        self.rtt = rtt
        self.buffer = buffer  # bytes queued at most (drop-tail); None: unlimited
        self.now = 0.0
        self.pn = 0
        self.busy_until = 0.0
        self.next_send = 0.0
        self.acks: list[tuple[float, int, SentPacket]] = []
        self.states: list[tuple[float, BbrState]] = [(0.0, cc.state)]
        self.queue_delays: list[tuple[float, float]] = []  # (time, queueing delay)
        self.sent = 0
        self.lost: list[SentPacket] = []
        self.app_limited_until = -1.0

    def _send(self) -> None:
        p = SentPacket(2, self.pn, MDS)
        self.pn += 1
        p.time_sent = self.now
        self.cc.on_packet_sent(MDS, self.now, p)
        self.sent += 1
        start = max(self.now, self.busy_until)
        queued = (start - self.now) * self.rate
        if self.buffer is not None and queued > self.buffer:
            self.lost.append(p)
            return
        self.queue_delays.append((self.now, start - self.now))
        self.busy_until = start + MDS / self.rate
        heapq.heappush(self.acks, (self.busy_until + self.rtt, p.packet_number, p))
        self.next_send = self.now + MDS / self.cc.pacing_rate(self.rtt)

    def run(self, until: float) -> None:
        cc = self.cc
        while self.now < until:
            if self.now < self.app_limited_until:
                if self.acks:
                    self.now = self.acks[0][0]
                else:
                    self.now = self.app_limited_until
                cc.on_app_limited(self.now)
            elif self.now >= self.next_send and cc.can_send(MDS):
                self._send()
                continue
            ack_time = self.acks[0][0] if self.acks else math.inf
            send_time = self.next_send if cc.can_send(MDS) else math.inf
            self.now = max(self.now, min(ack_time, send_time))
            acked = []
            while self.acks and self.acks[0][0] <= self.now:
                acked.append(heapq.heappop(self.acks)[2])
            if self.lost and acked:
                # declared lost once a later packet is acknowledged (RFC 9002 §6.1)
                cc.on_packets_lost(self.lost, self.now)
                self.lost = []
            if acked:
                cc.on_packets_acked(acked, self.now)
            if cc.state is not self.states[-1][1]:
                self.states.append((self.now, cc.state))

    def max_queue_delay(self, since: float) -> float:
        return max(d for t, d in self.queue_delays if t >= since)


RATE = 1_200_000.0  # 1000 packets per second
RTT = 0.05
BDP = RATE * RTT  # 60 kB = 50 packets


def test_selectable_by_name_and_conforms() -> None:
    cc: CongestionController = create_controller("bbr", MDS)
    assert isinstance(cc, Bbr)
    assert cc.state is BbrState.STARTUP
    assert cc.ssthresh is None


def test_startup_drain_probe_bw_and_the_model() -> None:
    cc = Bbr(MDS)
    path = Path(cc, RATE, RTT)
    path.run(3.0)
    states = [s for _, s in path.states]
    assert states[:3] == [BbrState.STARTUP, BbrState.DRAIN, BbrState.PROBE_BW]
    assert cc.filled_pipe
    # the model: bottleneck bandwidth and propagation delay
    assert cc.btl_bw == pytest.approx(RATE, rel=0.1)
    assert cc.rt_prop == pytest.approx(RTT + MDS / RATE, rel=0.05)
    # startup takes a few round trips per doubling of 10 packets up to 50 (log2 5)
    startup_end = path.states[1][0]
    assert startup_end < 15 * RTT
    # in PROBE_BW the window is about cwnd_gain * BDP
    assert cc.congestion_window == pytest.approx(2 * BDP + 3 * MDS, rel=0.15)


def test_probe_bw_cycles_pacing_gain() -> None:
    cc = Bbr(MDS)
    path = Path(cc, RATE, RTT)
    path.run(1.0)
    assert cc.state is BbrState.PROBE_BW
    gains = set()
    end = path.now + 16 * RTT
    while path.now < end:
        path.run(path.now + RTT / 4)
        gains.add(cc.pacing_gain)
    assert gains == set(PACING_GAIN_CYCLE)


def test_keeps_the_queue_small() -> None:
    """In PROBE_BW the bottleneck queue stays below about one BDP: queueing delay
    under 1.5 RTT (a window-based sender with an unlimited buffer would fill it)."""
    cc = Bbr(MDS)
    path = Path(cc, RATE, RTT)
    path.run(5.0)
    assert path.max_queue_delay(since=2.0) < 1.5 * RTT
    # startup overshoots (gain 2.885) and drain empties the queue again
    assert path.max_queue_delay(since=0.0) > path.max_queue_delay(since=2.0)
    # and the link stays busy: at least 90 % of its rate after startup
    delivered_rate = cc.delivered / path.now
    assert delivered_rate > 0.85 * RATE


def test_probe_rtt_after_ten_seconds() -> None:
    cc = Bbr(MDS)
    path = Path(cc, RATE, RTT)
    path.run(14.0)
    entered = [t for t, s in path.states if s is BbrState.PROBE_RTT]
    assert entered, path.states
    assert 10.0 < entered[0] < 11.5
    # the window was at four packets during PROBE_RTT, then back to PROBE_BW
    after = [s for t, s in path.states if t > entered[0]]
    assert after[0] is BbrState.PROBE_BW
    left = next(t for t, s in path.states if t > entered[0] and s is BbrState.PROBE_BW)
    assert 0.2 <= left - entered[0] < 0.2 + 6 * RTT


def test_probe_rtt_window_is_four_packets() -> None:
    cc = Bbr(MDS)
    path = Path(cc, RATE, RTT)
    while cc.state is not BbrState.PROBE_RTT:
        path.run(path.now + 0.01)
    path.run(path.now + 0.1)
    assert cc.state is BbrState.PROBE_RTT
    assert cc.congestion_window == 4 * MDS


def test_loss_recovery_keeps_model() -> None:
    """Drop-tail buffer of a quarter BDP: startup overshoots, losses happen; BBR's
    window shrinks in recovery and comes back, the bandwidth estimate holds."""
    cc = Bbr(MDS)
    path = Path(cc, RATE, RTT, buffer=int(BDP / 4))
    path.run(4.0)
    assert cc.state is BbrState.PROBE_BW
    assert cc.btl_bw == pytest.approx(RATE, rel=0.15)
    assert cc.delivered / path.now > 0.8 * RATE


def test_loss_event_reduces_then_restores_window() -> None:
    cc = Bbr(MDS)
    cc.congestion_window = 40 * MDS
    packets = []
    for pn in range(40):
        p = SentPacket(2, pn, MDS)
        p.time_sent = 1.0
        cc.on_packet_sent(MDS, 1.0, p)
        packets.append(p)
    cc.on_packets_lost(packets[:5], 1.1)
    # packet conservation: in flight (35) + one, minus the 5 lost bytes' worth
    assert cc.congestion_window == max(36 * MDS - 5 * MDS, 4 * MDS)
    cc.on_packets_lost(packets[5:7], 1.1)  # same recovery period: bytes only
    assert cc.congestion_window == 29 * MDS
    cc.on_packets_acked(packets[7:], 1.1)  # all sent before recovery: stays in it
    later = SentPacket(2, 40, MDS)
    later.time_sent = 1.2
    cc.on_packet_sent(MDS, 1.2, later)
    cc.on_packets_acked([later], 1.3)  # sent after recovery began: leaves it
    assert cc.congestion_window >= 40 * MDS


def test_app_limited_samples_do_not_lower_bandwidth() -> None:
    cc = Bbr(MDS)
    path = Path(cc, RATE, RTT)
    path.run(2.0)
    bw = cc.btl_bw
    # an application-limited second: one packet per RTT
    path.app_limited_until = path.now + 1.0
    end = path.app_limited_until
    while path.now < end:
        if not path.acks:
            path._send()
        path.run(min(end, path.now + RTT))
    assert cc.btl_bw >= 0.9 * bw


def test_pacing_rate_before_and_after_samples() -> None:
    cc = Bbr(MDS)
    assert cc.pacing_rate(0.1) == pytest.approx(HIGH_GAIN * 12000 / 0.1)
    path = Path(cc, RATE, RTT)
    path.run(2.0)
    assert cc.pacing_rate(RTT) == pytest.approx(cc.pacing_gain * cc.btl_bw)


def test_bandwidth_filter_is_bounded() -> None:
    cc = Bbr(MDS)
    path = Path(cc, RATE, RTT)
    path.run(5.0)
    assert len(cc._bw_filter) <= 11
