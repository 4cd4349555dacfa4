"""The records of loss recovery (RFC 9002 Appendix A.1, A.3): what
:class:`quic.recovery.LossRecovery` tracks and returns.

Theory of operation
-------------------
:class:`SentPacket` is one packet sent, as loss detection sees it (A.1.1): its space,
number, size, whether it elicits an ACK and counts in flight, the frame handlers told
its fate, and the delivery-rate state a BBR controller stamps on it.
:class:`PacketSpaceRecovery` is the loss-detection state of one packet number space
(A.3): the packets in flight by number, the largest sent and acknowledged, the loss
time, the skipped numbers, the ACK-only packets (bounded) and the packets lately
declared lost (to notice a spurious loss, RFC 9438 §4.9). :data:`SPENT_SPACE` stands in
for a discarded Initial or Handshake space once a connection's keys rest: one
read-only state shared by every connection (a write raises). :class:`AckResult` and
:class:`ProbeRequest` are what an ACK and a loss-detection timeout yield. No logic of
loss detection lives here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import Any

from quic.rangeset import RangeSet

__all__ = [
    "NO_PROBE",
    "SPENT_SPACE",
    "AckResult",
    "FrameHandler",
    "PacketSpace",
    "PacketSpaceRecovery",
    "ProbeRequest",
    "SentPacket",
    "fire_acked",
    "fire_lost",
]

FrameHandler = tuple[Callable[..., None], tuple[Any, ...]]


def fire_acked(packets: list[SentPacket]) -> None:
    """Call ``handler(True, *args)`` for every handler of ``packets``, in order: what
    :class:`~quic.recovery.LossRecovery` does with the packets an ACK frame
    acknowledged, unless its ``fire_acked`` was replaced."""
    for packet in packets:
        fate = packet.fate
        if fate is not None:
            fate(True, *packet.args)
        for handler, args in packet.handlers:
            handler(True, *args)


def fire_lost(packets: Iterable[SentPacket]) -> None:
    """Call ``handler(False, *args)`` for every handler of ``packets`` (the flat one
    first), in order: the packets are lost (or dropped with notice)."""
    for packet in packets:
        fate = packet.fate
        if fate is not None:
            fate(False, *packet.args)
        for handler, args in packet.handlers:
            handler(False, *args)


class PacketSpace(IntEnum):
    """Packet number spaces (RFC 9000 §12.3); 0-RTT shares APPLICATION."""

    INITIAL = 0
    HANDSHAKE = 1
    APPLICATION = 2


class SentPacket:
    """One sent packet as tracked by loss recovery (RFC 9002 A.1.1)."""

    __slots__ = (
        "ack_eliciting",
        "args",
        "delivered",
        "delivered_time",
        "ecn_marked",
        "fate",
        "first_sent_time",
        "handlers",
        "in_flight",
        "is_app_limited",
        "is_crypto",
        "loss_event",
        "packet_number",
        "size",
        "space",
        "time_sent",
    )

    def __init__(
        self,
        space: int,
        packet_number: int,
        size: int = 0,
        ack_eliciting: bool = True,
        in_flight: bool = True,
        is_crypto: bool = False,
    ) -> None:
        self.space = space
        self.packet_number = packet_number
        self.size = size
        self.ack_eliciting = ack_eliciting
        self.in_flight = in_flight
        self.is_crypto = is_crypto
        self.time_sent = 0.0  # set by LossRecovery.on_packet_sent
        self.handlers: list[FrameHandler] = []
        # One more handler kept flat, told before ``handlers`` (None: none): the bulk
        # send loop's STREAM frame, without a list and a (handler, args) tuple per
        # packet, objects the cyclic GC tracks while the packet is in flight
        self.fate: Callable[..., None] | None = None
        self.args: tuple[Any, ...] = ()
        # Delivery-rate state at send time, stamped by a controller that samples it
        # (BBR, :mod:`quic.cc_bbr`); delivered = -1: not stamped.
        self.delivered = -1
        self.delivered_time = 0.0
        self.first_sent_time = 0.0
        self.is_app_limited = False
        # the controller's loss event this packet was declared lost in (0: none; see
        # CongestionController.on_spurious_loss)
        self.loss_event = 0
        # sent ECT(0) once the path was validated: counted by EcnController.on_ack_frame
        # when acknowledged, instead of a fate handler per packet (quic.conn_ecn)
        self.ecn_marked = False

    def frame_handlers(self) -> list[FrameHandler]:
        """Every handler, the flat one (``fate``) first: a new list (not for hot paths)."""
        if self.fate is None:
            return list(self.handlers)
        return [(self.fate, self.args), *self.handlers]

    def __repr__(self) -> str:
        return (
            f"SentPacket(space={self.space}, pn={self.packet_number}, size={self.size}, "
            f"t={self.time_sent}, ack_eliciting={self.ack_eliciting}, "
            f"in_flight={self.in_flight})"
        )


class PacketSpaceRecovery:
    """Loss detection state of one packet number space (RFC 9002 A.3)."""

    __slots__ = (
        "ack_eliciting_in_flight",
        "ack_only",
        "ecn_ce_count",
        "has_skipped",
        "largest_acked",
        "largest_sent",
        "loss_time",
        "lost",
        "lowest_unacked",
        "sent",
        "skipped",
        "time_of_last_ack_eliciting",
    )

    def __init__(self) -> None:
        self.sent: dict[int, SentPacket] = {}
        self.largest_sent = -1
        self.largest_acked = -1  # -1: nothing acknowledged yet
        self.lowest_unacked = 0  # no tracked packet number is below this
        self.loss_time: float | None = None
        self.time_of_last_ack_eliciting = 0.0
        self.ack_eliciting_in_flight = 0
        self.ecn_ce_count = 0
        self.skipped = RangeSet()
        self.has_skipped = False  # bool(skipped) without RangeSet.__bool__'s call (per ACK)
        # packet numbers of non-ack-eliciting packets sent, oldest first (some may have
        # left ``sent`` already: acknowledged or lost)
        # (a deque from the first one, None again when ``sent`` empties, every entry
        # then being stale, or when the space is discarded: memory per idle
        # connection, issue 10)
        self.ack_only: deque[int] | None = None
        # in-flight packets declared lost lately, in declaration order: an ACK that
        # covers one later shows the loss was spurious (RFC 9438 §4.9); bounded
        self.lost: dict[int, SentPacket] = {}

    def advance_lowest_unacked(self) -> None:
        """Move ``lowest_unacked`` up to the smallest tracked packet number."""
        sent = self.sent
        if not sent:
            self.lowest_unacked = self.largest_sent + 1
            self.ack_only = None  # nothing tracked: its entries are all stale
            return
        pn = self.lowest_unacked
        while pn not in sent:
            pn += 1
        self.lowest_unacked = pn


class _SpentSpace(PacketSpaceRecovery):
    """The loss-detection state of a discarded Initial or Handshake space (RFC 9002
    §6.4), one shared by every connection (issue 10: ~530 bytes per space an idle
    connection does not keep): nothing in flight, no loss or PTO time. Nothing is sent
    in its space any more, so it is only read; a change would be a bug, and raises (the
    connection closes with INTERNAL_ERROR) rather than touching the other connections'
    state. Its tables are read-only mappings."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise RuntimeError(f"{name} set on a discarded packet number space")


