"""ACK generation for one packet number space (RFC 9000 §13.2).

Theory of operation
-------------------
:class:`AckTracker` remembers which packet numbers arrived (a :class:`RangeSet`) and
decides when an ACK frame is due:

* Initial and Handshake packets are acknowledged at once (§13.2.1);
* in the application space an ACK is due after two ack-eliciting packets or after our
  ``max_ack_delay`` (§13.2.2), and at once when a packet arrives out of order — a gap
  opens or a lower packet number fills one (§13.2.1);
* non-ack-eliciting packets never make an ACK due by themselves (§13.2.1).

The peer may change this with ACK_FREQUENCY (draft-ietf-quic-ack-frequency §4, §6;
validated by :class:`~quic.conn_acks.AckState`): :meth:`AckTracker.on_ack_frequency`
sets the number of ack-eliciting packets per ACK (Ack-Eliciting Threshold + 1), our
``max_ack_delay`` and the Reordering Threshold — 0: out-of-order packets do not make an
ACK due; 1: RFC 9000's rule above; more: an ACK is due when the smallest packet number
still missing above ``Largest Acked - threshold`` (the last ACK we sent) lies
``threshold`` or more below the largest ack-eliciting packet, or when a packet arrives at
or below ``Largest Acked - threshold`` (draft §6.2; a bisection in the received set).
Frames with a sequence number not above the largest seen are ignored. IMMEDIATE_ACK
(draft §5) makes an ACK due with the packet that carried it.

ECN-CE (draft §6.3): an ack-eliciting packet that arrived marked Congestion Experienced
makes an ACK due at once when the Ack-Eliciting Threshold is 0 or 1 (RFC 9000 §13.2.1:
every CE-marked packet); with a larger threshold only on the transition, when the
packet received before it (ack-eliciting or not) was not CE-marked. A run of CE-marked
packets after the first is then acknowledged by the threshold or the timer like any
other. One boolean (``_last_ce``) is the whole state.

The next packet number in order grows the set's last range in place (what
:meth:`RangeSet.extend_last` does, inline), the per-packet case of a bulk receiver.
A reader going through a run of packets (:meth:`~quic.conn_receive.PacketReader.
read_short_run`) does less still: an ack-eliciting packet, not CE-marked, with the
next packet number after the last one, while the Reordering Threshold is 0 or 1, is
only *noted* — ``noted_first`` (set with ``noted_time`` when a run of them starts)
and ``noted_stop`` are written, no call — and :meth:`settle` records the run as
:meth:`on_packet` would have one by one. Every method settles first, so whatever
the frames of a later packet do with the tracker (an acknowledged ACK of ours,
ACK_FREQUENCY, IMMEDIATE_ACK) sees the earlier packets recorded, and the reader
settles before it returns: the attributes read directly (``largest``, ``deadline``,
``fresh``, ``received``) are current whenever anyone else looks.

``fresh`` tells whether anything arrived since the last ACK frame was sent: an ACK that
is not due rides along in an ack-eliciting packet only then, since otherwise it would
repeat the previous one word for word (§13.2.1 lets the sender choose).

Once an ACK we sent is itself acknowledged, packet numbers at or below the Largest
Acknowledged it carried need not be reported again (§13.2.4): they are cleared and a
``floor`` remembers that anything below it counts as a duplicate (§12.3), so the set
stays small on long connections.

A peer that never acknowledges our ACKs would make the set grow with every gap it
leaves in its packet numbers, so at most ``max_ranges`` ranges are kept (§13.2.3: "a
receiver limits the number of ACK Ranges it remembers"). Beyond that the oldest range
is forgotten and ``floor`` rises to its end: every packet number below the floor counts
as a duplicate from then on, which keeps duplicate detection sound (§13.2.3: a
receiver may discard a range once it will not accept packets in it again; a rising
minimum packet number is the suggested way). The price is that a packet delayed by
more than ``max_ranges`` gaps is dropped unprocessed; its sender has long declared it
lost (RFC 9002 §6.1.1, three packets of reordering) and sent its frames again, so
nothing is lost but a spurious retransmission. Only the newest
:data:`MAX_ACK_RANGES` ranges are ever put in an ACK frame (§13.2.4); the older ones
serve duplicate detection only. The largest packet number is always kept (§13.2.3,
packet number decoding).
"""

