"""What loss recovery makes of packets it declared lost (RFC 9002 §7.6.2, RFC 9438
§4.9): :class:`LostPackets`, owned by :class:`quic.recovery.LossRecovery`.

Theory of operation
-------------------
:meth:`LostPackets.record` takes each batch of packets declared lost in one packet
number space (in packet number order) and does two things with it:

* remembers the in-flight ones in the space's ``lost`` dict (declaration order), at
  most ``max_lost`` of them, the oldest forgotten first, so that a later ACK that
  covers one shows the loss was spurious;
* says whether the batch shows persistent congestion (§7.6.2), evaluated within the
  acknowledged space only (allowed by §7.6.2): two lost ack-eliciting packets, both
  sent after the first RTT sample and after the last change of the peer's address
  (RFC 9000 §9.4: packets of the old path say nothing of the new one), more than the
  persistent congestion duration apart, with no packet number between them
  acknowledged. Batches of lost packets are always a prefix of the outstanding
  packets, so a gap in packet numbers inside a batch (other than a skipped number) can
  only be a packet acknowledged earlier.

:meth:`LostPackets.find_spurious` takes the ranges of an ACK frame and hands back (and
forgets) the remembered packets they cover; packets sent more than a few PTOs ago are
forgotten first (their ACK would come too late to be a reordering). The owner reports
them to the congestion controller's ``on_spurious_loss`` (RFC 9438 §4.9: CUBIC undoes a
reduction that reordering caused) and acts on persistent congestion itself: the
component calls no controller, so a controller replaced on migration needs no update
here. The tables live in :class:`~quic.recovery_state.PacketSpaceRecovery` (``lost``,
``skipped``), passed in; the component holds only the bound, the RTT estimator and the
time of the last path change.
"""

from __future__ import annotations

from collections.abc import Sequence

from quic.recovery_state import PacketSpaceRecovery, SentPacket
from quic.rtt import RttEstimator

__all__ = [
    "DEFAULT_MAX_LOST_TRACKED",
    "K_PERSISTENT_CONGESTION_THRESHOLD",
    "LostPackets",
]

K_PERSISTENT_CONGESTION_THRESHOLD = 3  # RFC 9002 §7.6.1
#: Packets declared lost remembered per space to notice a spurious loss (RFC 9438 §4.9).
DEFAULT_MAX_LOST_TRACKED = 64
#: ... for this many probe timeout bases (RFC 9002 §6.2.1) after they were sent.
_LOST_MEMORY_PTOS = 3


class LostPackets:
    """Lost-packet memory and persistent congestion of one connection path."""

    __slots__ = ("max_lost", "path_changed_at", "rtt")

    def __init__(self, rtt: RttEstimator, max_lost: int = DEFAULT_MAX_LOST_TRACKED) -> None:
        """``max_lost``: lost packets remembered per space (0: none, no spurious loss is
        ever noticed)."""
        if max_lost < 0:
            raise ValueError("max_lost must not be negative")
        self.rtt = rtt
        self.max_lost = max_lost
        # when the peer's address last changed: packets sent before it went on the old
        # path, and their loss says nothing of the new one (RFC 9000 §9.4)
        self.path_changed_at: float | None = None

    def record(self, st: PacketSpaceRecovery, lost: list[SentPacket], max_ack_delay: float) -> bool:
        """Remember the in-flight packets of ``lost`` (one batch of ``st``, packet
        number order) to notice a later ACK (RFC 9438 §4.9); True if the batch shows
        persistent congestion (RFC 9002 §7.6.2; ``max_ack_delay`` in seconds)."""
        max_lost = self.max_lost
        if max_lost:
            remembered = st.lost
            for packet in lost:
                if packet.in_flight:
                    remembered[packet.packet_number] = packet
            while len(remembered) > max_lost:
                del remembered[next(iter(remembered))]
        return self._in_persistent_congestion(st, lost, max_ack_delay)

    def _in_persistent_congestion(
        self, st: PacketSpaceRecovery, lost: list[SentPacket], max_ack_delay: float
    ) -> bool:
        """RFC 9002 §7.6.2 within one space; ``lost`` is in packet number order."""
        rtt = self.rtt
        first_sample = rtt.first_rtt_sample
        if first_sample is None or len(lost) < 2:
            return False
        changed = self.path_changed_at
        duration = (rtt.pto_base() + max_ack_delay) * K_PERSISTENT_CONGESTION_THRESHOLD
        skipped = st.skipped
        run_start: float | None = None
        prev_pn = lost[0].packet_number - 1
        for packet in lost:
            pn = packet.packet_number
            if pn != prev_pn + 1 and not (skipped and skipped.covers(prev_pn + 1, pn)):
                run_start = None  # a packet in between was acknowledged
            prev_pn = pn
            if not packet.ack_eliciting or packet.time_sent <= first_sample:
                continue
            if changed is not None and packet.time_sent <= changed:
                continue  # sent on the old path (RFC 9000 §9.4)
            if run_start is None:
                run_start = packet.time_sent
            elif packet.time_sent - run_start > duration:
                return True
        return False

    def find_spurious(
        self, st: PacketSpaceRecovery, ranges: Sequence[tuple[int, int]], now: float
    ) -> list[SentPacket]:
        """Remembered lost packets of ``st`` that ``ranges`` (an ACK frame's, largest
        first) acknowledge, and forget them; packets sent more than a few PTOs ago are
        forgotten first. At most ``max_lost`` entries, each a binary search."""
        lost = st.lost
        horizon = now - _LOST_MEMORY_PTOS * self.rtt.pto_base()
        while lost:
            oldest = next(iter(lost.values()))
            if oldest.time_sent >= horizon:
                break
            del lost[oldest.packet_number]
        found: list[SentPacket] = []
        if not lost or ranges[0][1] < min(lost) or ranges[-1][0] > max(lost):
            return found
        last = len(ranges) - 1
        for pn in list(lost):
            lo_i, hi_i = 0, last  # ranges are descending: find the first with lo <= pn
            while lo_i < hi_i:
                mid = (lo_i + hi_i) // 2
                if ranges[mid][0] <= pn:
                    hi_i = mid
                else:
                    lo_i = mid + 1

            lo, hi = ranges[lo_i]
            if lo <= pn <= hi:
                found.append(lost.pop(pn))
        return found
