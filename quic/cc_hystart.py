"""HyStart++ (RFC 9406): leaving slow start on a rising RTT instead of a loss burst.

Theory of operation
-------------------
Slow start doubles the window every round trip until a loss; on a path with a deep
bottleneck queue that overshoots by up to a window, and the burst of losses that ends
it costs a round trip of retransmissions (RFC 9406 §1). :class:`HyStart` watches the
RTT samples of each *round* (a window of packets: the round ends when the packet that
was the newest sent at its start is acknowledged, RFC 9406 §4.2 ``windowEnd``) and:

* in slow start, once a round has at least ``N_RTT_SAMPLE`` samples and the previous
  round has a minimum, compares the minima: a rise of ``RttThresh`` =
  ``clamp(lastRoundMinRTT / MIN_RTT_DIVISOR, MIN_RTT_THRESH, MAX_RTT_THRESH)`` or more
  means a queue is building, and the sender enters Conservative Slow Start (CSS),
  remembering that round's minimum as ``cssBaselineMinRtt`` (§4.2);
* in CSS the window grows by a quarter of what slow start would add
  (``CSS_GROWTH_DIVISOR``); a round whose minimum falls below the baseline again was a
  false alarm (jitter), and slow start resumes; after ``CSS_ROUNDS`` rounds in CSS the
  sender enters congestion avoidance with ``ssthresh = cwnd`` (§4.2);
* a loss or ECN-CE at any time ends it all through the controller's normal reduction,
  which sets ssthresh (§4.2).

Only the first slow start of a connection uses it (§4.2: "SHOULD use HyStart++ only for
the initial slow start"); later ones, after persistent congestion, are plain slow start
that stops at the ssthresh already learnt. ``L`` (the per-ACK growth limit, §4.2) is
infinite: every controller here paces (RFC 9002 §7.7), and §4.3 says a paced sender
SHOULD use L = infinity. The constants are §4.3's recommended values.

RTT samples are taken by the controller from what an ACK newly acknowledges: the time
since the newest acknowledged ack-eliciting packet was sent (RFC 9002 §5.1's
``latest_rtt`` when that packet is the ACK's Largest Acknowledged). Only the application
packet number space counts: Initial and Handshake packets are numbered separately and
are not part of the data flight. The state is eight numbers; nothing grows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quic.recovery import SentPacket

__all__ = [
    "CSS_GROWTH_DIVISOR",
    "CSS_ROUNDS",
    "MAX_RTT_THRESH",
    "MIN_RTT_DIVISOR",
    "MIN_RTT_THRESH",
    "N_RTT_SAMPLE",
    "HyStart",
]

# RFC 9406 §4.3 recommended constants
MIN_RTT_THRESH = 0.004  # seconds
MAX_RTT_THRESH = 0.016  # seconds
MIN_RTT_DIVISOR = 8
N_RTT_SAMPLE = 8
CSS_GROWTH_DIVISOR = 4
CSS_ROUNDS = 5

_APPLICATION = 2
_INF = float("inf")


class HyStart:
    """The HyStart++ state of one connection's initial slow start (RFC 9406 §4.2)."""

    __slots__ = (
        "css_baseline_min_rtt",
        "css_entries",
        "css_rounds",
        "current_round_min_rtt",
        "in_css",
        "largest_sent",
        "last_round_min_rtt",
        "rtt_sample_count",
        "window_end",
    )

    def __init__(self) -> None:
        self.largest_sent = -1  # newest application packet number sent (SND.NXT - 1)
        self.window_end = -1  # -1: no round started yet
        self.last_round_min_rtt = _INF
        self.current_round_min_rtt = _INF
        self.rtt_sample_count = 0
        self.css_baseline_min_rtt = _INF
        self.in_css = False
        self.css_rounds = 0
        self.css_entries = 0  # times CSS was entered (diagnostics, tests)

    @property
    def growth_divisor(self) -> int:
        """What slow start's growth is divided by: 1, or ``CSS_GROWTH_DIVISOR`` in CSS."""
        return CSS_GROWTH_DIVISOR if self.in_css else 1

    def on_packet_sent(self, packet: SentPacket | None) -> None:
        if packet is not None and packet.space == _APPLICATION:
            self.largest_sent = packet.packet_number

    def on_ack(self, packets: Sequence[SentPacket], now: float) -> bool:
        """One ACK frame's newly acknowledged packets, in packet number order, during
        slow start or CSS. True when CSS is over: enter congestion avoidance with
        ssthresh = cwnd (§4.2)."""
        newest: SentPacket | None = None
        for packet in reversed(packets):
            if packet.space == _APPLICATION and packet.ack_eliciting and packet.in_flight:
                newest = packet
                break
        if newest is None:
            return False
        if self.window_end < 0:
            self.window_end = self.largest_sent  # the first round starts
        sample = now - newest.time_sent
        if sample < self.current_round_min_rtt:
            self.current_round_min_rtt = sample
        self.rtt_sample_count += 1
        if self.rtt_sample_count >= N_RTT_SAMPLE:
            self._check_delay()
        if newest.packet_number < self.window_end:
            return False
        # §4.2: the round ended; the next one runs until what is sent now is acknowledged
        self.last_round_min_rtt = self.current_round_min_rtt
        self.current_round_min_rtt = _INF
        self.rtt_sample_count = 0
        self.window_end = self.largest_sent
        if self.in_css:
            self.css_rounds += 1
            if self.css_rounds >= CSS_ROUNDS:
                self.in_css = False
                return True
        return False

    def _check_delay(self) -> None:
        current = self.current_round_min_rtt
        if self.in_css:
            if current < self.css_baseline_min_rtt:  # §4.2: a spurious exit, resume
                self.css_baseline_min_rtt = _INF
                self.in_css = False
            return
        last = self.last_round_min_rtt
        if last == _INF or current == _INF:
            return
        thresh = last / MIN_RTT_DIVISOR
        if thresh > MAX_RTT_THRESH:
            thresh = MAX_RTT_THRESH
        elif thresh < MIN_RTT_THRESH:
            thresh = MIN_RTT_THRESH
        if current >= last + thresh:  # §4.2: the delay rose: enter CSS
            self.css_baseline_min_rtt = current
            self.in_css = True
            self.css_rounds = 0
            self.css_entries += 1

    def __repr__(self) -> str:
        return (
            f"HyStart(in_css={self.in_css}, css_rounds={self.css_rounds}, "
            f"last_min={self.last_round_min_rtt:.4f}, cur_min={self.current_round_min_rtt:.4f})"
        )
