"""BBR's loss and ECN bounds (BBR v3 "lower bounds" on top of quic.cc_bbr's v1): a
congested round trip lowers bw_lo / inflight_lo by at most BBRBeta, a bandwidth probe
lifts them, STARTUP ends on high loss; on a shallow buffer and behind a CE-marking AQM
the bounds cut the drops and the queue."""

from __future__ import annotations

import math
from typing import Any

import pytest

from quic.cc_bbr import Bbr, BbrState
from quic.controllers import create_controller
from quic.recovery import SentPacket
from tests.quic.test_cc_bbr import BDP, MDS, RATE, RTT, Path
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, make_pair


def _cruising(bounds: bool = True) -> tuple[Bbr, Path]:
    cc = Bbr(MDS, bounds=bounds)
    path = Path(cc, RATE, RTT)
    path.run(2.0)
    while cc.pacing_gain != 1.0:  # a cruise phase: not probing for bandwidth
        path.run(path.now + RTT / 8)
    assert cc.state is BbrState.PROBE_BW
    return cc, path


def test_defaults() -> None:
    cc = create_controller("bbr", MDS)
    assert isinstance(cc, Bbr) and cc.bounds
    assert cc.bw_lo == math.inf and cc.inflight_lo == math.inf


def test_congested_round_lowers_the_bounds_by_at_most_beta() -> None:
    cc, path = _cruising()
    window = cc.congestion_window
    btl_bw = cc.btl_bw
    cc.on_ecn_ce(path.now, path.now)  # a CE mark in this round trip
    rounds = cc.round_count
    while cc.round_count == rounds:
        path.run(path.now + RTT / 8)
    assert cc.bound_cuts == 1
    # max(latest, 0.7 x the initial bound): never below BBRBeta of the model
    assert 0.7 * btl_bw - 1 <= cc.bw_lo <= btl_bw
    assert 0.7 * window - 1 <= cc.inflight_lo <= window
    assert cc.bw <= cc.bw_lo and cc.congestion_window <= max(cc.inflight_lo, 4 * MDS)


def test_bandwidth_probe_lifts_the_bounds() -> None:
    cc, path = _cruising()
    cc.on_ecn_ce(path.now, path.now)
    while cc.bound_cuts == 0:
        path.run(path.now + RTT / 8)
    assert cc.bw_lo < math.inf
    while cc.pacing_gain <= 1.0:  # the next 1.25 phase of the gain cycle
        path.run(path.now + RTT / 8)
    assert cc.bw_lo == math.inf and cc.inflight_lo == math.inf


def test_probing_and_uncongested_rounds_keep_the_bounds() -> None:
    cc, path = _cruising()
    path.run(path.now + 20 * RTT)  # no loss, no CE
    assert cc.bound_cuts == 0 and cc.bw_lo == math.inf
    while cc.pacing_gain <= 1.0:
        path.run(path.now + RTT / 8)
    cc.on_ecn_ce(path.now, path.now)  # while probing (1.25): expected, no cut
    rounds = cc.round_count
    while cc.round_count == rounds:
        path.run(path.now + RTT / 8)
    assert cc.bound_cuts == 0


def test_plain_v1_ignores_loss_and_ce() -> None:
    cc, path = _cruising(bounds=False)
    cc.on_ecn_ce(path.now, path.now)
    path.run(path.now + 10 * RTT)
    assert cc.bound_cuts == 0 and cc.bw_lo == math.inf


def test_high_loss_ends_startup() -> None:
    cc = Bbr(MDS)
    flight = []
    for pn in range(10):
        p = SentPacket(2, pn, MDS)
        p.time_sent = 0.0
        cc.on_packet_sent(MDS, 0.0, p)
        flight.append(p)
    cc.on_packets_lost(flight[:2], 0.05)  # 20 % of the round lost (BBRLossThresh 2 %)
    cc.on_packets_acked(flight[2:], 0.05)  # the round ends
    assert cc.filled_pipe and cc.state is not BbrState.STARTUP
    reference = Bbr(MDS, bounds=False)
    for pn in range(10):
        p = SentPacket(2, pn, MDS)
        p.time_sent = 0.0
        reference.on_packet_sent(MDS, 0.0, p)
        flight[pn] = p
    reference.on_packets_lost(flight[:2], 0.05)
    reference.on_packets_acked(flight[2:], 0.05)
    assert reference.state is BbrState.STARTUP  # v1 waits for the bandwidth plateau


def test_shallow_buffer_path_model_holds() -> None:
    # a drop-tail buffer of a quarter BDP: the bounds bite, the model stays right
    cc = Bbr(MDS)
    path = Path(cc, RATE, RTT, buffer=int(BDP / 4))
    path.run(4.0)
    assert cc.state is BbrState.PROBE_BW
    assert cc.btl_bw == pytest.approx(RATE, rel=0.15)
    assert cc.delivered / path.now > 0.75 * RATE


# -- connections ----------------------------------------------------------------------


def _upload(bounds: bool, aqm: bool) -> tuple[int, float, int]:
    """(drops at the bottleneck, its longest queueing delay, bound cuts) for a 4 MB BBR
    upload over 1 MB/s and a 40 ms base RTT; ``aqm``: an unlimited buffer whose router
    marks CE above 5 ms of queue, else a 15 kB drop-tail buffer."""
    pair = make_pair(seed=3, ecn=aqm, client_kwargs={"congestion_control": "bbr"}, delay=0.02)
    up = pair.net.link(CLIENT_ADDR, SERVER_ADDR)
    up.bandwidth = 1_000_000
    up.buffer = None if aqm else 15_000
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    cc = pair.client.recovery.congestion
    assert isinstance(cc, Bbr)
    cc.bounds = bounds
    if aqm:
        net = pair.net

        def mark(ecn: int, rng: Any) -> int:
            if ecn in (1, 2) and up._busy_until - net.now > 0.005:
                return 3
            return ecn

        up.mark = mark  # type: ignore[method-assign]
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, bytes(4_000_000), end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=60)
    return up.overflowed, up.max_queue_delay, cc.bound_cuts


def test_shallow_buffer_drops_less_with_the_loss_bound() -> None:
    drops, _, cuts = _upload(True, aqm=False)
    drops_v1, _, _ = _upload(False, aqm=False)
    assert cuts > 0
    # a third fewer drops at least (82 vs 152 with full-size STREAM packets; 93 vs
    # 195 when they were 11 bytes short of the datagram size)
    assert drops * 3 < drops_v1 * 2, (drops, drops_v1)


def test_ce_marking_aqm_keeps_the_queue_shorter() -> None:
    _, delay, cuts = _upload(True, aqm=True)
    _, delay_v1, _ = _upload(False, aqm=True)
    assert cuts > 0
    assert delay < 0.6 * delay_v1, (delay, delay_v1)