from __future__ import annotations

from typing import Any

from quic.rangeset import RangeSet

__all__ = [
    "APPLICATION_PACKET_TOLERANCE",
    "DEFAULT_MAX_ACK_RANGES_TRACKED",
    "MAX_ACK_RANGES",
    "SPENT_ACK_TRACKER",
    "AckTracker",
]

#: At most this many ACK ranges in one frame (older ones are dropped, §13.2.4).
MAX_ACK_RANGES = 32

#: Received packet-number ranges remembered per space (§13.2.3); older ones are dropped.
DEFAULT_MAX_ACK_RANGES_TRACKED = 256

#: Ack-eliciting packets received before an ACK is due in the application space until
#: the peer asks for another number with ACK_FREQUENCY (RFC 9000 §13.2.2).
APPLICATION_PACKET_TOLERANCE = 2


class AckTracker:
    """Received packet numbers and the ACK timer of one packet number space."""

    __slots__ = (
        "_ack_frequency_seq",
        "_immediate_requested",
        "_largest_eliciting",
        "_last_ce",
        "ack_eliciting_since_ack",
        "deadline",
        "floor",
        "fresh",
        "immediate",
        "largest",
        "largest_acked_sent",
        "largest_time",
        "max_ack_delay",
        "max_ranges",
        "noted_first",
        "noted_stop",
        "noted_time",
        "packet_tolerance",
        "received",
        "reordering_threshold",
    )

    def __init__(
        self,
        max_ack_delay: float,
        immediate: bool,
        *,
        max_ranges: int = DEFAULT_MAX_ACK_RANGES_TRACKED,
    ) -> None:
        if max_ranges < 1:
            raise ValueError("at least one received range must be kept (RFC 9000 §13.2.3)")
        self.max_ranges = max_ranges
        self.received = RangeSet()
        self.largest = -1
        self.largest_time = 0.0
        self.floor = 0  # packet numbers below this were acknowledged and forgotten
        self.max_ack_delay = max_ack_delay
        self.immediate = immediate  # Initial/Handshake: acknowledge without delay
        # Ack-eliciting packets before an ACK is due: 2 (RFC 9000 §13.2.2) until the
        # peer's ACK_FREQUENCY asks otherwise (draft-ietf-quic-ack-frequency §4).
        self.packet_tolerance = 2 if immediate else APPLICATION_PACKET_TOLERANCE
        self.reordering_threshold = 1  # draft §4: 1 is RFC 9000's behaviour
        self.ack_eliciting_since_ack = 0
        self.deadline: float | None = None
        self.fresh = False  # a packet arrived since the last ACK frame was sent
        self.largest_acked_sent = -1  # Largest Acknowledged of the last ACK we sent
        self._largest_eliciting = -1  # draft §6.2 "Largest Unacked"
        self._ack_frequency_seq = -1  # largest ACK_FREQUENCY sequence number processed
        self._immediate_requested = False
        self._last_ce = False  # the previous packet received arrived CE-marked (draft §6.3)
        # in-order ack-eliciting packets noted without a call, not yet recorded (see
        # settle): noted_first..noted_stop-1, processed at noted_time; -1: none
        self.noted_first = -1
        self.noted_stop = -1
        self.noted_time = 0.0

    def settle(self) -> None:
        """Record the packets noted in ``noted_first``..``noted_stop - 1`` at
        ``noted_time``, as :meth:`on_packet` (ack-eliciting, not CE-marked) would one
        after another: the first is the next packet number after ``largest`` and the
        Reordering Threshold is 0 or 1, so none is out of order (§13.2.1, draft §6.2);
        the threshold and the timer are checked once, for the count, which only grows."""
        first = self.noted_first
        stop = self.noted_stop
        now = self.noted_time
        self.noted_first = -1
        received = self.received
        stops = received._stops  # RangeSet.extend_last's case, inline
        if stops and stops[-1] == first:
            stops[-1] = stop
        else:
            received.add(first, stop)  # in order all the same: first == largest + 1
        self._last_ce = False
        self.fresh = True
        self.largest = self._largest_eliciting = stop - 1
        self.largest_time = now
        self.ack_eliciting_since_ack = since = self.ack_eliciting_since_ack + stop - first
        if self.immediate or self._immediate_requested or since >= self.packet_tolerance:
            self._immediate_requested = False
            self.deadline = now
        elif self.deadline is None:
            self.deadline = now + self.max_ack_delay

    def is_duplicate(self, pn: int) -> bool:
        """True if ``pn`` was already received (RFC 9000 §12.3)."""
        if self.noted_first >= 0:
            self.settle()
        return pn < self.floor or pn in self.received

    def on_packet(self, pn: int, ack_eliciting: bool, now: float, ce: bool = False) -> None:
        """Record a successfully processed packet; ``ce``: it arrived CE-marked."""
        if self.noted_first >= 0:
            self.settle()
        # draft-ietf-quic-ack-frequency §6.3: with an Ack-Eliciting Threshold above 1
        # (more than two packets per ACK) only the first of a run of CE marks is
        # acknowledged at once; RFC 9000 §13.2.1 (every CE mark) otherwise.
        last_ce = self._last_ce
        if ce or last_ce:
            congested = ce and (self.packet_tolerance <= 2 or not last_ce)
            self._last_ce = ce
        else:
            congested = False  # the common case: no mark now nor on the packet before
        largest = self.largest
        received = self.received
        stops = received._stops  # RangeSet.extend_last, inline: no call per packet
        if pn == largest + 1 and stops and stops[-1] == pn:
            stops[-1] = pn + 1
            in_order = True  # the common case: one range grows
            self.largest = pn
            self.largest_time = now
        else:
            in_order = pn == largest + 1 or not received
            received.add(pn)
            if not in_order and len(received) > self.max_ranges:
                self._forget_oldest()
            if pn > largest:
                self.largest = pn
                self.largest_time = now
        self.fresh = True
        if not ack_eliciting:
            return
        if pn > self._largest_eliciting:
            self._largest_eliciting = pn
        self.ack_eliciting_since_ack = since = self.ack_eliciting_since_ack + 1
        threshold = self.reordering_threshold
        if threshold == 1:
            reordered = not in_order  # RFC 9000 §13.2.1
        elif threshold == 0:
            reordered = False  # draft §6.2: gaps wait for the threshold or the timer
        else:
            reordered = self._beyond_reordering(pn, threshold)
        if (
            self.immediate
            or reordered
            or self._immediate_requested
            or congested
            or since >= self.packet_tolerance
        ):
            self._immediate_requested = False
            self.deadline = now
        elif self.deadline is None:
            self.deadline = now + self.max_ack_delay

    def _beyond_reordering(self, pn: int, threshold: int) -> bool:
        """draft-ietf-quic-ack-frequency §6.2 for a Reordering Threshold above 1."""
        reported_missing = self.largest_acked_sent - threshold  # Largest Reported Missing
        if pn < self._largest_eliciting and pn <= reported_missing:
            return True  # arrived after the sender could declare it lost
        start = reported_missing + 1
        if start < self.floor:
            start = self.floor
        missing = self.received.first_missing_from(start)  # smallest Unreported Missing
        return missing < self._largest_eliciting and self._largest_eliciting - missing >= threshold

    def on_ack_frequency(
        self,
        sequence_number: int,
        threshold: int,
        max_ack_delay: float,
        reordering: int,
        now: float,
    ) -> None:
        """Apply a validated ACK_FREQUENCY frame (draft §4); older ones are ignored.

        Packets already waiting for an ACK are held to the new values (draft §6).
        """
        if self.noted_first >= 0:
            self.settle()  # the packets before this frame's are held to the old values
        if sequence_number <= self._ack_frequency_seq:
            return
        self._ack_frequency_seq = sequence_number
        self.packet_tolerance = threshold + 1  # ACK after *more than* threshold packets
        self.max_ack_delay = max_ack_delay
        self.reordering_threshold = reordering
        if self.ack_eliciting_since_ack:
            if self.ack_eliciting_since_ack >= self.packet_tolerance:
                self.deadline = now
            elif self.deadline is None or self.deadline > now + max_ack_delay:
                self.deadline = now + max_ack_delay

    def request_immediate_ack(self) -> None:
        """IMMEDIATE_ACK (draft §5): the packet carrying it is acknowledged at once."""
        if self.noted_first >= 0:
            self.settle()
        self._immediate_requested = True

    def _forget_oldest(self) -> None:
        """Drop the oldest ranges beyond ``max_ranges``; the floor rises past them so
        that nothing below it is ever accepted again (RFC 9000 §13.2.3)."""
        received = self.received
        while len(received) > self.max_ranges:
            dropped = received.shift()
            if dropped.stop > self.floor:
                self.floor = dropped.stop

    def wants_ack(self, now: float) -> bool:
        if self.noted_first >= 0:
            self.settle()
        deadline = self.deadline
        return deadline is not None and deadline <= now

    def has_ranges(self) -> bool:
        """Anything to acknowledge: a packet was ever received. The same as
        ``bool(self.received)`` without RangeSet's ``__bool__``: the set is never
        emptied once a packet arrived (:meth:`on_ack_acked` keeps the largest,
        :meth:`_forget_oldest` at least one range)."""
        if self.noted_first >= 0:
            self.settle()
        return self.largest >= 0

    def ack_delay(self, now: float) -> float:
        """Time since the largest packet arrived (RFC 9000 §19.3 ACK Delay), seconds."""
        if self.noted_first >= 0:
            self.settle()
        delay = now - self.largest_time
        return delay if delay > 0.0 else 0.0

    def ranges(self) -> tuple[tuple[int, int], ...]:
        """Inclusive (smallest, largest) pairs, largest first, for an ACK frame."""
        if self.noted_first >= 0:
            self.settle()
        return self.received.ack_ranges_descending(MAX_ACK_RANGES)

    def on_ack_sent(self, largest_acknowledged: int = -1) -> None:
        if self.noted_first >= 0:
            self.settle()
        self.ack_eliciting_since_ack = 0
        self.deadline = None
        self.fresh = False
        if largest_acknowledged > self.largest_acked_sent:
            self.largest_acked_sent = largest_acknowledged

    def on_ack_acked(self, largest_acknowledged: int) -> None:
        """Our ACK reporting up to ``largest_acknowledged`` arrived (§13.2.4)."""
        self.on_ack_fate(True, largest_acknowledged)

    def on_ack_fate(self, acked: bool, largest_acknowledged: int) -> None:
        """The fate handler of a packet carrying our ACK up to ``largest_acknowledged``
        (:mod:`quic.conn_acks`): acknowledged, the ranges below it are no longer
        repeated (§13.2.4); lost, nothing changes. One call per ACK acknowledged."""
        if not acked:
            return
        if self.noted_first >= 0:
            self.settle()
        floor = largest_acknowledged + 1
        if floor > self.floor:
            # keep the largest so that "in order" detection stays meaningful
            largest = self.largest
            limit = floor if floor < largest else largest  # min(), without the call
            self.received.clear_below(limit)
            self.floor = limit


