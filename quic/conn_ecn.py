"""ECN for one connection: counts we report, marks we send, validation (RFC 9000 §13.4).

Theory of operation
-------------------
Explicit Congestion Notification lets a router mark a packet Congestion Experienced
(CE) instead of dropping it. The socket layer (:mod:`quic.aio.udp`) reads the ECN field
of each received datagram and sets it on each sent one; this component decides and
counts, and never touches a socket.

Receiving (RFC 9000 §13.4.1): the connection hands the ECN codepoint of every datagram
to ``receive_datagram`` (default: Not-ECT). Each QUIC packet of the datagram that is
*processed* (not a duplicate, not undecryptable) adds one to the ECT(0), ECT(1) or CE
count of its packet number space (:meth:`EcnController.on_packet_received`); coalesced
packets count once each in their own space. Once a space has counted anything, its ACK
frames are ACK_ECN frames carrying the three counts (:meth:`EcnController.counts`); a
CE-marked ack-eliciting packet is acknowledged at once (RFC 9000 §13.2.1). The counts
are reported whatever we send ourselves ("MUST provide feedback ... even if an
endpoint does not set an ECT field").

Sending and validation (RFC 9000 §13.4.2, after the algorithm of Appendix A.4): the
path's ECN state is

* ``TESTING`` — packets are sent ECT(0) until an ACK frame validates the counts or
  validation fails; if ``TESTING_PACKETS`` marked packets are declared lost while none
  was acknowledged, the path is taken to drop marked packets and validation fails
  (§13.4.2: "If all packets marked with non-zero ECN codepoints are subsequently lost,
  it can disable marking"), and likewise after ``TESTING_PTOS`` PTO expiries with no
  marked packet acknowledged (a path that drops every marked packet leaves nothing to
  declare lost; §13.4.2 suggests "a period of three PTOs", which two expiries with
  backoff span). Unlike Appendix A.4 there is no "unknown" state that stops
  marking after ten packets: on a healthy path the first ACK validates within a round
  trip, and every packet keeps its mark, which is what quic-interop-runner's "ecn"
  case checks;
* ``CAPABLE`` — an ACK newly acknowledged ECT(0) packets and its counts passed the
  checks: every packet is sent ECT(0);
* ``FAILED`` — a check failed: nothing is marked again on this path (``DISABLED`` if
  the configuration turned ECN off).

The codepoint of one ``datagrams_to_send`` call is chosen when the call begins
(:meth:`EcnController.begin_send`) and read by the I/O layer from
:attr:`QuicConnection.ecn_codepoint <quic.connection.QuicConnection.ecn_codepoint>`.
Every packet sent ECT(0) is counted per space. While the path is tested it registers a
handler on its :class:`~quic.recovery.SentPacket`, so loss recovery tells us which
marked packets an ACK frame newly acknowledged and which were lost; once the path is
``CAPABLE`` losses no longer matter to the state, and a packet is only flagged
(``ecn_marked``): :meth:`EcnController.on_ack_frame` counts the flagged packets among
those the frame newly acknowledged (no handler call per packet in a bulk transfer; a
flagged packet lost after a migration restarted testing does not count against the
new path, whose own packets carry handlers). After each ACK frame is processed,
:meth:`EcnController.on_ack_frame` validates its counts against the baseline of the
last ACK frame that passed (RFC 9000 §13.4.2.1). Validation fails when

* the frame newly acknowledges ECT(0) packets but carries no ECN counts (a bleaching
  path or a peer that does not report);
* a count is lower than in the baseline (counts never go backwards);
* the increase of ECT(0) + CE is smaller than the number of newly acknowledged ECT(0)
  packets (CE or ECT(0) marks erased on the way);
* the ECT(0) + CE count exceeds the packets we sent ECT(0), or ECT(1) is non-zero
  although we never send ECT(1) (remarking);
* ``TESTING_PACKETS`` marked packets were declared lost and none acknowledged
  (Appendix A.4: marked packets dropped by the path).

An ACK frame that does not increase the largest acknowledged packet number is never
used to fail validation (reordered ACKs, §13.4.2.1); it is not used at all.

Congestion response (RFC 9002 §7.1, B.7): when an ACK frame that passed validation
raises the CE count of its space, the congestion controller's ``on_ecn_ce`` runs with
the send time of the largest newly acknowledged packet — one congestion event, which
the controller's recovery period turns into at most one reduction per round trip.
Counts from a path that failed validation are never acted on.

:meth:`EcnController.reset` starts validation over on a new path (RFC 9000 §13.4.2:
"validates ... on active connection migration to a new path"); the counts we report
are per space, not per path, and survive it.
"""

