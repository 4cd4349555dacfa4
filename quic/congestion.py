"""Congestion control interface and the NewReno controller (RFC 9002 §7, Appendix B).

Theory of operation
-------------------
Loss recovery (:mod:`quic.recovery`) owns packet bookkeeping and tells a
:class:`CongestionController` what happened, in bytes and send times:

* ``on_packet_sent`` for every in-flight packet (ack-eliciting or PADDING-bearing);
* ``on_packets_acked`` with the packets newly acknowledged by one ACK frame;
* ``on_packets_lost`` with the packets declared lost at one moment: this is *one*
  congestion event, keyed on the send time of the newest lost packet (§7.3.2, B.8);
* ``on_ecn_ce`` when the peer-reported ECN-CE count increases (§7.1, B.7);
* ``on_persistent_congestion`` after ``on_packets_lost`` when §7.6 applies;
* ``on_spurious_loss`` with packets declared lost that were acknowledged later (the
  recovery remembers a bounded number of recently lost packets to notice it);
* ``on_packet_discarded`` when keys are dropped (§6.4): the bytes leave the flight
  without any congestion reaction (B.9); also for a lost PMTU probe (RFC 9000 §14.4:
  its loss is no sign of congestion);
* ``on_app_limited`` when the sender had room in the window but nothing to send
  (§7.8), so that controllers that sample the delivery rate (BBR) know it;
* ``set_max_datagram_size`` when the path MTU changes (§7.2, DPLPMTUD).

``on_packet_sent`` also receives the :class:`~quic.recovery.SentPacket` itself, so a
controller can stamp it with what it needs back at acknowledgment time (BBR's
delivery-rate state); NewReno and CUBIC ignore it. ``pacing_rate`` is the rate the
pacer (:mod:`quic.pacing`) releases packets at (§7.7).

Packets passed in may include ones that are not in flight (ACK-only); controllers
ignore those. The sender asks :meth:`CongestionController.can_send` before sending a
congestion-controlled packet; probe packets (PTO) bypass that check (§7.5).

:class:`NewReno` follows §7.3: slow start below ``ssthresh`` (``None`` = infinite),
a recovery period that starts at the detection time of a congestion event and ends
with the acknowledgment of a packet sent after it, and byte-counting congestion
avoidance (one max datagram size per congestion window acknowledged, RFC 3465 §2.1
style, integer arithmetic). The window is reduced immediately on entering recovery;
one packet may still be sent to speed up recovery (§7.3.2, B.6 ``MaybeSendOnePacket``).

Spurious losses: every reduction starts a numbered *loss event*; each in-flight packet
declared lost while it is the current one is stamped with its number
(``SentPacket.loss_event``) and counted. When every one of them is later acknowledged
(``on_spurious_loss``), the reduction was caused by reordering, not congestion, and
:meth:`NewReno._undo_spurious` may restore the state from before it. NewReno keeps the
reduction (RFC 9002 describes no undo); CUBIC restores (RFC 9438 §4.9). A reduction for
ECN-CE or persistent congestion is never undone. The bookkeeping is four integers.

HyStart++ (:mod:`quic.cc_hystart`, RFC 9406) may end the initial slow start before
a loss: while ssthresh is still infinite each ACK goes to it first; in Conservative
Slow Start the growth is divided by ``CSS_GROWTH_DIVISOR``, and when CSS is over
ssthresh becomes the current window. It is off for NewReno unless asked for (RFC 9002
§7.3.1 describes plain slow start) and on for CUBIC (RFC 9438 §4.10).

Underutilisation (§7.8): the window does not grow when the sender was not limited by
it. The test is made per ACK on the bytes in flight *before* the ACK: the sender was
window-limited if less than one datagram of room was left, or, in slow start, if at
least half the window was in use (slow start doubles the window per round trip).

:class:`Pacer` (in :mod:`quic.pacing`) is separate: the send path asks the controller
for :meth:`CongestionController.pacing_rate` and paces with it (§7.7). For window-based
controllers the rate is ``N * congestion_window / smoothed_rtt`` with N = 2 in slow
start (the window doubles every round trip, so a rate of 1.25 windows per RTT would
hold slow start back) and N = 1.25 otherwise (§7.7's example value).

Other controllers live in their own modules behind the same protocol: CUBIC in
:mod:`quic.cc_cubic` (a :class:`NewReno` with another reduction factor and window
growth, through the hooks ``_reduced_window`` and ``_avoidance``), a BBR-style one in
:mod:`quic.cc_bbr`; :func:`quic.controllers.create_controller` makes one by name
(``QuicConfiguration.congestion_control``).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Protocol

from quic.cc_hystart import HyStart

if TYPE_CHECKING:
    from quic.recovery import SentPacket

__all__ = [
    "K_LOSS_REDUCTION_DENOMINATOR",
    "K_LOSS_REDUCTION_NUMERATOR",
    "PACING_GAIN",
    "PACING_GAIN_SLOW_START",
    "CongestionController",
    "NewReno",
    "initial_window",
    "minimum_window",
    "window_pacing_rate",
]

# RFC 9002 §7.3.2, B.1: kLossReductionFactor = 0.5, kept as an integer fraction.
K_LOSS_REDUCTION_NUMERATOR = 1
K_LOSS_REDUCTION_DENOMINATOR = 2

#: RFC 9002 §7.7: pacing rate = N * congestion_window / smoothed_rtt, N >= 1.
PACING_GAIN = 1.25
#: N in slow start, where the window doubles each round trip.
PACING_GAIN_SLOW_START = 2.0

_NEVER = float("-inf")
_IN_FLIGHT = attrgetter("in_flight")
_SIZE = attrgetter("size")
_TIME_SENT = attrgetter("time_sent")
_MIN_RTT_FOR_RATE = 0.001  # kGranularity (RFC 9002 §6.1.2): no rate from a 0 s RTT


def window_pacing_rate(congestion_window: int, smoothed_rtt: float, slow_start: bool) -> float:
    """RFC 9002 §7.7 pacing rate of a window-based controller, bytes per second."""
    rtt = smoothed_rtt if smoothed_rtt > _MIN_RTT_FOR_RATE else _MIN_RTT_FOR_RATE
    gain = PACING_GAIN_SLOW_START if slow_start else PACING_GAIN
    return gain * congestion_window / rtt


def initial_window(max_datagram_size: int) -> int:
    """RFC 9002 §7.2: min(10 * mds, max(14720, 2 * mds))."""
    return min(10 * max_datagram_size, max(14720, 2 * max_datagram_size))


def minimum_window(max_datagram_size: int) -> int:
    """RFC 9002 §7.2: kMinimumWindow = 2 * max_datagram_size."""
    return 2 * max_datagram_size


class CongestionController(Protocol):
    """What loss recovery and the send path need from a congestion controller."""

    congestion_window: int
    bytes_in_flight: int
    ssthresh: int | None
    max_datagram_size: int
    #: :meth:`on_app_limited` does something: the send path asks whether the sender
    #: is application-limited only then (after every build).
    app_limited_hook: bool

    def can_send(self, size: int) -> bool:
        """True if a congestion-controlled packet of ``size`` bytes may be sent now."""
        ...

    def available(self) -> int:
        """Bytes the window allows right now (0 when full)."""
        ...

    def on_packet_sent(self, sent_bytes: int, now: float, packet: SentPacket | None = None) -> None:
        """An in-flight packet of ``sent_bytes`` bytes left at ``now``."""
        ...

    def on_packets_sent(self, packets: Sequence[SentPacket], sent_bytes: int, now: float) -> None:
        """:meth:`on_packet_sent` for a run of in-flight packets that left together at
        ``now`` (the bulk send loop), in packet number order; ``sent_bytes`` is the sum
        of their sizes."""
        ...

    def on_packets_acked(self, packets: Sequence[SentPacket], now: float) -> None:
        """Packets newly acknowledged by one ACK frame."""
        ...

    def on_packets_lost(self, packets: Sequence[SentPacket], now: float) -> None:
        """Packets declared lost together: one congestion event (RFC 9002 §7.3.2)."""
        ...

    def on_ecn_ce(self, sent_time: float, now: float) -> None:
        """The peer's ECN-CE count rose; ``sent_time`` of the largest acked (§7.1, B.7)."""
        ...

    def on_persistent_congestion(self, now: float) -> None:
        """RFC 9002 §7.6.2: collapse to the minimum window."""
        ...

    def on_spurious_loss(self, packets: Sequence[SentPacket], now: float) -> None:
        """Packets declared lost earlier were acknowledged after all (a spurious loss,
        RFC 9438 §4.9); they left the flight when declared lost."""
        ...

    def on_packet_discarded(self, packet: SentPacket) -> None:
        """Keys dropped (RFC 9002 §6.4): forget the bytes, no congestion reaction."""
        ...

    def on_app_limited(self, now: float) -> None:
        """The window had room but the application had nothing to send (§7.8)."""
        ...

    def pacing_rate(self, smoothed_rtt: float) -> float:
        """Bytes per second the pacer releases packets at (RFC 9002 §7.7)."""
        ...

    def set_max_datagram_size(self, max_datagram_size: int) -> None:
        """The path's maximum datagram size changed (RFC 9002 §7.2)."""
        ...