class _SpentAckTracker(AckTracker):
    """The tracker of a discarded packet number space (RFC 9001 §4.9), one shared by
    every connection (issue 10: ~450 bytes per space an idle connection does not keep).

    Nothing was received in it and no ACK is due. Its packets are dropped before they
    reach a tracker (their keys are gone) and nothing is sent in its space, so it is
    only read; a change would be a bug, and raises (the connection closes with
    INTERNAL_ERROR) rather than touching the other connections' state.
    """

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise RuntimeError(f"{name} set on a discarded space's ACK tracker")

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a discarded packet number space's ACK tracker changed")

    on_packet = on_ack_frequency = request_immediate_ack = _refuse
    on_ack_sent = on_ack_acked = _forget_oldest = _refuse

    def on_ack_fate(self, acked: bool, largest_acknowledged: int) -> None:
        if acked:
            self._refuse()


def _spent_tracker() -> AckTracker:
    fresh = AckTracker(0.0, immediate=True)
    spent = object.__new__(_SpentAckTracker)
    for name in AckTracker.__slots__:
        object.__setattr__(spent, name, getattr(fresh, name))
    return spent


#: What :meth:`quic.conn_acks.AckState.discard` puts in a discarded space's place.
SPENT_ACK_TRACKER = _spent_tracker()
