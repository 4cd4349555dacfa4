"""CUBIC (RFC 9438) against its formulas: K, W_cubic(t), reduction, fast convergence,
the Reno-friendly region and the application-limited pause."""

from __future__ import annotations

import math
from collections import deque

import pytest

from quic.cc_cubic import ALPHA_CUBIC, BETA_CUBIC, C_CUBIC, Cubic, cubic_k, w_cubic
from quic.congestion import CongestionController
from quic.controllers import create_controller
from quic.recovery import SentPacket
from quic.rtt import RttEstimator

MDS = 1200


class Clocked:
    """Drives a controller with a window-limited ACK clock: each ACK acknowledges the
    two oldest packets ``rtt`` after they were sent, and the sender refills the window
    at once (a bulk sender)."""

    def __init__(self, cc: Cubic, rtt: float, start: float = 0.0) -> None:
        self.cc = cc
        self.rtt = rtt
        self.now = start
        self.pn = 0
        self.flight: deque[SentPacket] = deque()

    def fill(self) -> None:
        while self.cc.can_send(MDS):
            p = SentPacket(2, self.pn, MDS)
            p.time_sent = self.now
            self.pn += 1
            self.cc.on_packet_sent(MDS, self.now, p)
            self.flight.append(p)

    def ack(self) -> None:
        self.fill()
        batch = [self.flight.popleft()]
        if self.flight and self.flight[0].time_sent == batch[0].time_sent:
            batch.append(self.flight.popleft())
        self.now = max(self.now, batch[0].time_sent + self.rtt)
        self.cc.on_packets_acked(batch, self.now)
        self.fill()

    def run(self, duration: float) -> None:
        end = self.now + duration
        while self.now < end:
            self.ack()

    def drain(self) -> None:
        """Acknowledge everything in flight without sending more."""
        while self.flight:
            p = self.flight.popleft()
            self.now = max(self.now, p.time_sent + self.rtt)
            self.cc.on_packets_acked([p], self.now)

    def round(self) -> None:
        self.run(self.rtt)

    def lose_one(self) -> None:
        """The oldest packet in flight is declared lost: a congestion event."""
        self.fill()
        p = self.flight.popleft()
        self.now = max(self.now, p.time_sent + self.rtt)
        self.cc.on_packets_lost([p], self.now)
        self.fill()


def test_constants_match_rfc() -> None:
    assert C_CUBIC == 0.4  # RFC 9438 §5.1
    assert BETA_CUBIC == 0.7  # §4.6
    assert pytest.approx(3 * 0.3 / 1.7) == ALPHA_CUBIC  # §4.3


@pytest.mark.parametrize(("w_max", "epoch"), [(100.0, 70.0), (10.0, 7.0), (1000.0, 700.0)])
def test_k_and_w_cubic_at_known_points(w_max: float, epoch: float) -> None:
    k = cubic_k(w_max, epoch)
    assert k == pytest.approx(((w_max - epoch) / 0.4) ** (1 / 3))  # RFC 9438 Figure 2
    assert w_cubic(0.0, k, w_max) == pytest.approx(epoch)  # starts at cwnd_epoch
    assert w_cubic(k, k, w_max) == pytest.approx(w_max)  # plateau at t = K
    assert w_cubic(2 * k, k, w_max) == pytest.approx(2 * w_max - epoch)  # symmetric
    assert cubic_k(w_max, w_max + 5) == 0.0  # cwnd above W_max: K = 0


def test_k_for_100_segments() -> None:
    # W_max = 100, beta = 0.7: K = cbrt(30 / 0.4) = cbrt(75) = 4.2172 s
    assert cubic_k(100, 70) == pytest.approx(4.2172, abs=1e-4)


def test_selectable_by_name_and_conforms() -> None:
    cc: CongestionController = create_controller("cubic", MDS, RttEstimator())
    assert isinstance(cc, Cubic)
    with pytest.raises(ValueError):
        create_controller("vegas", MDS)


def test_loss_reduces_by_beta_and_sets_w_max() -> None:
    cc = Cubic(MDS, RttEstimator(0.1))
    cc.congestion_window = 100 * MDS
    sim = Clocked(cc, 0.1)
    sim.lose_one()
    assert cc.ssthresh == 70 * MDS
    assert cc.congestion_window == 70 * MDS  # RFC 9438 §4.6: cwnd * 0.7, not 0.5
    assert cc.w_max == 100 * MDS


def test_fast_convergence_lowers_w_max() -> None:
    cc = Cubic(MDS, RttEstimator(0.1))
    cc.congestion_window = 100 * MDS
    sim = Clocked(cc, 0.1)
    sim.lose_one()  # W_max = 100
    sim.run(3 * sim.rtt)  # past the recovery period
    cwnd = cc.congestion_window
    assert cwnd < 100 * MDS
    sim.lose_one()  # before regaining W_max: W_max = cwnd * (1 + 0.7) / 2 (§4.7)
    assert cc.w_max == pytest.approx(cwnd * 1.7 / 2)
    assert cc.congestion_window == int(cwnd * 0.7)


def test_without_fast_convergence_w_max_is_cwnd() -> None:
    cc = Cubic(MDS, RttEstimator(0.1), fast_convergence=False)
    cc.congestion_window = 100 * MDS
    sim = Clocked(cc, 0.1)
    sim.lose_one()
    sim.run(3 * sim.rtt)
    cwnd = cc.congestion_window
    sim.lose_one()
    assert cc.w_max == cwnd