class NewReno:
    """The RFC 9002 §7 congestion controller."""

    app_limited_hook = False  # §7.8 is applied per ACK (see _window_limited)

    __slots__ = (
        "_ca_bytes_acked",
        "_event_lost",
        "_event_spurious",
        "_event_start",
        "_event_undoable",
        "_loss_event",
        "_may_send_one",
        "_prior_recovery_start",
        "bytes_in_flight",
        "congestion_recovery_start_time",
        "congestion_window",
        "hystart",
        "max_datagram_size",
        "spurious_undos",
        "ssthresh",
    )

    def __init__(self, max_datagram_size: int = 1200, *, hystart: bool = False) -> None:
        if max_datagram_size < 1200:
            raise ValueError("max_datagram_size must be at least 1200 (RFC 9000 §14)")
        self.max_datagram_size = max_datagram_size
        self.congestion_window = initial_window(max_datagram_size)
        self.bytes_in_flight = 0
        #: Slow start threshold; ``None`` stands for infinity (RFC 9002 B.3).
        self.ssthresh: int | None = None
        #: Detection time of the current recovery period; -inf when none (B.2).
        self.congestion_recovery_start_time = _NEVER
        self._ca_bytes_acked = 0  # congestion avoidance byte counter (RFC 3465 §2.1)
        self._may_send_one = False  # B.6 MaybeSendOnePacket allowance
        # spurious-loss detection (RFC 9438 §4.9): the current loss event, the in-flight
        # packets declared lost in it, how many of those were acknowledged later, and
        # whether it may still be undone
        self._loss_event = 0
        self._event_lost = 0
        self._event_spurious = 0
        self._event_undoable = False
        self._prior_recovery_start = _NEVER
        self._event_start = _NEVER  # the recovery period the current loss event opened
        #: Reductions undone because every packet lost in them arrived (diagnostics).
        self.spurious_undos = 0
        #: HyStart++ (RFC 9406) for the initial slow start; None: plain slow start.
        self.hystart: HyStart | None = HyStart() if hystart else None

    # -- queries ----------------------------------------------------------------------

    @property
    def minimum_window(self) -> int:
        return minimum_window(self.max_datagram_size)

    @property
    def in_slow_start(self) -> bool:
        return self.ssthresh is None or self.congestion_window < self.ssthresh

    def in_recovery(self, sent_time: float) -> bool:
        """B.5 InCongestionRecovery: was a packet sent at ``sent_time`` sent before it began."""
        return sent_time <= self.congestion_recovery_start_time

    def can_send(self, size: int) -> bool:
        return self.bytes_in_flight + size <= self.congestion_window or self._may_send_one

    def available(self) -> int:
        room = self.congestion_window - self.bytes_in_flight
        if room <= 0:
            return self.max_datagram_size if self._may_send_one else 0
        return room

    # -- events -----------------------------------------------------------------------

    def on_packet_sent(self, sent_bytes: int, now: float, packet: SentPacket | None = None) -> None:
        self.bytes_in_flight += sent_bytes
        self._may_send_one = False
        if self.hystart is not None:
            self.hystart.on_packet_sent(packet)

    def on_packets_sent(self, packets: Sequence[SentPacket], sent_bytes: int, now: float) -> None:
        self.bytes_in_flight += sent_bytes
        self._may_send_one = False
        if self.hystart is not None and packets:
            self.hystart.on_packet_sent(packets[-1])  # it keeps the largest sent only

    def on_app_limited(self, now: float) -> None:
        """Nothing to do: §7.8 is applied per ACK (see :meth:`_window_limited`)."""

    def pacing_rate(self, smoothed_rtt: float) -> float:
        # window_pacing_rate() and in_slow_start, without their calls: every build call
        cwnd = self.congestion_window
        ssthresh = self.ssthresh
        rtt = smoothed_rtt if smoothed_rtt > _MIN_RTT_FOR_RATE else _MIN_RTT_FOR_RATE
        slow_start = ssthresh is None or cwnd < ssthresh
        return (PACING_GAIN_SLOW_START if slow_start else PACING_GAIN) * cwnd / rtt

    def on_packets_acked(self, packets: Sequence[SentPacket], now: float) -> None:
        # _window_limited(bytes_in_flight), inline: once per ACK frame (RFC 9002 §7.8)
        prior = self.bytes_in_flight
        cwnd = self.congestion_window
        ssthresh = self.ssthresh
        limited = prior + self.max_datagram_size > cwnd or (
            (ssthresh is None or cwnd < ssthresh) and 2 * prior >= cwnd
        )
        recovery_start = self.congestion_recovery_start_time
        divisor = 1
        hystart = self.hystart
        if hystart is not None and self.ssthresh is None:  # RFC 9406: initial slow start
            if hystart.on_ack(packets, now):
                self.ssthresh = self.congestion_window  # §4.2: CSS over, avoidance
            divisor = hystart.growth_divisor
        if (
            packets
            and all(map(_IN_FLIGHT, packets))
            and self._acked_together(packets, limited, recovery_start, divisor, now)
        ):
            return
        for packet in packets:
            if not packet.in_flight:
                continue
            size = packet.size
            self.bytes_in_flight -= size
            # RFC 9002 §7.8: no growth when the window was not the limiting factor.
            # RFC 9002 §7.3.2: no growth for packets sent before/at recovery start.
            if not limited or packet.time_sent <= recovery_start:
                continue
            ssthresh = self.ssthresh
            if ssthresh is None or self.congestion_window < ssthresh:
                self.congestion_window += size // divisor  # §7.3.1 (RFC 9406 §4.2 CSS)
            else:
                self._avoidance(size, now)
        if self.bytes_in_flight < 0:  # never trust arithmetic across a key discard
            self.bytes_in_flight = 0

    def _acked_together(
        self,
        packets: Sequence[SentPacket],
        limited: bool,
        recovery_start: float,
        divisor: int,
        now: float,
    ) -> bool:
        """:meth:`on_packets_acked`'s loop for in-flight ``packets`` in one step, with
        their sizes summed (a bulk transfer's ACK frame acknowledges tens): when the
        window was not limiting, or every packet was sent after the recovery start and
        grows the window the same way — all in slow start (the window stays at or below
        ``ssthresh`` and grows by each size whole), or all in NewReno's avoidance, whose
        count gives the same result summed (each increase only waits for more bytes).
        False, with nothing changed, otherwise: the loop's case."""
        total = sum(map(_SIZE, packets))
        if limited:
            if recovery_start != _NEVER and min(map(_TIME_SENT, packets)) <= recovery_start:
                return False  # RFC 9002 §7.3.2: some do not grow the window
            cwnd = self.congestion_window
            ssthresh = self.ssthresh
            if ssthresh is None or cwnd + total <= ssthresh:
                if divisor != 1:
                    return False  # RFC 9406 §4.2: each size divided (the loop's rounding)
                self.congestion_window = cwnd + total  # §7.3.1
            elif cwnd >= ssthresh and type(self)._avoidance is NewReno._avoidance:
                self._avoidance(total, now)  # §7.3.3
            else:
                return False  # crosses into avoidance, or a controller's own avoidance
        in_flight = self.bytes_in_flight - total
        self.bytes_in_flight = in_flight if in_flight > 0 else 0
        return True

    def _avoidance(self, size: int, now: float) -> None:
        """§7.3.3 congestion avoidance: at most one mds per window acknowledged."""
        counted = self._ca_bytes_acked + size
        cwnd = self.congestion_window
        mds = self.max_datagram_size
        while counted >= cwnd:
            counted -= cwnd
            cwnd += mds
        self.congestion_window = cwnd
        self._ca_bytes_acked = counted

    def on_packets_lost(self, packets: Sequence[SentPacket], now: float) -> None:
        newest_lost = _NEVER
        count = 0
        for packet in packets:
            if packet.in_flight:
                self.bytes_in_flight -= packet.size
                count += 1
                if packet.time_sent > newest_lost:
                    newest_lost = packet.time_sent
        if self.bytes_in_flight < 0:
            self.bytes_in_flight = 0
        if newest_lost == _NEVER:  # B.8: only in-flight losses are congestion events
            return
        if self._on_congestion_event(newest_lost, now):
            self._event_undoable = True  # a loss-triggered reduction (RFC 9438 §4.9)
        event = self._loss_event
        self._event_lost += count
        for packet in packets:
            if packet.in_flight:
                packet.loss_event = event

    def on_ecn_ce(self, sent_time: float, now: float) -> None:
        self._on_congestion_event(sent_time, now)  # RFC 9002 §7.1, B.7

    def on_persistent_congestion(self, now: float) -> None:
        # RFC 9002 §7.6.2, B.8: minimum window, leave recovery (so slow start resumes).
        self.congestion_window = self.minimum_window
        self.congestion_recovery_start_time = _NEVER
        self._ca_bytes_acked = 0
        self._may_send_one = False
        self._event_undoable = False  # a collapse is not a reordering artefact

    def on_spurious_loss(self, packets: Sequence[SentPacket], now: float) -> None:
        """RFC 9438 §4.9: undo the current reduction once every in-flight packet
        declared lost in its loss event was acknowledged after all."""
        event = self._loss_event
        for packet in packets:
            if packet.loss_event == event and packet.in_flight:
                self._event_spurious += 1
        if self._event_undoable and self._event_spurious >= self._event_lost > 0:
            self._event_undoable = False
            if self._undo_spurious(now):
                self.spurious_undos += 1

    def on_packet_discarded(self, packet: SentPacket) -> None:
        if packet.in_flight:  # RFC 9002 B.9
            self.bytes_in_flight -= packet.size
            if self.bytes_in_flight < 0:
                self.bytes_in_flight = 0

    def set_max_datagram_size(self, max_datagram_size: int) -> None:
        """Apply a new path MTU (RFC 9002 §7.2).

        Before any congestion feedback (still at the initial window, no ssthresh) the
        window is recomputed as the new initial window; otherwise it is only kept at or
        above the new minimum window.
        """
        if max_datagram_size < 1200:
            raise ValueError("max_datagram_size must be at least 1200 (RFC 9000 §14)")
        old_initial = initial_window(self.max_datagram_size)
        self.max_datagram_size = max_datagram_size
        if self.ssthresh is None and self.congestion_window == old_initial:
            self.congestion_window = initial_window(max_datagram_size)
        elif self.congestion_window < self.minimum_window:
            self.congestion_window = self.minimum_window

    # -- internals --------------------------------------------------------------------

    def _window_limited(self, prior_in_flight: int) -> bool:
        """RFC 9002 §7.8: was the congestion window what limited sending?"""
        cwnd = self.congestion_window
        if prior_in_flight + self.max_datagram_size > cwnd:
            return True
        ssthresh = self.ssthresh  # in_slow_start, without the property: per ACK
        return (ssthresh is None or cwnd < ssthresh) and 2 * prior_in_flight >= cwnd

    def _on_congestion_event(self, sent_time: float, now: float) -> bool:
        """Reduce the window unless already in recovery; True if it was reduced."""
        # RFC 9002 §7.3.2, B.6: one reduction per recovery period.
        if sent_time <= self.congestion_recovery_start_time:
            return False
        self._loss_event += 1  # a new loss event (see the module docs)
        self._event_lost = self._event_spurious = 0
        self._event_undoable = False
        self._prior_recovery_start = self.congestion_recovery_start_time
        self.congestion_recovery_start_time = self._event_start = now
        ssthresh = self._reduced_window(now)
        self.ssthresh = ssthresh
        minimum = self.minimum_window
        self.congestion_window = ssthresh if ssthresh > minimum else minimum
        self._ca_bytes_acked = 0
        self._may_send_one = True
        return True

    def _undo_spurious(self, now: float) -> bool:
        """Restore the state from before a reduction found spurious; True if done.
        NewReno keeps the reduction: RFC 9002 §7 describes no undo."""
        return False

    def _reduced_window(self, now: float) -> int:
        """The new ssthresh on a congestion event: kLossReductionFactor (§7.3.2)."""
        return self.congestion_window * K_LOSS_REDUCTION_NUMERATOR // K_LOSS_REDUCTION_DENOMINATOR

    def __repr__(self) -> str:
        return (
            f"NewReno(cwnd={self.congestion_window}, in_flight={self.bytes_in_flight}, "
            f"ssthresh={self.ssthresh})"
        )