def _spent_space() -> PacketSpaceRecovery:
    fresh = PacketSpaceRecovery()
    spent = object.__new__(_SpentSpace)
    for name in PacketSpaceRecovery.__slots__:
        value = getattr(fresh, name)
        if isinstance(value, dict):
            value = MappingProxyType({})
        object.__setattr__(spent, name, value)
    return spent


#: The one shared state of every discarded Initial and Handshake space.
SPENT_SPACE = _spent_space()


@dataclass(slots=True)
class AckResult:
    """Outcome of one ACK frame."""

    acked: list[SentPacket] = field(default_factory=list)  # newly acknowledged, pn order
    lost: list[SentPacket] = field(default_factory=list)  # newly declared lost, pn order
    rtt_sample: float | None = None  # latest_rtt if this ACK produced a sample


@dataclass(frozen=True, slots=True)
class ProbeRequest:
    """What :meth:`LossRecovery.on_loss_detection_timeout` asks the connection to send.

    ``count`` ack-eliciting probe datagrams in ``space`` (RFC 9002 §6.2.4), bypassing
    the congestion window (§7.5); ``other_spaces`` also have ack-eliciting data in
    flight and should get a coalesced probe too. ``pad_initial`` marks the client's
    anti-deadlock Initial, which must fill a 1200-byte datagram (§6.2.2.1). ``lost``
    lists packets declared lost by the time threshold (handlers already called).
    """

    space: int | None = None
    count: int = 0
    other_spaces: tuple[int, ...] = ()
    pad_initial: bool = False
    lost: tuple[SentPacket, ...] = ()


NO_PROBE = ProbeRequest()
