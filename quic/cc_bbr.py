"""A BBR-style model-based congestion controller (BBR version 1).

Theory of operation
-------------------
:class:`Bbr` follows BBR v1 as described in draft-cardwell-iccrg-bbr-congestion-control
(the 2017 "-00" text): it builds a model of the path — the bottleneck bandwidth
``btl_bw`` and the round-trip propagation time ``rt_prop`` — and sends at a pacing rate
of ``pacing_gain * btl_bw`` with a window of ``cwnd_gain * BDP`` (BDP =
``btl_bw * rt_prop``) plus a quantum of three datagrams. On top of v1, the loss and
ECN bounds of BBR v3's short-term model (draft-ietf-ccwg-bbr, "lower bounds",
``bw_lo`` / ``inflight_lo``; see "Loss and ECN bounds" below) are applied unless the
controller is built with ``bounds=False`` (plain v1).

Delivery-rate samples (draft-cheng-iccrg-delivery-rate-estimation): every in-flight
packet is stamped at send time (:meth:`Bbr.on_packet_sent` gets the
:class:`~quic.recovery.SentPacket`) with the connection's ``delivered`` byte count, the
time of the last delivery and the send time of the first packet of the current flight,
and whether the sender was application-limited. When packets are acknowledged the
sample rate is ``(delivered - P.delivered) / max(send_elapsed, ack_elapsed)`` for the
most recently sent of them. Samples taken while application-limited only raise the
estimate. ``btl_bw`` is the maximum over the last ten round trips (one entry per round
in a monotone deque, so at most eleven entries); ``rt_prop`` the minimum RTT seen in
the last ten seconds. A round trip ends when a packet sent after the previous round
ended is acknowledged (``delivered`` crossed ``next_round_delivered``).

States (:class:`BbrState`):

* STARTUP: gains 2/ln 2 ≈ 2.885 (doubling per round); leaves once three rounds in a
  row did not raise ``btl_bw`` by 25 % ("the pipe is full");
* DRAIN: pacing gain 1/2.885 until inflight is down to one BDP;
* PROBE_BW: the pacing gain cycles through 1.25, 0.75, 1 x 6, one phase per ``rt_prop``
  (the 1.25 phase lasts until inflight reached 1.25 BDP or a loss, the 0.75 phase ends
  early once inflight is down to one BDP); the cycle starts at a cruise phase (index
  2) where the draft starts at a random one, to stay deterministic;
* PROBE_RTT: when ``rt_prop`` was not refreshed for ten seconds, the window drops to
  four datagrams for 200 ms and one round trip, then the previous window comes back.

Loss (RFC 9002 §7.3.2 recovery periods): entering recovery saves the window and applies
packet conservation for one round (window = inflight + newly acknowledged); each loss
removes the lost bytes from the window, never below four datagrams; leaving recovery
(a packet sent after it began is acknowledged) restores the saved window. Persistent
congestion (§7.6.2) drops the window to the RFC 9002 minimum. ECN-CE is ignored (v1).
The application-limited mark is set by the send path through
:meth:`Bbr.on_app_limited` (RFC 9002 §7.8). Nothing here reads a clock.

Loss and ECN bounds (BBR v3, draft-ietf-ccwg-bbr "BBRAdaptLowerBoundsFromCongestion"):
per round trip the largest delivery rate and the largest delivered-in-a-sample volume
are kept (``bw_latest``, ``inflight_latest``). When a round trip ends in which a packet
was lost or the peer reported ECN-CE (classic ECN: a CE mark stands for a drop, RFC
3168 §5), and the sender was not probing for bandwidth (STARTUP or the 1.25 phase),
``bw_lo = max(bw_latest, 0.7 * bw_lo)`` and ``inflight_lo = max(inflight_latest,
0.7 * inflight_lo)`` (both start from ``btl_bw`` and the window: BBRBeta = 0.7). The
model's bandwidth is ``min(btl_bw, bw_lo)`` for pacing and the BDP, and the window is
capped at ``inflight_lo``. Both bounds are lifted (infinite again) when a bandwidth
probe starts, so the flow tries the higher rate again once per gain cycle. STARTUP ends
early (the pipe counts as full) after a round trip losing more than 2 % of what it
delivered (BBRLossThresh) or seeing CE — v3's "high loss" startup exit, without its
count of discontiguous loss events. Not done from v3: ``inflight_hi``/``bw_hi`` (the
long-term bounds) and its ProbeBW state machine; the gain cycle stays v1's.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING

from quic.congestion import initial_window, minimum_window

if TYPE_CHECKING:
    from quic.recovery import SentPacket

__all__ = ["HIGH_GAIN", "PACING_GAIN_CYCLE", "Bbr", "BbrState"]

#: 2 / ln 2: the smallest gain that doubles the sending rate each round trip.
HIGH_GAIN = 2.0 / math.log(2.0)
PACING_GAIN_CYCLE = (1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
_CYCLE_START = 2  # a cruise phase (see the module documentation)
_CWND_GAIN = 2.0
_BTL_BW_ROUNDS = 10  # bandwidth filter window, round trips
_RT_PROP_WINDOW = 10.0  # min RTT filter window, seconds
_PROBE_RTT_DURATION = 0.2
_FULL_BW_THRESHOLD = 1.25
_FULL_BW_COUNT = 3
_MIN_PIPE_PACKETS = 4
_QUANTUM_PACKETS = 3  # allowance for delayed/aggregated ACKs and offload bursts
_NEVER = float("-inf")
_MIN_RATE_RTT = 0.001  # kGranularity: no rate from a 0 s RTT
_BETA = 0.7  # BBRBeta: multiplicative cut of the lower bounds per congested round
_LOSS_THRESH = 0.02  # BBRLossThresh: loss rate in a round that ends STARTUP


class BbrState(Enum):
    STARTUP = "startup"
    DRAIN = "drain"
    PROBE_BW = "probe_bw"
    PROBE_RTT = "probe_rtt"


class Bbr:
    """BBR v1: bottleneck bandwidth and round-trip propagation time."""

    app_limited_hook = True  # on_app_limited marks the delivery-rate samples

    def __init__(self, max_datagram_size: int = 1200, *, bounds: bool = True) -> None:
        if max_datagram_size < 1200:
            raise ValueError("max_datagram_size must be at least 1200 (RFC 9000 §14)")
        self.max_datagram_size = max_datagram_size
        #: Apply v3's loss/ECN lower bounds (see the module documentation).
        self.bounds = bounds
        self.bw_lo = math.inf  # bytes/s
        self.inflight_lo = math.inf  # bytes
        self._bw_latest = 0.0
        self._inflight_latest = 0
        self._congested_in_round = False  # a loss or a CE mark in this round trip
        self._ce_in_round = False
        self._lost_in_round = 0  # bytes
        self._round_delivered_start = 0
        self.bound_cuts = 0  # congested rounds that lowered the bounds (diagnostics)
        self.congestion_window = initial_window(max_datagram_size)
        self.bytes_in_flight = 0
        self.ssthresh: int | None = None  # BBR keeps no slow start threshold
        self.state = BbrState.STARTUP
        self.pacing_gain = HIGH_GAIN
        self.cwnd_gain = HIGH_GAIN
        # delivery-rate estimation (connection state)
        self.delivered = 0
        self._delivered_time = 0.0
        self._first_sent_time = 0.0
        self._app_limited_until = 0  # delivered mark; 0: not application-limited
        # the model
        self._bw_filter: deque[tuple[int, float]] = deque()  # (round, max rate) monotone
        self.rt_prop = math.inf
        self._rt_prop_stamp = 0.0
        self._rt_prop_expired = False
        self.round_count = 0
        self._next_round_delivered = 0
        self._round_start = False
        # startup / probe_bw
        self.filled_pipe = False
        self._full_bw = 0.0
        self._full_bw_count = 0
        self.cycle_index = _CYCLE_START
        self._cycle_stamp = 0.0
        # probe_rtt
        self._probe_rtt_done = 0.0  # 0: not yet at the low window
        self._probe_rtt_round_done = False
        self._prior_cwnd = 0
        # recovery
        self._recovery_start = _NEVER
        self._conservation_until = -1  # round count until which packet conservation
        self._pacing_rate = 0.0

    # -- queries ----------------------------------------------------------------------

    @property
    def btl_bw(self) -> float:
        """Bottleneck bandwidth estimate, bytes per second (0 before any sample)."""
        return self._bw_filter[0][1] if self._bw_filter else 0.0

    @property
    def bw(self) -> float:
        """The model's bandwidth: ``btl_bw`` under the loss/ECN bound ``bw_lo``."""
        bw = self._bw_filter[0][1] if self._bw_filter else 0.0
        return bw if bw < self.bw_lo else self.bw_lo

    @property
    def in_slow_start(self) -> bool:
        return self.state is BbrState.STARTUP

    @property
    def minimum_window(self) -> int:
        return minimum_window(self.max_datagram_size)

    def bdp(self, gain: float = 1.0) -> int:
        """``gain`` x the estimated bandwidth-delay product plus the quantum, bytes."""
        bw = self.bw
        if not bw or self.rt_prop == math.inf:
            return initial_window(self.max_datagram_size)
        quantum = _QUANTUM_PACKETS * self.max_datagram_size
        return int(gain * bw * self.rt_prop) + quantum

    def can_send(self, size: int) -> bool:
        return self.bytes_in_flight + size <= self.congestion_window

    def available(self) -> int:
        room = self.congestion_window - self.bytes_in_flight
        return room if room > 0 else 0

    def pacing_rate(self, smoothed_rtt: float) -> float:
        if not self._pacing_rate:  # no bandwidth sample yet: high gain * cwnd / RTT
            rtt = smoothed_rtt if smoothed_rtt > _MIN_RATE_RTT else _MIN_RATE_RTT
            return HIGH_GAIN * self.congestion_window / rtt
        return self._pacing_rate

    # -- events -----------------------------------------------------------------------

    def on_packet_sent(self, sent_bytes: int, now: float, packet: SentPacket | None = None) -> None:
        if not self.bytes_in_flight:  # a new flight: the send interval starts here
            self._first_sent_time = self._delivered_time = now
        if packet is not None:
            packet.delivered = self.delivered
            packet.delivered_time = self._delivered_time
            packet.first_sent_time = self._first_sent_time
            packet.is_app_limited = self._app_limited_until != 0
        self.bytes_in_flight += sent_bytes

    def on_packets_sent(self, packets: Sequence[SentPacket], sent_bytes: int, now: float) -> None:
        if not self.bytes_in_flight:  # a new flight: the send interval starts here
            self._first_sent_time = self._delivered_time = now
        delivered, delivered_time = self.delivered, self._delivered_time
        first_sent_time, app_limited = self._first_sent_time, self._app_limited_until != 0
        for packet in packets:  # stamped as on_packet_sent would, one by one
            packet.delivered = delivered
            packet.delivered_time = delivered_time
            packet.first_sent_time = first_sent_time
            packet.is_app_limited = app_limited
        self.bytes_in_flight += sent_bytes

    def on_app_limited(self, now: float) -> None:
        """RFC 9002 §7.8: the window had room but nothing was sent (delivery-rate
        estimation: samples until this flight is delivered are application-limited)."""
        mark = self.delivered + self.bytes_in_flight
        self._app_limited_until = mark if mark > 0 else 1

    def on_packets_acked(self, packets: Sequence[SentPacket], now: float) -> None:
        prior_in_flight = self.bytes_in_flight
        acked = 0
        newest: SentPacket | None = None  # stamped packet with the largest delivered
        leaves_recovery = False
        for packet in packets:
            if not packet.in_flight:
                continue
            size = packet.size
            self.bytes_in_flight -= size
            acked += size
            self.delivered += size
            self._delivered_time = now
            if packet.delivered >= 0 and (newest is None or packet.delivered > newest.delivered):
                newest = packet
            if packet.time_sent > self._recovery_start:
                leaves_recovery = True
        if self.bytes_in_flight < 0:
            self.bytes_in_flight = 0
        if not acked:
            return
        if self._app_limited_until and self.delivered > self._app_limited_until:
            self._app_limited_until = 0
        if leaves_recovery and self._recovery_start != _NEVER:
            self._recovery_start = _NEVER  # RFC 9002 §7.3.2: recovery ends
            if self.congestion_window < self._prior_cwnd:
                self.congestion_window = self._prior_cwnd
        self._update_model(newest, now, prior_in_flight)
        self._set_cwnd(acked)

    def on_packets_lost(self, packets: Sequence[SentPacket], now: float) -> None:
        lost = 0
        newest_lost = _NEVER
        for packet in packets:
            if packet.in_flight:
                lost += packet.size
                if packet.time_sent > newest_lost:
                    newest_lost = packet.time_sent
        if not lost:
            return
        self._congested_in_round = True  # v3: a congestion signal of this round
        self._lost_in_round += lost
        self.bytes_in_flight -= lost
        if self.bytes_in_flight < 0:
            self.bytes_in_flight = 0
        floor = _MIN_PIPE_PACKETS * self.max_datagram_size
        if newest_lost > self._recovery_start:  # a new congestion event (§7.3.2)
            self._recovery_start = now
            self._prior_cwnd = self._saved_cwnd()
            self._conservation_until = self.round_count + 1
            self.congestion_window = max(self.bytes_in_flight + self.max_datagram_size, floor)
        self.congestion_window = max(self.congestion_window - lost, floor)

    def on_ecn_ce(self, sent_time: float, now: float) -> None:
        """A CE mark is a congestion signal for the round's lower bounds (v3); plain
        v1 (``bounds=False``) ignores it."""
        self._congested_in_round = True
        self._ce_in_round = True

    def on_persistent_congestion(self, now: float) -> None:
        # RFC 9002 §7.6.2: collapse to the minimum window; the model stays.
        self._prior_cwnd = self._saved_cwnd()
        self.congestion_window = self.minimum_window

    def on_spurious_loss(self, packets: Sequence[SentPacket], now: float) -> None:
        """Nothing to undo: BBR's model does not take losses as a rate signal, and the
        loss-recovery window is restored when recovery ends."""

    def on_packet_discarded(self, packet: SentPacket) -> None:
        if packet.in_flight:  # RFC 9002 B.9
            self.bytes_in_flight -= packet.size
            if self.bytes_in_flight < 0:
                self.bytes_in_flight = 0

    def set_max_datagram_size(self, max_datagram_size: int) -> None:
        if max_datagram_size < 1200:
            raise ValueError("max_datagram_size must be at least 1200 (RFC 9000 §14)")
        if not self.delivered and self.congestion_window == initial_window(self.max_datagram_size):
            self.congestion_window = initial_window(max_datagram_size)
        self.max_datagram_size = max_datagram_size

    # -- the model --------------------------------------------------------------------

    def _update_model(self, newest: SentPacket | None, now: float, prior_in_flight: int) -> None:
        rate = 0.0
        rtt = -1.0
        app_limited = True
        if newest is not None:
            send_elapsed = newest.time_sent - newest.first_sent_time
            ack_elapsed = self._delivered_time - newest.delivered_time
            interval = send_elapsed if send_elapsed > ack_elapsed else ack_elapsed
            rtt = now - newest.time_sent
            app_limited = newest.is_app_limited
            self._first_sent_time = newest.time_sent  # the next send interval starts here
            if not self._pacing_rate:  # first sample: high gain * initial window / RTT
                self._pacing_rate = (
                    HIGH_GAIN
                    * self.congestion_window
                    / (rtt if rtt > _MIN_RATE_RTT else _MIN_RATE_RTT)
                )
            # samples over an interval shorter than the min RTT overestimate (draft §3.3)
            if interval > 0 and (self.rt_prop == math.inf or interval >= self.rt_prop):
                rate = (self.delivered - newest.delivered) / interval
            sample_delivered = self.delivered - newest.delivered
            if rate > self._bw_latest:
                self._bw_latest = rate
            if sample_delivered > self._inflight_latest:
                self._inflight_latest = sample_delivered
            # round trips (BBR "round counting")
            if newest.delivered >= self._next_round_delivered:
                self._next_round_delivered = self.delivered
                self.round_count += 1
                self._round_start = True
                self._end_congestion_round()
                self._bw_latest = rate  # v3 BBRAdvanceLatestDeliverySignals
                self._inflight_latest = sample_delivered
            else:
                self._round_start = False
        else:
            self._round_start = False
        if rate and (not app_limited or rate >= self.btl_bw):
            self._update_bw(rate)
        self._check_cycle_phase(now, prior_in_flight, newest is None)
        self._check_full_pipe(app_limited)
        self._check_drain(now)
        self._update_rt_prop(rtt, now)
        self._check_probe_rtt(now)
        self._set_pacing_rate()

    def _end_congestion_round(self) -> None:
        """v3 BBRAdaptLowerBoundsFromCongestion at the end of a round trip."""
        congested = self._congested_in_round
        delivered = self.delivered - self._round_delivered_start
        lost = self._lost_in_round
        self._congested_in_round = self._ce_in_round = False
        self._lost_in_round = 0
        self._round_delivered_start = self.delivered
        if not congested or not self.bounds:
            return
        if self.state is BbrState.STARTUP:
            # v3 high-loss (or ECN) startup exit: the pipe is full
            if not self.filled_pipe and (self._ce_seen(lost) or lost > _LOSS_THRESH * delivered):
                self.filled_pipe = True
            return
        if self.state is BbrState.PROBE_BW and self.pacing_gain > 1.0:
            return  # probing for bandwidth: losses are expected (v3 BBRIsProbingBW)
        if self.bw_lo == math.inf:  # v3 BBRInitLowerBounds
            self.bw_lo = self.btl_bw
        if self.inflight_lo == math.inf:
            self.inflight_lo = self.congestion_window
        latest_bw = self._bw_latest
        cut_bw = _BETA * self.bw_lo
        self.bw_lo = latest_bw if latest_bw > cut_bw else cut_bw
        latest_inflight = float(self._inflight_latest)
        cut_inflight = _BETA * self.inflight_lo
        self.inflight_lo = latest_inflight if latest_inflight > cut_inflight else cut_inflight
        self.bound_cuts += 1

    def _ce_seen(self, lost: int) -> bool:
        """The congested round was marked with CE rather than (only) losing packets."""
        return lost == 0 or self._ce_in_round

    def _reset_lower_bounds(self) -> None:
        """v3 BBRResetLowerBounds: a bandwidth probe starts from the long-term model."""
        self.bw_lo = math.inf
        self.inflight_lo = math.inf

    def _update_bw(self, rate: float) -> None:
        """Windowed max over ``_BTL_BW_ROUNDS`` round trips, one entry per round."""
        window = self._bw_filter
        round_count = self.round_count
        while window and window[-1][1] <= rate:
            window.pop()
        if not window or window[-1][0] != round_count:
            window.append((round_count, rate))
        while window[0][0] <= round_count - _BTL_BW_ROUNDS:
            window.popleft()

    def _expire_bw(self) -> None:
        window = self._bw_filter
        while len(window) > 1 and window[0][0] <= self.round_count - _BTL_BW_ROUNDS:
            window.popleft()

    def _check_full_pipe(self, app_limited: bool) -> None:
        if self.filled_pipe or not self._round_start or app_limited:
            return
        bw = self.btl_bw
        if bw >= self._full_bw * _FULL_BW_THRESHOLD:
            self._full_bw = bw
            self._full_bw_count = 0
            return
        self._full_bw_count += 1
        if self._full_bw_count >= _FULL_BW_COUNT:
            self.filled_pipe = True

    def _check_drain(self, now: float) -> None:
        if self.state is BbrState.STARTUP and self.filled_pipe:
            self.state = BbrState.DRAIN
            self.pacing_gain = 1.0 / HIGH_GAIN
            self.cwnd_gain = HIGH_GAIN
        if self.state is BbrState.DRAIN and self.bytes_in_flight <= self.bdp():
            self._enter_probe_bw(now)

    def _enter_probe_bw(self, now: float) -> None:
        self.state = BbrState.PROBE_BW
        self.cwnd_gain = _CWND_GAIN
        self.cycle_index = _CYCLE_START
        self.pacing_gain = PACING_GAIN_CYCLE[_CYCLE_START]
        self._cycle_stamp = now

    def _check_cycle_phase(self, now: float, prior_in_flight: int, no_sample: bool) -> None:
        if self.state is not BbrState.PROBE_BW:
            return
        self._expire_bw()
        full_length = now - self._cycle_stamp > self.rt_prop
        gain = self.pacing_gain
        if gain > 1.0:
            advance = full_length and prior_in_flight >= self.bdp(gain)
        elif gain < 1.0:
            advance = full_length or prior_in_flight <= self.bdp()
        else:
            advance = full_length
        if advance:
            self.cycle_index = (self.cycle_index + 1) % len(PACING_GAIN_CYCLE)
            self.pacing_gain = PACING_GAIN_CYCLE[self.cycle_index]
            self._cycle_stamp = now
            if self.pacing_gain > 1.0:
                self._reset_lower_bounds()

    def _update_rt_prop(self, rtt: float, now: float) -> None:
        self._rt_prop_expired = now > self._rt_prop_stamp + _RT_PROP_WINDOW
        if rtt >= 0 and (rtt <= self.rt_prop or self._rt_prop_expired):
            self.rt_prop = rtt
            self._rt_prop_stamp = now

    def _check_probe_rtt(self, now: float) -> None:
        if self.state is not BbrState.PROBE_RTT and self._rt_prop_expired:
            self.state = BbrState.PROBE_RTT
            self.pacing_gain = 1.0
            self.cwnd_gain = 1.0
            self._prior_cwnd = self._saved_cwnd()
            self._probe_rtt_done = 0.0
        if self.state is not BbrState.PROBE_RTT:
            return
        # the low window holds until 200 ms and one round trip have passed
        self._app_limited_until = max(self.delivered + self.bytes_in_flight, 1)
        floor = _MIN_PIPE_PACKETS * self.max_datagram_size
        if not self._probe_rtt_done and self.bytes_in_flight <= floor:
            self._probe_rtt_done = now + _PROBE_RTT_DURATION
            self._probe_rtt_round_done = False
            self._next_round_delivered = self.delivered
        elif self._probe_rtt_done:
            if self._round_start:
                self._probe_rtt_round_done = True
            if self._probe_rtt_round_done and now > self._probe_rtt_done:
                self._rt_prop_stamp = now
                if self.congestion_window < self._prior_cwnd:
                    self.congestion_window = self._prior_cwnd
                if self.filled_pipe:
                    self._enter_probe_bw(now)
                else:
                    self.state = BbrState.STARTUP
                    self.pacing_gain = self.cwnd_gain = HIGH_GAIN

    def _set_pacing_rate(self) -> None:
        rate = self.pacing_gain * self.bw
        if rate and (self.filled_pipe or rate > self._pacing_rate):
            self._pacing_rate = rate

    def _saved_cwnd(self) -> int:
        if self._recovery_start == _NEVER and self.state is not BbrState.PROBE_RTT:
            return self.congestion_window
        return max(self._prior_cwnd, self.congestion_window)

    def _set_cwnd(self, acked: int) -> None:
        target = self.bdp(self.cwnd_gain)
        cwnd = self.congestion_window
        if self.round_count < self._conservation_until:
            # packet conservation for the first round of recovery
            cwnd = max(cwnd, self.bytes_in_flight + acked)
        elif self.filled_pipe:
            cwnd = min(cwnd + acked, target)
        elif cwnd < target or self.delivered < initial_window(self.max_datagram_size):
            cwnd += acked
        if cwnd > self.inflight_lo:  # v3 BBRBoundCwndForModel
            cwnd = int(self.inflight_lo)
        floor = _MIN_PIPE_PACKETS * self.max_datagram_size
        if cwnd < floor:
            cwnd = floor
        if self.state is BbrState.PROBE_RTT and cwnd > floor:
            cwnd = floor
        self.congestion_window = cwnd

    def __repr__(self) -> str:
        return (
            f"Bbr({self.state.value}, cwnd={self.congestion_window}, "
            f"in_flight={self.bytes_in_flight}, btl_bw={self.btl_bw:.0f}, "
            f"rt_prop={self.rt_prop:.4f})"
        )