def test_window_follows_the_cubic_function() -> None:
    rtt = 0.1
    cc = Cubic(MDS, RttEstimator(rtt))
    cc.congestion_window = 100 * MDS
    sim = Clocked(cc, rtt)
    sim.lose_one()  # W_max = 100, cwnd = 70
    k = cubic_k(100, 70)
    while cc.epoch_start is None:  # the epoch starts at the first growth after recovery
        sim.ack()
    epoch = cc.epoch_start
    assert cc.k == pytest.approx(k)
    samples = []
    while sim.now - epoch < 2 * k:
        sim.round()
        t = sim.now - epoch
        samples.append((t, cc.congestion_window / MDS, cc.w_est / MDS))
    for t, cwnd, w_est in samples:
        # The window chases W_cubic(t + RTT) (RFC 9438 §4.4): one ACKed window moves
        # it most of the way, so it stays between W(t - 2 RTT) and W(t + RTT), unless
        # the Reno-friendly estimate is above (§4.3; late here, where alpha is 1).
        low = w_cubic(t - 2 * rtt, k, 100) - 1
        assert low <= cwnd <= max(w_cubic(t + rtt, k, 100), w_est) + 1, (t, cwnd)
        if w_est < w_cubic(t, k, 100) - 1:
            assert cwnd <= w_cubic(t + rtt, k, 100) + 1, (t, cwnd)
    # concave, then the plateau at W_max around K, then convex growth
    near_k = [c for t, c, _ in samples if abs(t - k) < 0.3]
    assert near_k and all(abs(c - 100) < 2 for c in near_k)
    assert samples[-1][1] > 125


def test_reno_friendly_region_on_short_rtt() -> None:
    # With a 1 ms RTT a Reno flow grows faster than the cubic curve: the window
    # follows W_est = cwnd_epoch + alpha * (rounds), RFC 9438 §4.3.
    rtt = 0.001
    cc = Cubic(MDS, RttEstimator(rtt))
    cc.congestion_window = 100 * MDS
    sim = Clocked(cc, rtt)
    sim.lose_one()
    sim.round()  # epoch starts
    epoch = sim.now
    start = cc.congestion_window / MDS
    rounds = 40
    for _ in range(rounds):
        sim.round()
    cwnd = cc.congestion_window / MDS
    t = sim.now - epoch
    k = cubic_k(100, 70)
    assert cwnd > w_cubic(t, k, 100) + 5  # well above the cubic curve
    # about alpha_cubic segments per round (each round acknowledges one window)
    assert cwnd - start == pytest.approx(ALPHA_CUBIC * rounds, rel=0.25)


def test_alpha_becomes_one_above_prior_window() -> None:
    rtt = 0.001
    cc = Cubic(MDS, RttEstimator(rtt))
    cc.congestion_window = 20 * MDS
    sim = Clocked(cc, rtt)
    sim.lose_one()  # cwnd_prior = 20, cwnd = 14
    sim.round()
    while cc.congestion_window < 21 * MDS:
        sim.round()
    before = cc.congestion_window / MDS
    for _ in range(10):
        sim.round()
    # above the prior window W_est grows by one segment per round (§4.3)
    assert cc.congestion_window / MDS - before == pytest.approx(10, abs=2)


def test_application_limited_time_does_not_count() -> None:
    rtt = 0.1
    cc = Cubic(MDS, RttEstimator(rtt))
    cc.congestion_window = 100 * MDS
    sim = Clocked(cc, rtt)
    sim.lose_one()
    sim.run(3 * rtt)
    sim.drain()
    before = cc.congestion_window
    # 30 s with a single packet in flight at a time: not window-limited, no growth
    for _ in range(300):
        p = SentPacket(2, sim.pn, MDS)
        p.time_sent = sim.now
        sim.pn += 1
        cc.on_packet_sent(MDS, sim.now, p)
        sim.now += rtt
        cc.on_packets_acked([p], sim.now)
    assert cc.congestion_window == before
    sim.round()
    # had the 30 s counted, t would be far past K and the window at 1.5x per round
    assert cc.congestion_window < before + 5 * MDS


def test_persistent_congestion_restarts() -> None:
    cc = Cubic(MDS, RttEstimator(0.1))
    cc.congestion_window = 100 * MDS
    sim = Clocked(cc, 0.1)
    sim.lose_one()
    cc.on_persistent_congestion(sim.now)
    assert cc.congestion_window == 2 * MDS
    assert cc.in_slow_start  # ssthresh stays at 70 segments
    for _ in range(6):
        sim.round()
    assert cc.congestion_window >= 64 * MDS  # slow start back up to ssthresh


def test_window_grows_like_a_cubic_not_linearly() -> None:
    """Past the plateau the growth accelerates (convex region): the fifth second after
    K adds far more than the first, 0.4 * (5^3 - 4^3) = 24.4 vs 0.4 segments."""
    rtt = 0.2
    cc = Cubic(MDS, RttEstimator(rtt))
    cc.congestion_window = 1000 * MDS
    sim = Clocked(cc, rtt)
    sim.lose_one()
    while cc.epoch_start is None:
        sim.ack()
    epoch = cc.epoch_start
    k = cubic_k(1000, 700)
    trace: dict[int, float] = {}
    while sim.now - epoch < k + 5.2:
        sim.round()
        trace.setdefault(math.floor(sim.now - epoch - k), cc.congestion_window / MDS)
    first_second = trace[1] - trace[0]
    fifth_second = trace[5] - trace[4]
    assert first_second < 3
    assert fifth_second == pytest.approx(0.4 * (5**3 - 4**3), rel=0.3)
    assert fifth_second > 8 * first_second
