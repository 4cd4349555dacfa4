"""HyStart++ (RFC 9406) in NewReno's and CUBIC's initial slow start: the delay-increase
exit to Conservative Slow Start, its way back, its end in congestion avoidance, and a
bottleneck queue where it avoids most of slow start's loss burst."""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest

from quic.cc_cubic import Cubic
from quic.cc_hystart import (
    CSS_GROWTH_DIVISOR,
    CSS_ROUNDS,
    MAX_RTT_THRESH,
    MIN_RTT_DIVISOR,
    MIN_RTT_THRESH,
    N_RTT_SAMPLE,
    HyStart,
)
from quic.congestion import NewReno
from quic.controllers import create_controller
from quic.recovery import SentPacket
from tests.support.quicpair import CLIENT_ADDR, SERVER_ADDR, make_pair

MDS = 1200


def test_constants_are_the_recommended_ones() -> None:
    # RFC 9406 §4.3
    assert (MIN_RTT_THRESH, MAX_RTT_THRESH) == (0.004, 0.016)
    assert (MIN_RTT_DIVISOR, N_RTT_SAMPLE, CSS_GROWTH_DIVISOR, CSS_ROUNDS) == (8, 8, 4, 5)


class Flow:
    """A bulk sender: every packet is acknowledged alone ``rtt(send time)`` after it
    left, and the window is refilled after each ACK."""

    def __init__(self, cc: NewReno, rtt: Callable[[float], float]) -> None:
        self.cc = cc
        self.rtt = rtt
        self.now = 0.0
        self.pn = 0
        self.flight: deque[SentPacket] = deque()

    def fill(self) -> None:
        while self.cc.can_send(MDS):
            p = SentPacket(2, self.pn, MDS)
            p.time_sent = self.now
            self.pn += 1
            self.cc.on_packet_sent(MDS, self.now, p)
            self.flight.append(p)

    def step(self) -> None:
        self.fill()
        p = self.flight.popleft()
        self.now = max(self.now, p.time_sent + self.rtt(p.time_sent))
        self.cc.on_packets_acked([p], self.now)
        self.fill()

    def until(self, done: Callable[[], bool], limit: int = 100_000) -> None:
        for _ in range(limit):
            if done():
                return
            self.step()
        raise AssertionError("never happened")


def _hystart(cc: NewReno) -> HyStart:
    assert cc.hystart is not None
    return cc.hystart


def test_flat_rtt_stays_in_slow_start() -> None:
    cc = NewReno(MDS, hystart=True)
    flow = Flow(cc, lambda t: 0.05)
    flow.until(lambda: cc.congestion_window > 2_000_000)
    assert cc.ssthresh is None and _hystart(cc).css_entries == 0


