"""Loss detection and probe timeouts (RFC 9002 §6, Appendix A).

Theory of operation
-------------------
The connection registers every packet it sends (ACK-only ones included) as a
:class:`SentPacket` with :meth:`LossRecovery.on_packet_sent`. Each frame writer appends
``(handler, args)`` to ``SentPacket.handlers``; when the packet's fate is known the
recovery calls ``handler(True, *args)`` (acknowledged) or ``handler(False, *args)``
(declared lost). Every packet is reported exactly once: it leaves the tracking dict at
that moment, so a later ACK for a packet already declared lost (spurious loss) calls
no handler. Such an ACK is still noticed: the owned
:class:`~quic.lost_packets.LostPackets` remembers a few packets declared lost lately,
and those an ACK frame covers go to the controller's ``on_spurious_loss`` (RFC 9438
§4.9). All recovery and congestion state is updated before any handler runs, so a
handler may send or raise freely.

Per packet number space (:class:`PacketSpaceRecovery`) the sent packets live in a dict
keyed by packet number, in sending (= packet number) order, together with
``lowest_unacked`` (no tracked packet is below it) and ``largest_sent``. This keeps
ACK processing proportional to what changes:

* an ACK range ``[lo, hi]`` is clipped to ``[max(lo, lowest_unacked), hi]`` and walked
  by packet number, or, if that is longer than the number of tracked packets, by
  scanning the dict; cumulative ranges like ``[0, largest]`` thus cost nothing for
  packets acknowledged long ago;
* loss detection (§6.1) walks up from ``lowest_unacked`` and stops at the first packet
  that is not yet lost: send times grow with packet numbers, so both thresholds
  select a prefix of the outstanding packets;
* one range from at most ``lowest_unacked`` to ``largest_sent`` (everything in flight
  acknowledged: a ping-pong, a request and its response), with no skipped number and
  no remembered lost packet, takes every tracked packet at once, with nothing to
  validate, walk or declare lost (``_on_ack_all``; the same outcome as the general
  ``_on_ack_ranges``, checked by ``fuzz/test_fuzz_ack_all.py``);
* one range from at most ``lowest_unacked`` to below ``largest_sent``, not below the
  largest acknowledged before, under the same conditions (the ping-pong's ACK that
  waited for the reply, processed once the reply is tracked) takes the tracked
  packets up to it (``_on_ack_prefix``): none is left at or below the largest
  acknowledged, so none is lost (A.10 looks only there). The paths live in
  :mod:`quic.recovery_ack`.

Packet numbers must be registered in increasing order with non-decreasing times.
Deliberately skipped packet numbers (optimistic-ACK defence, RFC 9000 §21.4) can be
declared with :meth:`LossRecovery.on_packet_number_skipped`; an ACK that covers one, or
any number above ``largest_sent``, raises ``QuicProtocolError(PROTOCOL_VIOLATION)``
(RFC 9000 §13.1) before any state changes.

A PTO asks for two probe datagrams, or for one when less than a datagram is in flight
in the application space after confirmation (§6.2.4 allows one to two: a second guards
a flight against one lost datagram; a burst of small requests to an overloaded peer
would only give it twice the PINGs to read and acknowledge).

The loss detection timer (§6.2, A.8) is not stored: :meth:`LossRecovery.
get_loss_detection_timer` derives it from the state and the flags the connection sets
(``handshake_confirmed``, ``has_handshake_keys``, ``amplification_limited``), so
changing a flag needs no extra call. The only remembered time is the anchor of the
client's anti-deadlock PTO (§6.2.2.1), the time of the last event that re-armed the
timer. :meth:`LossRecovery.on_loss_detection_timeout` is safe to call early: it does
nothing until the timer is due.

Each batch of lost packets is one congestion event (B.8);
:class:`~quic.lost_packets.LostPackets` remembers it and says whether it shows
persistent congestion (§7.6.2).

The table of sent packets is bounded even when the peer never acknowledges anything
(RFC 9000 §13.2.4 lets us stop tracking): per space at most ``max_ack_only`` packets
that are not ack-eliciting (ACK-only; the connection keeps them only to learn that the
peer saw our ACKs) are tracked, the oldest being dropped first (their handlers see
"lost", which for an ACK frame means nothing to repair); and at most ``max_sent``
packets of any kind, beyond which the oldest is declared lost (congestion event,
handlers called, its frames sent again). An acknowledgment that arrives for a dropped
record later is ignored like any spurious loss. A FIFO of the ACK-only packet numbers
(stale entries skipped when popped) finds the oldest in O(1) amortised.

Discarding a space (§6.4) drops its packets without calling their handlers: only
CRYPTO, ACK, PING, PADDING and CONNECTION_CLOSE can be in Initial and Handshake
packets, and their owners are discarded together with the keys. For 0-RTT rejection
pass ``notify_lost=True`` so that stream data is queued again. Once the connection
rests (no packet of the space can still be in processing), a discarded Initial or
Handshake space is retired (:meth:`LossRecovery.retire_space`): its state gives way to
one shared, empty, read-only object (issue 10, memory per idle connection).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from quic.congestion import CongestionController
from quic.lost_packets import (
    DEFAULT_MAX_LOST_TRACKED,
    K_PERSISTENT_CONGESTION_THRESHOLD,
    LostPackets,
)
from quic.recovery_ack import on_ack_all, on_ack_prefix, on_ack_ranges
from quic.recovery_state import (
    NO_PROBE,
    SPENT_SPACE,
    AckResult,
    FrameHandler,
    PacketSpace,
    PacketSpaceRecovery,
    ProbeRequest,
    SentPacket,
    fire_acked,
    fire_lost,
)
from quic.rtt import RttEstimator

__all__ = [
    "DEFAULT_MAX_ACK_ONLY_TRACKED",
    "DEFAULT_MAX_LOST_TRACKED",
    "DEFAULT_MAX_SENT_TRACKED",
    "K_PACKET_THRESHOLD",
    "K_PERSISTENT_CONGESTION_THRESHOLD",
    "NO_PROBE",
    "AckResult",
    "FrameHandler",
    "LossRecovery",
    "LostPackets",
    "PacketSpace",
    "PacketSpaceRecovery",
    "ProbeRequest",
    "SentPacket",
]

K_PACKET_THRESHOLD = 3  # RFC 9002 §6.1.1
_MAX_BACKOFF_EXPONENT = 30  # keeps 2**pto_count finite; the idle timeout ends it first
#: Non-ack-eliciting (ACK-only) packets tracked per space (RFC 9000 §13.2.4).
DEFAULT_MAX_ACK_ONLY_TRACKED = 256
#: Sent packets tracked per space; beyond it the oldest is declared lost.
DEFAULT_MAX_SENT_TRACKED = 16384

_INITIAL = 0
_HANDSHAKE = 1
_APPLICATION = 2
_SPACES = (_INITIAL, _HANDSHAKE, _APPLICATION)


class LossRecovery:
    """Loss detection and PTO for one connection path (RFC 9002 §6, Appendix A).

    Flags the connection keeps up to date (plain attributes, read by the timer):
    ``handshake_confirmed`` (RFC 9001 §4.1.2), ``has_handshake_keys`` and
    ``amplification_limited`` (a server that may not send more until it receives,
    RFC 9000 §8.1). ``max_ack_delay`` is the peer's transport parameter in seconds.
    """

    __slots__ = (
        "_handshake_acked",
        "_pto_anchor",
        "amplification_limited",
        "congestion",
        "fire_acked",
        "handshake_confirmed",
        "has_handshake_keys",
        "is_client",
        "losses",
        "max_ack_delay",
        "max_ack_only",
        "max_probes",
        "max_sent",
        "pto_count",
        "rtt",
        "spaces",
        "waiting_ack",
    )

    def __init__(
        self,
        congestion: CongestionController,
        rtt: RttEstimator | None = None,
        max_ack_delay: float = 0.025,
        *,
        is_client: bool,
        max_probes: int = 2,
        max_ack_only: int = DEFAULT_MAX_ACK_ONLY_TRACKED,
        max_sent: int = DEFAULT_MAX_SENT_TRACKED,
        max_lost: int = DEFAULT_MAX_LOST_TRACKED,
    ) -> None:
        """``max_ack_only`` and ``max_sent`` bound the tracked packets per space (see the
        module documentation), and ``max_lost`` the lost packets remembered (see
        :class:`~quic.lost_packets.LostPackets`)."""
        if max_sent < 1 or max_ack_only < 0:
            raise ValueError("max_sent must be positive, max_ack_only not negative")
        self.max_ack_only = max_ack_only
        self.max_sent = max_sent
        self.congestion = congestion
        if rtt is None:
            rtt = RttEstimator()
        self.rtt = rtt
        self.losses = LostPackets(rtt, max_lost)  # losses remembered, §7.6.2
        self.max_ack_delay = max_ack_delay  # RFC 9000 §18.2 default 25 ms
        self.is_client = is_client
        self.max_probes = max_probes  # RFC 9002 §6.2.4: one or two probe datagrams
        self.spaces = (PacketSpaceRecovery(), PacketSpaceRecovery(), PacketSpaceRecovery())
        self.pto_count = 0
        #: Tells the acknowledged packets' handlers, in order (:func:`fire_acked`; the
        #: connection's streams put one here that merges contiguous STREAM frames).
        self.fire_acked: Callable[[list[SentPacket]], None] = fire_acked
        self.handshake_confirmed = False
        self.has_handshake_keys = False
        self.amplification_limited = False
        self._handshake_acked = False
        self._pto_anchor: float | None = None
        #: An ACK frame set aside until the reply to its packet has been built
        #: (:meth:`process_waiting_ack`): the function that processes it and its fields.
        self.waiting_ack: tuple[Callable[..., None], tuple[Any, ...]] | None = None

    def on_path_change(self, now: float) -> None:
        """The peer moved to a new address (RFC 9000 §9.4: packets sent on the old path
        MUST NOT contribute to congestion control for the new one): their losses and
        acknowledgments neither shrink nor grow the window — the controller treats
        them as sent before a recovery period that starts now — and they never make
        persistent congestion."""
        self.losses.path_changed_at = now
        congestion = self.congestion
        start = getattr(congestion, "congestion_recovery_start_time", None)
        if isinstance(start, float) and start < now:
            congestion.congestion_recovery_start_time = now  # type: ignore[attr-defined]

    # -- flags ------------------------------------------------------------------------

    @property
    def peer_completed_address_validation(self) -> bool:
        """RFC 9002 A.8 PeerCompletedAddressValidation.

        Servers assume clients validated their address; a client knows the server
        validated its address once a Handshake ACK arrived or the handshake is confirmed.
        """
        return not self.is_client or self._handshake_acked or self.handshake_confirmed

    @property
    def bytes_in_flight(self) -> int:
        return self.congestion.bytes_in_flight

    @property
    def ack_eliciting_in_flight(self) -> int:
        s = self.spaces
        return (
            s[0].ack_eliciting_in_flight
            + s[1].ack_eliciting_in_flight
            + s[2].ack_eliciting_in_flight
        )

    def largest_eliciting_in_flight(self) -> int:
        """The size of the largest ack-eliciting packet in flight (0: none). O(packets
        in flight): for the PTO, not per packet (see :meth:`PmtuDiscovery.on_pto`)."""
        largest = 0
        for st in self.spaces:
            if st.ack_eliciting_in_flight:
                for packet in st.sent.values():
                    if packet.ack_eliciting and packet.in_flight and packet.size > largest:
                        largest = packet.size
        return largest

    # -- sending ----------------------------------------------------------------------

    def compact(self) -> None:
        """A quiet connection: the tables of sent and lost packets that emptied give
        their storage back (issue 10, memory per idle connection)."""
        for st in self.spaces:
            if st is SPENT_SPACE:
                continue
            for table in (st.sent, st.lost):
                if not table:
                    table.clear()

    def on_packet_sent(self, packet: SentPacket, now: float) -> None:
        """Track a sent packet (RFC 9002 A.5). Register every packet, ACK-only too."""
        st = self.spaces[packet.space]
        pn = packet.packet_number
        if pn <= st.largest_sent:
            raise ValueError(f"packet number {pn} not above {st.largest_sent}")
        packet.time_sent = now
        st.largest_sent = pn
        sent = st.sent
        if not sent:
            st.lowest_unacked = pn
        sent[pn] = packet
        if packet.in_flight:
            if packet.ack_eliciting:
                st.time_of_last_ack_eliciting = now
                st.ack_eliciting_in_flight += 1
            self.congestion.on_packet_sent(packet.size, now, packet)
            self._pto_anchor = now
        if not packet.ack_eliciting:
            ack_only = st.ack_only
            if ack_only is None:
                ack_only = st.ack_only = deque()
            ack_only.append(pn)
            if len(ack_only) > self.max_ack_only:
                self._drop_ack_only(st, now)
        if len(sent) > self.max_sent:
            self._drop_record(st, sent[st.lowest_unacked], now)

    def sent_room(self, space: int) -> int:
        """Packets the space can still track before ``max_sent`` drops the oldest."""
        return self.max_sent - len(self.spaces[space].sent)

    def on_packets_sent(self, packets: Sequence[SentPacket], sent_bytes: int, now: float) -> None:
        """:meth:`on_packet_sent` for a run of in-flight, ack-eliciting packets of one
        space sent at ``now`` in packet number order (the bulk send loop; ``sent_bytes``
        their sizes summed): one congestion controller call. A run beyond
        :meth:`sent_room` goes packet by packet (a drop is a congestion event)."""
        st = self.spaces[packets[0].space] if packets else None
        if st is None or len(st.sent) + len(packets) > self.max_sent:
            for packet in packets:
                self.on_packet_sent(packet, now)
            return
        sent = st.sent
        largest = st.largest_sent
        if not sent:
            st.lowest_unacked = packets[0].packet_number
        for packet in packets:
            pn = packet.packet_number
            if pn <= largest:
                raise ValueError(f"packet number {pn} not above {largest}")
            largest = pn
            packet.time_sent = now
            sent[pn] = packet
        st.largest_sent = largest
        st.time_of_last_ack_eliciting = now
        st.ack_eliciting_in_flight += len(packets)
        self.congestion.on_packets_sent(packets, sent_bytes, now)
        self._pto_anchor = now

    def _drop_ack_only(self, st: PacketSpaceRecovery, now: float) -> None:
        """Forget the oldest ACK-only packets beyond ``max_ack_only`` (RFC 9000 §13.2.4:
        they only tell us which ACK ranges the peer has seen)."""
        ack_only = st.ack_only
        assert ack_only is not None  # called after an append
        sent = st.sent
        while len(ack_only) > self.max_ack_only:
            packet = sent.get(ack_only.popleft())
            if packet is not None:
                self._drop_record(st, packet, now)

    def _drop_record(self, st: PacketSpaceRecovery, packet: SentPacket, now: float) -> None:
        """Stop tracking ``packet``: an ack-eliciting one is declared lost (RFC 9002
        §6.1 has nothing more to say about a packet the peer never acknowledges), a
        non-ack-eliciting one leaves without a congestion reaction. Handlers see "lost"."""
        pn = packet.packet_number
        del st.sent[pn]
        if packet.in_flight:
            if packet.ack_eliciting:
                st.ack_eliciting_in_flight -= 1
                self.congestion.on_packets_lost((packet,), now)
            else:
                self.congestion.on_packet_discarded(packet)
        if pn == st.lowest_unacked:
            st.advance_lowest_unacked()
        fate = packet.fate
        if fate is not None:
            fate(False, *packet.args)
        for handler, args in packet.handlers:
            handler(False, *args)

    def on_packet_number_skipped(self, space: int, packet_number: int) -> None:
        """Record a packet number deliberately left unused (RFC 9000 §21.4)."""
        st = self.spaces[space]
        if packet_number <= st.largest_sent:
            raise ValueError(f"packet number {packet_number} not above {st.largest_sent}")
        st.largest_sent = packet_number
        st.skipped.add(packet_number)
        st.has_skipped = True
        if not st.sent:
            st.lowest_unacked = packet_number + 1

    # -- acknowledgments --------------------------------------------------------------

    def process_waiting_ack(self) -> None:
        """Process the ACK frame set aside in :attr:`waiting_ack`, if any (issue 10: the
        frame dispatcher, :mod:`quic.conn_dispatch`, sets aside a 1-RTT ACK that
        acknowledges every tracked packet, so that the reply to the packet that carried
        it is built and sent first). Whoever reads what an ACK changes calls this first:
        the next packet's frames, a build that the window could limit, the deadlines and
        timers, a path change, the queue sizes. It is processed at the ``now`` it was
        received at: the same RTT sample (RFC 9002 §5.1, §5.3)."""
        waiting = self.waiting_ack
        if waiting is not None:
            self.waiting_ack = None
            process, fields = waiting
            process(*fields)

    def on_ack_received(
        self,
        space: int,
        ranges: Sequence[tuple[int, int]],
        ack_delay: float,
        now: float,
        ecn_ce_count: int | None = None,
    ) -> AckResult:
        """Process one ACK frame (RFC 9002 A.7).

        ``ranges`` are inclusive ``(smallest, largest)`` pairs, largest first, as decoded
        from the frame; ``ack_delay`` is in seconds; ``ecn_ce_count`` is the frame's
        ECN-CE count if it carried ECN counts. Raises ``QuicProtocolError``
        (PROTOCOL_VIOLATION) for an acknowledgment of a packet never sent (RFC 9000 §13.1).
        One range that acknowledges every tracked packet (a ping-pong, a request and its
        response) takes :meth:`_on_ack_all`, one that acknowledges the oldest of them up
        to at least the largest acknowledged before (the ACK that waited for a reply)
        :meth:`_on_ack_prefix`; anything else :meth:`_on_ack_ranges`.
        """
        st = self.spaces[space]
        if (  # acks_all(), inline: per ACK frame (tests/quic/test_ack_waits.py)
            ranges
            and ranges[0][1] == st.largest_sent
            and len(ranges) == 1
            and st.sent
            and ranges[0][0] <= st.lowest_unacked
            and not st.has_skipped
            and not st.lost
        ):
            return self._on_ack_all(st, space, ack_delay, now, ecn_ce_count)
        if (  # a prefix of the tracked packets (fuzz/test_fuzz_ack_all.py)
            len(ranges) == 1
            and st.sent
            and ranges[0][0] <= st.lowest_unacked <= ranges[0][1] < st.largest_sent
            and ranges[0][1] >= st.largest_acked
            and not st.has_skipped
            and not st.lost
        ):
            return self._on_ack_prefix(st, space, ranges[0][1], ack_delay, now, ecn_ce_count)
        return self._on_ack_ranges(space, ranges, ack_delay, now, ecn_ce_count)

    def acks_all(self, space: int, ranges: Sequence[tuple[int, int]]) -> bool:
        """True when an ACK frame of ``ranges`` takes :meth:`_on_ack_all`: one valid
        range acknowledging every tracked packet of ``space``, none skipped or lost
        (so it declares nothing lost and raises nothing)."""
        st = self.spaces[space]
        return bool(
            ranges
            and ranges[0][1] == st.largest_sent
            and len(ranges) == 1
            and st.sent
            and ranges[0][0] <= st.lowest_unacked
            and not st.has_skipped
            and not st.lost
        )

    # the two ACK paths (quic.recovery_ack: LossRecovery methods defined there)
    _on_ack_all = on_ack_all
    _on_ack_prefix = on_ack_prefix
    _on_ack_ranges = on_ack_ranges

    # -- loss detection ---------------------------------------------------------------

    def _detect_lost(self, st: PacketSpaceRecovery, now: float) -> list[SentPacket]:
        """RFC 9002 §6.1, A.10 DetectAndRemoveLostPackets."""
        st.loss_time = None
        lost: list[SentPacket] = []
        largest_acked = st.largest_acked
        if largest_acked < 0 or not st.sent:
            return lost
        loss_delay = self.rtt.loss_delay()
        sent = st.sent
        pn = st.lowest_unacked
        while pn <= largest_acked:
            packet = sent.get(pn)
            if packet is not None:
                deadline = packet.time_sent + loss_delay
                # §6.1.2 time threshold or §6.1.1 packet threshold
                if deadline <= now or largest_acked >= pn + K_PACKET_THRESHOLD:
                    del sent[pn]
                    lost.append(packet)
                    if packet.ack_eliciting and packet.in_flight:
                        st.ack_eliciting_in_flight -= 1
                else:
                    # Send times grow with packet numbers: every later packet is
                    # newer, so this is the earliest pending deadline.
                    st.loss_time = deadline
                    break
            pn += 1
        if lost:
            st.advance_lowest_unacked()
        return lost

    def _on_packets_lost(self, st: PacketSpaceRecovery, lost: list[SentPacket], now: float) -> None:
        """RFC 9002 B.8 OnPacketsLost: one congestion event, then persistent congestion."""
        self.congestion.on_packets_lost(lost, now)
        if self.losses.record(st, lost, self.max_ack_delay):
            self.congestion.on_persistent_congestion(now)
            self.rtt.on_persistent_congestion()  # RFC 9002 §5.2

    # -- timer ------------------------------------------------------------------------

    def _earliest_loss_time(self) -> tuple[float | None, int]:
        """RFC 9002 A.8 GetLossTimeAndSpace."""
        time: float | None = None
        space = _INITIAL
        for index in _SPACES:
            t = self.spaces[index].loss_time
            if t is not None and (time is None or t < time):
                time = t
                space = index
        return time, space

    def _pto_time_and_space(self) -> tuple[float | None, int]:
        """RFC 9002 §6.2.1, A.8 GetPtoTimeAndSpace."""
        backoff = 1 << min(self.pto_count, _MAX_BACKOFF_EXPONENT)
        duration = self.rtt.pto_base() * backoff
        s = self.spaces
        if not (  # the ack_eliciting_in_flight property, inline
            s[0].ack_eliciting_in_flight
            or s[1].ack_eliciting_in_flight
            or s[2].ack_eliciting_in_flight
        ):
            # §6.2.2.1 anti-deadlock: the client probes from the last timer event.
            space = _HANDSHAKE if self.has_handshake_keys else _INITIAL
            anchor = self._pto_anchor
            return (None if anchor is None else anchor + duration), space
        pto_time: float | None = None
        pto_space = _INITIAL
        for index in _SPACES:
            st = self.spaces[index]
            if not st.ack_eliciting_in_flight:
                continue
            if index == _APPLICATION:
                if not self.handshake_confirmed:
                    break  # §6.2.1: no Application Data PTO before confirmation
                duration += self.max_ack_delay * backoff
            t = st.time_of_last_ack_eliciting + duration
            if pto_time is None or t < pto_time:
                pto_time = t
                pto_space = index
        return pto_time, pto_space

    def get_loss_detection_timer(self) -> float | None:
        """Absolute deadline of the loss detection timer, or None (RFC 9002 A.8).

        Asked after every batch of datagrams (issue 10): GetLossTimeAndSpace and the
        in-flight count are read inline here, without helper calls."""
        initial, handshake, application = self.spaces
        loss_time = initial.loss_time
        t = handshake.loss_time
        if t is not None and (loss_time is None or t < loss_time):
            loss_time = t
        t = application.loss_time
        if t is not None and (loss_time is None or t < loss_time):
            loss_time = t
        if loss_time is not None:
            return loss_time  # time threshold loss detection
        if self.amplification_limited:
            return None  # §6.2.2.1: the server cannot send a probe anyway
        if initial.ack_eliciting_in_flight or handshake.ack_eliciting_in_flight:
            return self._pto_time_and_space()[0]
        if not application.ack_eliciting_in_flight:
            # peer_completed_address_validation, without the property
            if not self.is_client or self._handshake_acked or self.handshake_confirmed:
                return None  # nothing to detect lost and no deadlock to avoid
            return self._pto_time_and_space()[0]
        if not self.handshake_confirmed:
            return None  # §6.2.1: no Application Data PTO before confirmation
        # _pto_time_and_space()[0] with only Application Data in flight, same arithmetic
        count = self.pto_count
        backoff = 1 << (count if count < _MAX_BACKOFF_EXPONENT else _MAX_BACKOFF_EXPONENT)
        duration = self.rtt.pto * backoff
        duration += self.max_ack_delay * backoff
        return application.time_of_last_ack_eliciting + duration

    def on_loss_detection_timeout(self, now: float) -> ProbeRequest:
        """Fire the loss detection timer if it is due (RFC 9002 A.9)."""
        timer = self.get_loss_detection_timer()
        if timer is None or now < timer:
            return NO_PROBE
        loss_time, space = self._earliest_loss_time()
        if loss_time is not None:
            st = self.spaces[space]
            lost = self._detect_lost(st, now)
            if lost:
                self._on_packets_lost(st, lost, now)
                fire_lost(lost)
            return ProbeRequest(lost=tuple(lost))
        self._pto_anchor = now
        if not self.ack_eliciting_in_flight:
            # §6.2.2.1: anti-deadlock probe: Handshake if possible, else padded Initial.
            self.pto_count += 1
            space = _HANDSHAKE if self.has_handshake_keys else _INITIAL
            return ProbeRequest(space=space, count=1, pad_initial=space == _INITIAL)
        _, space = self._pto_time_and_space()
        self.pto_count += 1
        others = tuple(
            index
            for index in _SPACES
            if index != space and self.spaces[index].ack_eliciting_in_flight
        )
        count = self.max_probes
        if (
            count > 1
            and space == _APPLICATION
            and self.handshake_confirmed
            and self.congestion.bytes_in_flight < self.congestion.max_datagram_size
        ):
            # RFC 9002 §6.2.4: "at least one" probe; "up to two full-sized datagrams"
            # guard a flight against the loss of one datagram. Everything in flight
            # fits in one datagram here (a small request, a burst's PINGs): one probe,
            # so an overloaded peer (issue 10, 1,000 sessions at once) is not sent and
            # made to acknowledge two per PTO.
            count = 1
        return ProbeRequest(space=space, count=count, other_spaces=others)

    # -- discarding -------------------------------------------------------------------

    def discard_space(
        self, space: int, now: float | None = None, notify_lost: bool = False
    ) -> None:
        """Drop all recovery state of a space (RFC 9002 §6.4, A.11).

        In-flight bytes leave the congestion controller without a congestion reaction.
        Handlers are not called unless ``notify_lost`` (0-RTT rejection), in which case
        each gets ``handler(False, *args)``. Packet numbers keep increasing afterwards.
        """
        st = self.spaces[space]
        if st is SPENT_SPACE:
            return  # retired already (see :meth:`retire_space`)
        packets = list(st.sent.values())
        discarded = self.congestion.on_packet_discarded
        for packet in packets:
            if packet.in_flight:
                discarded(packet)
        st.sent.clear()
        st.ack_only = None
        st.lost.clear()
        st.lowest_unacked = st.largest_sent + 1
        st.loss_time = None
        st.time_of_last_ack_eliciting = 0.0
        st.ack_eliciting_in_flight = 0
        self.pto_count = 0
        if now is not None:
            self._pto_anchor = now
        if notify_lost:
            fire_lost(packets)

    def retire_space(self, space: int) -> None:
        """The Initial or Handshake space is discarded for good (RFC 9001 §4.9.1,
        §4.9.2; after :meth:`discard_space`): its state gives way to the shared, empty
        one. The application space is never retired (0-RTT rejection discards it and
        goes on using it)."""
        if space == _APPLICATION:
            raise ValueError("the application packet number space is never retired")
        spaces = list(self.spaces)
        spaces[space] = SPENT_SPACE
        self.spaces = (spaces[0], spaces[1], spaces[2])
