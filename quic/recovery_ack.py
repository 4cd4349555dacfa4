"""ACK frame processing of :class:`~quic.recovery.LossRecovery` (RFC 9002 A.7).

Moved out of :mod:`quic.recovery` by responsibility (module size): the functions
taking ``self`` are :class:`~quic.recovery.LossRecovery` methods, bound there as class
attributes (``LossRecovery._on_ack_all = on_ack_all``: no extra call per ACK frame),
and read and write its state as methods do. :meth:`LossRecovery.on_ack_received`
chooses among them; loss detection (:meth:`LossRecovery._detect_lost`), shared with the
timer, stays there. See :mod:`quic.recovery` for the data structures and the paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat, takewhile
from operator import attrgetter
from typing import TYPE_CHECKING

from quic.errors import QuicProtocolError, TransportErrorCode
from quic.recovery_state import AckResult, PacketSpaceRecovery, SentPacket, fire_lost

if TYPE_CHECKING:
    from quic.recovery import LossRecovery

__all__ = ["on_ack_all", "on_ack_prefix", "on_ack_ranges", "remove_acked", "validate_ranges"]

_INITIAL = 0
_HANDSHAKE = 1
_ACK_ELICITING = attrgetter("ack_eliciting")


def on_ack_all(
    self: LossRecovery,
    st: PacketSpaceRecovery,
    space: int,
    ack_delay: float,
    now: float,
    ecn_ce_count: int | None,
) -> AckResult:
    """:func:`on_ack_ranges` for one range from at most ``lowest_unacked`` to
    ``largest_sent``, no skipped packet number and no remembered lost packet: nothing
    to validate, every tracked packet acknowledged (in packet number order: the
    dict's), none left to declare lost or to find spurious. The same steps in the
    same order, without walking the range (issue 10: one such ACK per round trip)."""
    largest_acked = st.largest_sent
    if largest_acked > st.largest_acked:
        st.largest_acked = largest_acked
    if space == _HANDSHAKE:
        self._handshake_acked = True  # RFC 9002 A.8: a Handshake ACK validates us
    sent = st.sent
    acked = list(sent.values())
    sent.clear()
    # ack_eliciting_in_flight counts the tracked packets that are both: none is left
    # (no loop); an ack-eliciting one not in flight is looked for only without them
    ack_eliciting = st.ack_eliciting_in_flight > 0 or any(map(_ACK_ELICITING, acked))
    st.ack_eliciting_in_flight = 0
    st.lowest_unacked = largest_acked + 1  # advance_lowest_unacked, nothing tracked
    st.ack_only = None
    return _settle(
        self, st, space, acked, ack_eliciting, largest_acked, ack_delay, now, ecn_ce_count
    )


def on_ack_ranges(
    self: LossRecovery,
    space: int,
    ranges: Sequence[tuple[int, int]],
    ack_delay: float,
    now: float,
    ecn_ce_count: int | None = None,
) -> AckResult:
    """:meth:`on_ack_received`, any ACK frame (RFC 9002 A.7)."""
    st = self.spaces[space]
    result = AckResult()
    if not ranges:
        return result
    largest_acked = ranges[0][1]
    if len(ranges) != 1 or largest_acked > st.largest_sent or st.has_skipped:
        validate_ranges(st, ranges)  # it has nothing to check otherwise
    if largest_acked > st.largest_acked:
        st.largest_acked = largest_acked
    if space == _HANDSHAKE:
        self._handshake_acked = True  # RFC 9002 A.8: a Handshake ACK validates us

    acked, ack_eliciting = remove_acked(st, ranges)
    if st.lost:
        spurious = self.losses.find_spurious(st, ranges, now)
        if spurious:
            self.congestion.on_spurious_loss(spurious, now)  # RFC 9438 §4.9
    if not acked:
        return result
    result.acked = acked
    largest = acked[-1]
    rtt = self.rtt

    # RFC 9002 §5.1: sample only if the largest acknowledged is newly acknowledged
    # and at least one newly acknowledged packet is ack-eliciting.
    if ack_eliciting and largest.packet_number == largest_acked:
        latest_rtt = now - largest.time_sent
        if space == _INITIAL:
            ack_delay = 0.0  # RFC 9002 §5.3: Initial ACKs are not delayed
        rtt.update(
            latest_rtt,
            ack_delay,
            now,
            self.max_ack_delay if self.handshake_confirmed else None,
        )
        result.rtt_sample = rtt.latest_rtt

    # RFC 9002 §7.1, B.7: an increased ECN-CE count is a congestion event.
    if ecn_ce_count is not None and ecn_ce_count > st.ecn_ce_count:
        st.ecn_ce_count = ecn_ce_count
        self.congestion.on_ecn_ce(largest.time_sent, now)

    lost = self._detect_lost(st, now)
    if lost:
        result.lost = lost
        self._on_packets_lost(st, lost, now)
    self.congestion.on_packets_acked(acked, now)

    # RFC 9002 §6.2.1: a client unsure of its address validation keeps the backoff.
    if not self.is_client or self._handshake_acked or self.handshake_confirmed:
        self.pto_count = 0  # peer_completed_address_validation, inline (per ACK)
    self._pto_anchor = now

    self.fire_acked(acked)
    if lost:
        fire_lost(lost)
    return result


def validate_ranges(st: PacketSpaceRecovery, ranges: Sequence[tuple[int, int]]) -> None:
    largest_sent = st.largest_sent
    skipped = st.skipped
    for lo, hi in ranges:
        if hi > largest_sent:
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                f"ACK for unsent packet {hi} (largest sent {largest_sent})",
            )
        if skipped and skipped.intersects(lo, hi + 1):
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION, "ACK for a skipped packet number"
            )


def remove_acked(
    st: PacketSpaceRecovery, ranges: Sequence[tuple[int, int]]
) -> tuple[list[SentPacket], bool]:
    """Pop newly acknowledged packets, in increasing packet number order.

    Also returns whether any of them is ack-eliciting.
    """
    sent = st.sent
    acked: list[SentPacket] = []
    if not sent:
        return acked, False
    lowest = st.lowest_unacked
    pop = sent.pop
    append = acked.append
    extend = acked.extend
    for lo, hi in reversed(ranges):  # ascending
        if hi < lowest:
            continue
        if lo < lowest:
            lo = lowest
        if hi - lo < len(sent):  # popped in C; a number not tracked gives None
            extend(filter(None, map(pop, range(lo, hi + 1), repeat(None))))
        else:
            for pn in [pn for pn in sent if lo <= pn <= hi]:
                append(pop(pn))
        if not sent:
            break
    ack_eliciting = _left_flight(st, acked)
    st.advance_lowest_unacked()
    return acked, ack_eliciting


def on_ack_prefix(
    self: LossRecovery,
    st: PacketSpaceRecovery,
    space: int,
    largest_acked: int,
    ack_delay: float,
    now: float,
    ecn_ce_count: int | None,
) -> AckResult:
    """:func:`on_ack_ranges` for one range from at most ``lowest_unacked`` to
    ``largest_acked``, at least ``lowest_unacked`` and at least the largest acknowledged
    before, below ``largest_sent``; no skipped packet number, no remembered lost packet:
    nothing to validate, the tracked packets up to ``largest_acked`` acknowledged (a
    prefix of the dict), none left at or below the largest acknowledged to declare lost
    (RFC 9002 A.10 looks only there), none to find spurious. The same steps in the same
    order (issue 10: the ACK that waited for a ping-pong's reply, which is tracked
    when the ACK is processed, acknowledges all but that reply)."""
    st.largest_acked = largest_acked
    if space == _HANDSHAKE:
        self._handshake_acked = True  # RFC 9002 A.8: a Handshake ACK validates us
    sent = st.sent
    pop = sent.pop
    lowest = st.lowest_unacked
    if largest_acked - lowest < len(sent):  # popped in C, as remove_acked does
        acked = list(filter(None, map(pop, range(lowest, largest_acked + 1), repeat(None))))
    else:  # numbers far apart: the tracked ones, from the oldest (dict order)
        acked = [pop(pn) for pn in list(takewhile(largest_acked.__ge__, sent))]
    ack_eliciting = _left_flight(st, acked)
    st.lowest_unacked = largest_acked + 1
    st.advance_lowest_unacked()
    return _settle(
        self, st, space, acked, ack_eliciting, largest_acked, ack_delay, now, ecn_ce_count
    )


def _settle(
    self: LossRecovery,
    st: PacketSpaceRecovery,
    space: int,
    acked: list[SentPacket],
    ack_eliciting: bool,
    largest_acked: int,
    ack_delay: float,
    now: float,
    ecn_ce_count: int | None,
) -> AckResult:
    """The rest of :func:`on_ack_all` and :func:`on_ack_prefix` once ``acked`` (not
    empty, oldest first) left the space: :func:`on_ack_ranges`' steps when nothing is
    tracked at or below ``largest_acked`` (no loss to detect, RFC 9002 A.10)."""
    largest = acked[-1]
    sample = None
    if ack_eliciting and largest.packet_number == largest_acked:  # RFC 9002 §5.1
        rtt = self.rtt
        rtt.update(
            now - largest.time_sent,
            0.0 if space == _INITIAL else ack_delay,  # RFC 9002 §5.3
            now,
            self.max_ack_delay if self.handshake_confirmed else None,
        )
        sample = rtt.latest_rtt
    if ecn_ce_count is not None and ecn_ce_count > st.ecn_ce_count:  # RFC 9002 §7.1
        st.ecn_ce_count = ecn_ce_count
        self.congestion.on_ecn_ce(largest.time_sent, now)
    st.loss_time = None  # _detect_lost: nothing tracked at or below largest_acked
    self.congestion.on_packets_acked(acked, now)
    if not self.is_client or self._handshake_acked or self.handshake_confirmed:
        self.pto_count = 0  # RFC 9002 §6.2.1
    self._pto_anchor = now
    self.fire_acked(acked)
    return AckResult(acked, [], sample)


def _left_flight(st: PacketSpaceRecovery, acked: list[SentPacket]) -> bool:
    """Whether any of ``acked`` (just removed from ``st``) is ack-eliciting; those in
    flight leave ``st.ack_eliciting_in_flight``."""
    ack_eliciting = False
    for packet in acked:
        if packet.ack_eliciting:
            ack_eliciting = True
            if packet.in_flight:
                st.ack_eliciting_in_flight -= 1
    return ack_eliciting