def test_rising_rtt_enters_css_then_congestion_avoidance() -> None:
    cc = NewReno(MDS, hystart=True)
    # 50 ms base; from 0.2 s on a queue adds 10 ms (above RttThresh = 50 / 8 = 6.25 ms)
    flow = Flow(cc, lambda t: 0.05 if t < 0.2 else 0.06)
    hs = _hystart(cc)
    flow.until(lambda: hs.in_css)
    assert cc.ssthresh is None and hs.css_baseline_min_rtt == pytest.approx(0.06, abs=1e-3)
    entered = cc.congestion_window
    # in CSS an ACK of one packet adds a quarter of a packet (§4.2)
    before = cc.congestion_window
    flow.step()
    assert cc.congestion_window - before in (0, MDS // CSS_GROWTH_DIVISOR)
    flow.until(lambda: cc.ssthresh is not None)
    # CSS_ROUNDS rounds later: ssthresh = cwnd, congestion avoidance (§4.2)
    assert cc.ssthresh == cc.congestion_window and not hs.in_css
    assert hs.css_rounds == CSS_ROUNDS
    # growth over five CSS rounds is about (1 + 1/4)^5, far from slow start's 2^5
    assert entered * 2 < cc.congestion_window < entered * 4
    flow.until(lambda: cc.congestion_window > cc.ssthresh + MDS)
    assert hs.css_entries == 1


def test_rtt_falling_back_in_css_resumes_slow_start() -> None:
    cc = NewReno(MDS, hystart=True)
    # a 20 ms RTT bump between 0.2 s and 0.3 s (jitter, not a queue)
    flow = Flow(cc, lambda t: 0.07 if 0.2 <= t < 0.3 else 0.05)
    hs = _hystart(cc)
    flow.until(lambda: hs.in_css)
    flow.until(lambda: not hs.in_css)
    assert cc.ssthresh is None  # back to slow start, not congestion avoidance
    assert hs.css_baseline_min_rtt == float("inf")
    flow.until(lambda: cc.congestion_window > 1_000_000)
    assert cc.ssthresh is None


@pytest.mark.parametrize(
    ("base", "rise", "enters"),
    [
        # dyadic values, so that sums of times are exact
        (0.25, 16 / 1024, False),  # 250 / 8 ms clamped to MAX_RTT_THRESH = 16 ms
        (0.25, 17 / 1024, True),
        (1 / 128, 4 / 1024, False),  # 7.8 / 8 ms clamped up to MIN_RTT_THRESH = 4 ms
        (1 / 128, 5 / 1024, True),
        (1 / 16, 7 / 1024, False),  # 62.5 / 8 = 7.8125 ms
        (1 / 16, 8 / 1024, True),  # a rise of exactly RttThresh is enough (>=)
    ],
)
def test_rtt_threshold_is_clamped(base: float, rise: float, enters: bool) -> None:
    cc = NewReno(MDS, hystart=True)
    flow = Flow(cc, lambda t: base if t < 4 * base else base + rise)
    flow.until(lambda: flow.now > 12 * base)
    assert _hystart(cc).css_entries == (1 if enters else 0)


def test_only_the_first_slow_start_uses_it() -> None:
    # RFC 9406 §4.2: after a congestion event (ssthresh known) slow start is plain
    cc = NewReno(MDS, hystart=True)
    flow = Flow(cc, lambda t: 0.05)
    flow.until(lambda: cc.congestion_window > 100_000)
    flow.fill()
    cc.on_packets_lost([flow.flight.popleft()], flow.now)
    cc.on_persistent_congestion(flow.now)
    hs = _hystart(cc)
    samples = hs.rtt_sample_count
    flow.rtt = lambda t: 0.2  # a huge RTT rise: ignored now
    flow.until(lambda: cc.congestion_window >= cc.ssthresh)  # type: ignore[operator]
    assert hs.css_entries == 0 and hs.rtt_sample_count == samples


def test_defaults_follow_the_rfcs() -> None:
    # RFC 9438 §4.10: CUBIC SHOULD use HyStart++; RFC 9002 §7.3.1: NewReno's slow start
    cubic = create_controller("cubic", MDS)
    reno = create_controller("newreno", MDS)
    assert isinstance(cubic, Cubic) and cubic.hystart is not None
    assert isinstance(reno, NewReno) and reno.hystart is None
    assert isinstance(r := create_controller("reno", MDS, hystart=True), NewReno)
    assert r.hystart is not None
    c = create_controller("cubic", MDS, hystart=False)
    assert isinstance(c, Cubic) and c.hystart is None


def test_state_is_constant_and_work_linear_n_vs_4n() -> None:
    """N vs 4N ACKs through slow start, CSS and its false alarms: HyStart's state is
    the same eight slots, and the calls made grow linearly."""

    def run(n: int) -> int:
        cc = NewReno(MDS, hystart=True)
        # the RTT alternates between 50 and 60 ms every 0.3 s: CSS entered and left
        flow = Flow(cc, lambda t: 0.05 if int(t / 0.3) % 2 == 0 else 0.06)
        calls = [0]

        def profile(frame: Any, event: str, arg: object) -> None:
            if event == "call":
                calls[0] += 1

        sys.setprofile(profile)
        try:
            for _ in range(n):
                flow.step()
        finally:
            sys.setprofile(None)
        assert len(HyStart.__slots__) == 9 and not hasattr(_hystart(cc), "__dict__")
        return calls[0]

    small = run(2000)
    big = run(8000)
    assert big / small < 6, big / small


# -- a bottleneck queue ---------------------------------------------------------------


def _upload(cc: str, hystart: bool) -> tuple[int, int]:
    """(datagrams dropped by the bottleneck's full queue, CSS entries) for a 4 MB
    upload over 1 MB/s with a 200 kB buffer and a 40 ms base RTT."""
    pair = make_pair(
        seed=3, client_kwargs={"congestion_control": cc, "hystart": hystart}, delay=0.02
    )
    up = pair.net.link(CLIENT_ADDR, SERVER_ADDR)
    up.bandwidth = 1_000_000
    up.buffer = 200_000
    pair.handshake()
    pair.run(lambda: pair.client.handshake_confirmed, max_time=2)
    sid = pair.client.create_stream()
    pair.client.send_stream_data(sid, bytes(4_000_000), end_stream=True)
    pair.run(lambda: pair.stream_done(sid), max_time=60)
    controller = pair.client.recovery.congestion
    assert isinstance(controller, NewReno)
    hs = controller.hystart
    return up.overflowed, 0 if hs is None else hs.css_entries


@pytest.mark.parametrize("cc", ["newreno", "cubic"])
def test_bottleneck_queue_loses_far_less_with_hystart(cc: str) -> None:
    # Slow start overshoots the 240 kB the path holds by up to a window; HyStart++
    # sees the queue's RTT rise at ~50 kB and grows by a quarter per round from there.
    drops, css = _upload(cc, True)
    drops_off, _ = _upload(cc, False)
    assert css >= 1
    assert drops * 3 < drops_off, (drops, drops_off)
