"""ACK state of a connection: received packet numbers and the ACK frames we send.

Theory of operation
-------------------
:class:`AckState` owns one :class:`~quic.ack.AckTracker` per packet number space
(RFC 9000 §12.3). The receive path asks it whether a packet number is a duplicate
(§12.3) and for the largest one received (to expand truncated packet numbers, §17.1),
and reports every processed packet with :meth:`AckState.on_packet`. The tracker decides
when an ACK is due (§13.2.1, §13.2.2).

The send path asks :meth:`AckState.write` to put the space's ACK frame into a packet.
The frame is built by the codec's :func:`~quic.frames.encode_ack_frame` from the
tracker's ranges; when it does not fit the room left it is cut to its newest ranges
(§13.2.4 lets older ranges go), and skipped if even one range does not fit. The frame
registers its fate on the packet: once the peer acknowledges a packet carrying our ACK,
the ranges up to its Largest Acknowledged need not be repeated (§13.2.4) and the
tracker forgets them.

The ACK Delay field is our delay scaled down by our ``ack_delay_exponent`` (§18.2,
§19.3). Initial and Handshake ACKs are never delayed (§13.2.1).

ACK frequency (draft-ietf-quic-ack-frequency): the peer's ACK_FREQUENCY and
IMMEDIATE_ACK frames are validated here (:meth:`AckState.on_ack_frequency`,
:meth:`AckState.on_immediate_ack`: PROTOCOL_VIOLATION without our ``min_ack_delay``
transport parameter or for a requested delay below it) and applied to the application
space's tracker.

A discarded Initial or Handshake space (RFC 9001 §4.9) keeps its tracker until the
connection rests, then :meth:`AckState.discard` puts the shared, empty, read-only
:data:`~quic.ack.SPENT_ACK_TRACKER` in its place (issue 10, memory per idle connection).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from quic.ack import (
    DEFAULT_MAX_ACK_RANGES_TRACKED,
    MAX_ACK_RANGES,
    SPENT_ACK_TRACKER,
    AckTracker,
)
from quic.errors import QuicProtocolError, TransportErrorCode
from quic.frames import FrameType, encode_ack_frame
from quic.packet_builder import PacketAssembler

if TYPE_CHECKING:
    from quic.conn_keys import Space

__all__ = ["AckState"]

#: ACK ranges kept when a full ACK frame does not fit the packet (RFC 9000 §13.2.4).
_SHORT_ACK_RANGES = 4
#: 2^14 ms in µs: max_ack_delay values from here on are invalid (RFC 9000 §18.2).
_MAX_ACK_DELAY_US = (1 << 14) * 1000


class AckState:
    """The ACK trackers of the three spaces and the ACK frames built from them."""

    __slots__ = ("_ack_delay_exponent", "min_ack_delay", "trackers")

    def __init__(
        self,
        max_ack_delay: float,
        ack_delay_exponent: int,
        max_ranges: int = DEFAULT_MAX_ACK_RANGES_TRACKED,
        min_ack_delay: int | None = None,
    ) -> None:
        self._ack_delay_exponent = ack_delay_exponent
        #: Our min_ack_delay transport parameter in µs; None: not sent, and the peer
        #: may not send ACK_FREQUENCY or IMMEDIATE_ACK (draft-ietf-quic-ack-frequency §3).
        self.min_ack_delay = min_ack_delay
        # received ranges remembered per space are bounded (RFC 9000 §13.2.3)
        self.trackers = (
            AckTracker(max_ack_delay, immediate=True, max_ranges=max_ranges),  # Initial
            AckTracker(max_ack_delay, immediate=True, max_ranges=max_ranges),  # Handshake
            AckTracker(max_ack_delay, immediate=False, max_ranges=max_ranges),
        )

    def discard(self, index: int) -> None:
        """The space's keys are gone (RFC 9001 §4.9): nothing more is received or
        acknowledged in it; its tracker gives way to the shared, empty one."""
        trackers = list(self.trackers)
        trackers[index] = SPENT_ACK_TRACKER
        self.trackers = (trackers[0], trackers[1], trackers[2])

    # -- receiving --------------------------------------------------------------------

    def largest(self, index: int) -> int:
        """Largest packet number received in a space (-1: none)."""
        return self.trackers[index].largest

    def is_duplicate(self, index: int, pn: int) -> bool:
        return self.trackers[index].is_duplicate(pn)

    def on_packet(
        self, index: int, pn: int, ack_eliciting: bool, now: float, ce: bool = False
    ) -> None:
        """A packet was processed (never call it for a dropped packet); ``ce``: it
        arrived marked ECN-CE (acknowledged at once, RFC 9000 §13.2.1 and
        draft-ietf-quic-ack-frequency §6.3, see :class:`~quic.ack.AckTracker`)."""
        self.trackers[index].on_packet(pn, ack_eliciting, now, ce)

    def on_ack_frequency(
        self,
        sequence_number: int,
        threshold: int,
        request_max_ack_delay: int,
        reordering: int,
        now: float,
    ) -> None:
        """The peer's ACK_FREQUENCY (draft-ietf-quic-ack-frequency §4); delay in µs.

        PROTOCOL_VIOLATION when we did not send min_ack_delay (the extension is not
        negotiated), or when the requested delay is below our min_ack_delay or is
        2^14 ms or more (draft §4: invalid for max_ack_delay, RFC 9000 §18.2).
        """
        minimum = self._require_extension("ACK_FREQUENCY")
        if request_max_ack_delay < minimum or request_max_ack_delay >= _MAX_ACK_DELAY_US:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                f"ACK_FREQUENCY Requested Max Ack Delay {request_max_ack_delay} µs invalid",
                FrameType.ACK_FREQUENCY,
            )
        self.trackers[2].on_ack_frequency(
            sequence_number, threshold, request_max_ack_delay / 1_000_000, reordering, now
        )

    def on_immediate_ack(self) -> None:
        """The peer's IMMEDIATE_ACK (draft §5): acknowledge the packet at once."""
        self._require_extension("IMMEDIATE_ACK")
        self.trackers[2].request_immediate_ack()

    def ack_at_once(self) -> None:
        """Acknowledge the 1-RTT packet being processed at once instead of within
        ``max_ack_delay`` (RFC 9000 §13.2.1 asks for no later; sooner is always allowed)."""
        self.trackers[2].request_immediate_ack()

    def _require_extension(self, name: str) -> int:
        if self.min_ack_delay is None:
            frame_type = (
                FrameType.ACK_FREQUENCY if name == "ACK_FREQUENCY" else FrameType.IMMEDIATE_ACK
            )
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                f"{name} without our min_ack_delay transport parameter",
                frame_type,
            )
        return self.min_ack_delay

    # -- timers -----------------------------------------------------------------------

    def due(self, index: int, now: float) -> bool:
        """An ACK frame must go out in this space now."""
        return self.trackers[index].wants_ack(now)

    def deadline(self, index: int) -> float | None:
        return self.trackers[index].deadline

    def earliest_deadline(self, spaces: Sequence[Space]) -> float | None:
        """The earliest ACK deadline among the spaces we can send in (those of
        ``spaces``, one per tracker, whose ``write`` keys are set)."""
        # the three spaces unrolled: asked after every build (issue 10)
        initial, handshake, application = self.trackers
        earliest = application.deadline
        if earliest is not None and spaces[2].write is None:
            earliest = None
        deadline = handshake.deadline
        if (
            deadline is not None
            and (earliest is None or deadline < earliest)
            and spaces[1].write is not None
        ):
            earliest = deadline
        deadline = initial.deadline
        if (
            deadline is not None
            and (earliest is None or deadline < earliest)
            and spaces[0].write is not None
        ):
            earliest = deadline
        return earliest

    def should_include(self, index: int, due: bool, eliciting: bool) -> bool:
        """Put an ACK into a packet of this space? (RFC 9000 §13.2.1)

        Always when due or pending on its timer; in an ack-eliciting packet also when
        something arrived since the last ACK we sent (else it repeats the same ranges).
        """
        tracker = self.trackers[index]
        if tracker.largest < 0:  # has_ranges(), without the call: nothing received
            return False
        return due or tracker.deadline is not None or (eliciting and tracker.fresh)

    # -- sending ----------------------------------------------------------------------

    def write(
        self,
        asm: PacketAssembler,
        index: int,
        now: float,
        reserve: int = 0,
        ecn: tuple[int, int, int] | None = None,
    ) -> bool:
        """Write the space's ACK frame into the open packet; True if written.

        An ACK that is not due (``reserve`` > 0) gives way when it would leave less
        than ``reserve`` bytes of room for the frame that wants them. With ``ecn``
        counts it is an ACK_ECN frame (RFC 9000 §13.4.1, §19.3.2).
        """
        tracker = self.trackers[index]
        ranges = tracker.received.ack_ranges_descending(MAX_ACK_RANGES)  # ranges(), inline
        if not ranges:
            return False
        elapsed = now - tracker.largest_time  # ack_delay(), inline: once per ACK written
        delay = int(elapsed * 1_000_000) >> self._ack_delay_exponent if elapsed > 0.0 else 0
        frame = encode_ack_frame(ranges, delay, ecn)
        room = asm.room
        if len(frame) > room:
            ranges = ranges[:_SHORT_ACK_RANGES]
            frame = encode_ack_frame(ranges, delay, ecn)
            if len(frame) > room:
                ranges = ranges[:1]
                frame = encode_ack_frame(ranges, delay, ecn)
                if len(frame) > room:
                    return False
        if reserve and len(frame) > room - reserve:
            return False  # not due: it waits for its timer or the next packet with room
        asm.push(frame)
        largest = ranges[0][1]
        # RFC 9000 §13.2.4: once an ACK of ours is acknowledged, stop repeating it
        asm.packet.handlers.append((tracker.on_ack_fate, (largest,)))
        tracker.ack_eliciting_since_ack = 0  # tracker.on_ack_sent(largest), inline
        tracker.deadline = None
        tracker.fresh = False
        if largest > tracker.largest_acked_sent:
            tracker.largest_acked_sent = largest
        return True