from __future__ import annotations

from enum import Enum
from operator import attrgetter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from quic.recovery import SentPacket

__all__ = [
    "ECN_CE",
    "ECN_ECT0",
    "ECN_ECT1",
    "ECN_NOT_ECT",
    "TESTING_PACKETS",
    "EcnController",
    "EcnState",
]

# RFC 3168 §5: the two-bit ECN field of the IP header
ECN_NOT_ECT = 0
ECN_ECT1 = 1
ECN_ECT0 = 2
ECN_CE = 3

#: Marked packets lost, none acknowledged, before a path is taken to drop ECT packets
#: (RFC 9000 §13.4.2 suggests testing with ten packets).
TESTING_PACKETS = 10
#: PTO expiries, no marked packet acknowledged, before marking stops (RFC 9000 §13.4.2:
#: "a period of three PTOs": the first PTO plus a doubled second one).
TESTING_PTOS = 2


class EcnState(Enum):
    """ECN state of the path (RFC 9000 Appendix A.4)."""

    DISABLED = "disabled"  # turned off by the configuration
    TESTING = "testing"
    CAPABLE = "capable"
    FAILED = "failed"


_MARKING = (EcnState.TESTING, EcnState.CAPABLE)
# An Enum class attribute goes through EnumType's lookup on Python 3.11, ~10x a global
# load: on_ack_frame (per ACK frame) reads module aliases.
_DISABLED, _CAPABLE, _FAILED = EcnState.DISABLED, EcnState.CAPABLE, EcnState.FAILED
_ECN_MARKED = attrgetter("ecn_marked")


class EcnController:
    """ECN counts, marking and validation of one connection (see the module docstring)."""

    __slots__ = (
        "_acked_marked",
        "_baseline",
        "_largest_acked",
        "_lost_marked",
        "_marked",
        "_newly_acked",
        "_ptos",
        "_sent",
        "ce_events",
        "received_counts",
        "send_codepoint",
        "state",
    )

    def __init__(self, enabled: bool = True) -> None:
        # counts of received packets: ECT(0), ECT(1), CE of space 0, then of space 1, 2
        # (RFC 9000 §13.4.1); one flat list, not four objects (issue 10, idle memory),
        # never replaced: the packet reader counts a 1-RTT ECT(0) packet in it itself
        self.received_counts = [0] * 9
        self.state = EcnState.TESTING if enabled else EcnState.DISABLED
        self.send_codepoint = ECN_NOT_ECT  # of the current / latest send call
        self.ce_events = 0  # validated CE increases acted on (diagnostics, tests)
        # per space, over the connection (the peer's counts are per space, not per path)
        self._sent = [0, 0, 0]  # packets sent ECT(0)
        self._newly_acked = [0, 0, 0]  # ECT(0) packets acknowledged since the last ACK frame
        self._baseline = [(0, 0, 0), (0, 0, 0), (0, 0, 0)]  # counts of the last good ACK
        self._largest_acked = [-1, -1, -1]
        # the path being tested
        self._marked = 0  # packets sent ECT(0) on this path
        self._ptos = 0  # PTO expiries while testing
        self._acked_marked = 0
        self._lost_marked = 0

    def reset(self) -> None:
        """A new path: validate ECN on it from the start (RFC 9000 §13.4.2); the counts
        seen so far stay the baseline (Appendix A.4)."""
        if self.state is EcnState.DISABLED:
            return
        self.state = EcnState.TESTING
        self._marked = self._acked_marked = self._lost_marked = self._ptos = 0

    # -- receiving (RFC 9000 §13.4.1) -------------------------------------------------

    def on_packet_received(self, index: int, codepoint: int) -> bool:
        """A packet of space ``index`` was processed; True if it was CE-marked (it is
        then acknowledged at once, RFC 9000 §13.2.1)."""
        if codepoint == ECN_NOT_ECT:
            return False
        counts = self.received_counts
        base = index * 3
        if codepoint == ECN_ECT0:
            counts[base] += 1
        elif codepoint == ECN_ECT1:
            counts[base + 1] += 1
        else:
            counts[base + 2] += 1
            return True
        return False

    def counts(self, index: int) -> tuple[int, int, int] | None:
        """ECN counts for the space's ACK frames; None (plain ACK) until any arrived."""
        counts, base = self.received_counts, index * 3
        ect0, ect1, ce = counts[base], counts[base + 1], counts[base + 2]
        if not (ect0 or ect1 or ce):
            return None
        return ect0, ect1, ce

    # -- sending ----------------------------------------------------------------------

    def begin_send(self) -> int:
        """The codepoint of the datagrams about to be built (and remember it)."""
        codepoint = ECN_ECT0 if self.state in _MARKING else ECN_NOT_ECT
        self.send_codepoint = codepoint
        return codepoint

    def on_packet_sent(self, packet: SentPacket) -> None:
        """``packet`` leaves in an ECT(0) datagram: count it and learn its fate (a
        handler while testing, the ``ecn_marked`` flag once capable)."""
        space = packet.space
        self._sent[space] += 1
        self._marked += 1
        if self.state is _CAPABLE:
            packet.ecn_marked = True
        else:
            packet.handlers.append((self._fate, (space,)))

    def on_packets_sent(self, packets: Sequence[SentPacket], index: int) -> None:
        """:meth:`on_packet_sent` for a run of packets of space ``index`` (the bulk send
        loop): all flagged, or all with one handler."""
        n = len(packets)
        self._sent[index] += n
        self._marked += n
        if self.state is _CAPABLE:
            for packet in packets:
                packet.ecn_marked = True
            return
        fate = (self._fate, (index,))
        for packet in packets:  # the loop's packets share one empty tuple: a list each
            packet.handlers = [*packet.handlers, fate]

    def _fate(self, acked: bool, index: int) -> None:
        if acked:
            self._newly_acked[index] += 1
            self._acked_marked += 1
        else:
            self._lost_marked += 1
            if (
                self.state is EcnState.TESTING
                and not self._acked_marked
                and self._lost_marked >= TESTING_PACKETS
            ):
                self.state = EcnState.FAILED  # Appendix A.4: the marked packets are lost

    def on_pto(self) -> None:
        """The PTO fired: while testing with nothing marked acknowledged, the path may
        be dropping marked packets (RFC 9000 §13.4.2); stop marking after a few."""
        if self.state is EcnState.TESTING and not self._acked_marked:
            self._ptos += 1
            if self._ptos >= TESTING_PTOS:
                self.state = EcnState.FAILED

    # -- validation (RFC 9000 §13.4.2.1) ----------------------------------------------

    def on_ack_frame(
        self,
        index: int,
        largest_acked: int,
        counts: tuple[int, int, int] | None,
        acked: Sequence[SentPacket] = (),
    ) -> bool:
        """Validate the ECN counts of an ACK frame just processed by loss recovery,
        which newly acknowledged ``acked``.

        Returns True when the frame validly raised the CE count of the space: the
        caller then reports a congestion event (RFC 9002 §7.1, B.7).
        """
        newly = self._newly_acked[index]
        self._newly_acked[index] = 0
        state = self.state
        if state is _FAILED or state is _DISABLED:
            return False
        if acked:
            flagged = sum(map(_ECN_MARKED, acked))  # sent ECT(0) while capable
            if flagged:
                newly += flagged
                self._acked_marked += flagged
        if largest_acked <= self._largest_acked[index]:
            return False  # reordered: MUST NOT fail validation on it (§13.4.2.1)
        self._largest_acked[index] = largest_acked
        if counts is None:
            if newly:
                self.state = _FAILED  # marked packets acknowledged without counts
            return False
        ect0, ect1, ce = counts
        base0, base1, base_ce = self._baseline[index]
        if (
            ect0 < base0
            or ect1 < base1
            or ce < base_ce  # counts never decrease
            or (ect0 - base0) + (ce - base_ce) < newly  # marks erased on the path
            or ect0 + ce > self._sent[index]  # more than we ever marked
            or ect1  # we never send ECT(1)
        ):
            self.state = _FAILED
            return False
        self._baseline[index] = counts
        if newly and state is not _CAPABLE:
            self.state = _CAPABLE
        if ce > base_ce:
            self.ce_events += 1
            return True
        return False

    @property
    def marking(self) -> bool:
        """True while packets are sent ECT(0)."""
        return self.state in _MARKING
