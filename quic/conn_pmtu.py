"""Datagram Packetization Layer PMTU Discovery (RFC 8899; RFC 9000 §14.2-§14.4).

Theory of operation
-------------------
:class:`PmtuDiscovery` owns the connection's PLPMTU: the largest UDP payload the send
path uses (RFC 9000 §14.3: the "maximum datagram size"). It starts at the configured
``max_datagram_size`` (1200 by default: BASE_PLPMTU = MIN_PLPMTU, RFC 9000 §14.3) and
searches up to MAX_PLPMTU, the smaller of ``pmtud_max_datagram_size`` (1452 by default:
discovery is on, see :mod:`quic.configuration`) and the peer's ``max_udp_payload_size``
(RFC 9000 §18.2). RFC 8899 §5.1.2 bounds MAX_PLPMTU by what the local interface can
send: when the driver knows that size for the peer's address (:mod:`quic.aio.mtu`: the
route's MTU less the IP and UDP headers; 65,507 on IPv4 loopback, 1,472 on a 1500-byte
IPv4 Ethernet link) it tells :meth:`PmtuDiscovery.set_local_limit` before the search
begins, and that size takes the configured one's place (``pmtud_interface_mtu``, off by
default); a new peer host (:meth:`PmtuDiscovery.reset`) goes back to the configured
one, as the driver has not looked at its route. Every change is pushed to the connection
through the ``apply`` callback, which sets the path's datagram size and the congestion
controller's (RFC 9002 §7.2) — and drops queued DATAGRAM frames that no longer fit
(:mod:`quic.conn_datagrams`; the DATAGRAM payload offered to applications is read from
the PLPMTU at each call, so it grows and shrinks with it: docs/datagrams.md). The
socket sets Don't Fragment (:mod:`quic.aio.udp`), so a datagram too large for the path
is dropped, never fragmented (RFC 9000 §14).

States (RFC 8899 §5.2)::

    DISABLED         MAX_PLPMTU <= the starting size: nothing to discover
    BASE             waiting for the handshake to be confirmed (RFC 9000 §14.2.1),
                     then START_DELAY_PTOS PTOs more
    SEARCHING        one probe at a time, PLPMTU raised on each acknowledged probe
    SEARCH_COMPLETE  until PMTU_RAISE_TIMER (``pmtud_raise_interval``) → SEARCHING

Probes (RFC 9000 §14.4, RFC 8899 §4.1 "probing using padding data"): a 1-RTT packet of
exactly the candidate size holding PING and PADDING only, in a datagram of its own
(:meth:`PmtuDiscovery.write_probe`; the send scheduler opens the packet). The peer
acknowledges it (PING is ack-eliciting), but loss recovery records it as neither in
flight nor ack-eliciting, so its loss is no congestion signal — no window reduction, no
persistent congestion, no PTO (RFC 9000 §14.4 SHOULD NOT, RFC 8899 §3 item 7) — and it
is sent only when the congestion window has room for it (RFC 8899 §3 item 7: probes
wait while the window is full). As no PTO covers it, the probe's own timer (three
PTOs) counts it lost if it is neither acknowledged nor declared lost by then.

Start: RFC 9000 §14.3.1 lets the search begin once the handshake is confirmed, and RFC
8899 §5.2 leaves the moment to leave BASE to the PL. It begins START_DELAY_PTOS PTOs
after confirmation (a deadline of its own, so an idle connection searches too): a
connection that ends sooner — a handshake and a close, one short request — sends no
probe and makes its peer answer none (two 1,452-byte datagrams and their
acknowledgments saved per short connection; Chromium likewise waits, for 100 packets).
The wait is short next to a transfer (on loopback a few milliseconds: a bulk transfer
starts at the base size and grows once the probe is acknowledged). A new path
(:meth:`PmtuDiscovery.reset`) is searched at once.

Search (RFC 8899 §5.3): the first candidate is MAX_PLPMTU (on most paths it passes at
once); a candidate whose probe is lost MAX_PROBES (3) times becomes the new upper bound
and the search goes on by bisection between the largest acknowledged size and it,
until the interval is narrower than ``SEARCH_PRECISION`` bytes. An acknowledged probe
raises the PLPMTU to its size at once, even a late one.

Black holes (RFC 8899 §4.3, §5.2): the path MTU can drop mid-connection, and then
every full-sized packet is lost while small ones (our ACKs) get through. A "suspicious"
event is a batch of losses holding a packet larger than BASE_PLPMTU (and not above the
PLPMTU: probes do not count) with no such packet acknowledged by the same ACK, or a PTO
expiry while the PLPMTU is above BASE_PLPMTU and a packet larger than BASE_PLPMTU is
in flight (a PTO with only small packets outstanding is no PMTU evidence: an overloaded
peer that read nothing for a while would otherwise set off a black-hole fallback and a
new search of large probes on every connection of a burst). Any acknowledged packet
larger than BASE_PLPMTU clears the count. After MAX_PROBES suspicious events in a row the PLPMTU
drops to BASE_PLPMTU at once — the PTO probes that follow are small enough to pass —
and a new search starts below the size that failed; PMTU_RAISE_TIMER later tries the
whole range again. Lost data is retransmitted by its owners as for any loss.

:meth:`PmtuDiscovery.reset` starts over on a new path (RFC 9000 §14.3: the maximum
datagram size is per pair of addresses).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING

from quic.frames import PING_FRAME, PaddingFrame

if TYPE_CHECKING:
    from quic.packet_builder import PacketAssembler
    from quic.recovery import SentPacket

__all__ = [
    "BASE_PLPMTU",
    "MAX_PROBES",
    "PROBE_TIMEOUT_PTOS",
    "SEARCH_PRECISION",
    "START_DELAY_PTOS",
    "PmtuDiscovery",
    "PmtuState",
]

#: RFC 9000 §14.3: BASE_PLPMTU = MIN_PLPMTU = the smallest allowed maximum datagram size.
BASE_PLPMTU = 1200
#: RFC 9000 §18.2: the peer's max_udp_payload_size until its transport parameters come.
MAX_UDP_PAYLOAD_SIZE = 65527
#: RFC 8899 §5.1.2: probes of one size before it is taken as too large; also the
#: suspicious events that make a black hole.
MAX_PROBES = 3
#: Stop searching when the largest working and smallest failing sizes are this close.
SEARCH_PRECISION = 16
#: A probe neither acknowledged nor declared lost after this many PTOs counts as lost
#: (RFC 8899 §5.1.1 PROBE_TIMER; probes are not in flight, so no PTO covers them).
PROBE_TIMEOUT_PTOS = 3
#: The search begins this many PTOs after the handshake is confirmed (see "Start").
START_DELAY_PTOS = 3


class PmtuState(Enum):
    """RFC 8899 §5.2 states (ERROR is not used: QUIC never goes below BASE_PLPMTU)."""

    DISABLED = "disabled"
    BASE = "base"
    SEARCHING = "searching"
    SEARCH_COMPLETE = "search_complete"


_SEARCHING = PmtuState.SEARCHING  # a module alias: an Enum class attribute costs ~10x


class PmtuDiscovery:
    """The PLPMTU of one connection's path (see the module docstring)."""

    __slots__ = (
        "_apply",
        "_attempts",
        "_candidate",
        "_ceiling",
        "_configured",
        "_high",
        "_interface",
        "_jump",
        "_limit",
        "_low",
        "_outstanding",
        "_peer",
        "_probe_deadline",
        "_probe_sent_at",
        "_raise_at",
        "_raise_interval",
        "_search_at",
        "_seq",
        "_start",
        "black_holes",
        "plpmtu",
        "probes_lost",
        "probes_sent",
        "state",
        "suspicious",
    )

    def __init__(
        self,
        start: int,
        ceiling: int,
        raise_interval: float,
        apply: Callable[[int], None],
        interface: bool = False,
    ) -> None:
        self._start = max(BASE_PLPMTU, start)
        # MAX_PLPMTU of the configuration (never below the starting size) ...
        self._configured = self._ceiling = max(self._start, ceiling)
        # ... or the local interface's (set_local_limit; only while discovery is on) ...
        self._interface = interface and self._ceiling > self._start
        self._peer = MAX_UDP_PAYLOAD_SIZE  # ... lowered by the peer's max_udp_payload_size
        self._limit = self._ceiling
        self._jump = 0  # the configured size, probed before a larger local limit
        self._raise_interval = raise_interval
        self._apply = apply
        self.plpmtu = self._start
        self.probes_sent = 0
        self.probes_lost = 0
        self.black_holes = 0
        self._init_search()

    def _init_search(self) -> None:
        self.state = PmtuState.BASE if self._limit > self.plpmtu else PmtuState.DISABLED
        self._low = self.plpmtu
        self._high = self._limit
        self._candidate = self._limit
        self._attempts = 0
        self._seq = 0  # probes are numbered; fates of stale ones are recognised
        self._outstanding = 0  # sequence number of the probe in flight (0: none)
        self._probe_deadline: float | None = None
        self._probe_sent_at = 0.0
        self._raise_at: float | None = None
        self._search_at: float | None = None  # BASE: when the search begins (start())
        #: Suspicious events (PTOs, losses of large packets) since large packets last
        #: got through (RFC 8899 §4.3); while 0, :meth:`on_ack` without lost packets
        #: changes nothing (its callers skip it then: per ACK frame).
        self.suspicious = 0

    # -- life -------------------------------------------------------------------------

    @property
    def wants_local_limit(self) -> bool:
        """Whether :meth:`set_local_limit` would be heard (the driver asks the kernel
        only then)."""
        return self._interface and self.state is PmtuState.BASE

    def set_local_limit(self, size: int) -> None:
        """The largest UDP payload the local interface sends toward the peer (RFC 8899
        §5.1.2: MAX_PLPMTU is at most that), as the driver read it from the route: it
        replaces the configured MAX_PLPMTU, within the peer's ``max_udp_payload_size``.
        Heard only before the search begins (:attr:`wants_local_limit`)."""
        if not self.wants_local_limit:
            return
        self._ceiling = max(self._start, size)
        self._limit = max(BASE_PLPMTU, min(self._ceiling, self._peer))
        self._high = self._candidate = self._limit
        # the configured size first when the interface's is larger: it passes at once on
        # most paths, and a probe goes only when the congestion window has room for it
        # (a connection that never fills a 64 KB window would otherwise stay at 1200)
        self._jump = self._configured if self._configured < self._limit else 0
        if self._limit <= self.plpmtu:
            self.state = PmtuState.DISABLED

    def set_peer_limit(self, max_udp_payload_size: int) -> None:
        """The peer's ``max_udp_payload_size`` (RFC 9000 §18.2) caps MAX_PLPMTU."""
        self._peer = max_udp_payload_size
        limit = max(BASE_PLPMTU, min(self._ceiling, max_udp_payload_size))
        self._limit = limit
        if self.plpmtu > limit:
            self._set(limit)
        if self._high > limit:
            self._high = limit
        state = self.state
        if state is PmtuState.BASE and limit <= self.plpmtu:
            self.state = PmtuState.DISABLED
            self._search_at = None
        elif state is PmtuState.SEARCHING and self._candidate > limit:
            self._attempts = 0
            self._candidate = limit
            self._next_candidate_or_complete(limit)

    def start(self, now: float, delay: float = 0.0) -> None:
        """The handshake is confirmed: search (RFC 9000 §14.2.1, RFC 8899 §5.2 BASE),
        ``delay`` seconds from ``now`` (see "Start"; the connection passes
        START_DELAY_PTOS PTOs)."""
        if self.state is not PmtuState.BASE:
            return
        if delay > 0.0:
            self._search_at = now + delay  # the deadline; handle_timer() begins it
        else:
            self._begin_search(now)

    def reset(self, now: float, confirmed: bool) -> None:
        """A new path: back to the starting size and search again (RFC 9000 §14.3), up to
        the configured MAX_PLPMTU (the interface's was read for the previous host)."""
        self._ceiling = self._configured
        self._limit = max(BASE_PLPMTU, min(self._ceiling, self._peer))
        self._jump = 0
        if self.plpmtu != self._start:
            self._set(min(self._start, self._limit))
        self._init_search()
        if confirmed:
            self.start(now)

    def _begin_search(self, now: float) -> None:
        self._search_at = None
        self._low = self.plpmtu
        self._high = self._limit
        self._attempts = 0
        self._raise_at = None
        if self._high - self._low < SEARCH_PRECISION:
            self._complete(now)
            return
        self.state = PmtuState.SEARCHING
        jump = self._jump
        # the maximum first (most paths carry it), or the configured size before it
        self._candidate = jump if self.plpmtu < jump < self._high else self._high

    def _complete(self, now: float) -> None:
        self.state = PmtuState.SEARCH_COMPLETE
        self._candidate = 0
        # RFC 8899 §5.1.1 PMTU_RAISE_TIMER: a larger PMTU may appear later
        self._raise_at = now + self._raise_interval if self.plpmtu < self._limit else None

    def _set(self, size: int) -> None:
        self.plpmtu = size
        self._apply(size)

    # -- probing ----------------------------------------------------------------------

    def probe_size(self) -> int | None:
        """Size of the probe to send now, if one is due."""
        if self.state is _SEARCHING and not self._outstanding:  # per packet built
            return self._candidate
        return None

    def write_probe(self, asm: PacketAssembler, now: float, pto: float) -> None:
        """Fill the open 1-RTT packet as a probe: PING, then PADDING to the datagram's
        end (RFC 9000 §14.4, RFC 8899 §4.1). Not in flight (see the module docstring)."""
        asm.push(PING_FRAME)
        room = asm.room
        if room > 0:
            asm.push(PaddingFrame(room).encode())
        packet = asm.packet
        # recorded as neither: its loss is no congestion signal (RFC 9000 §14.4)
        packet.ack_eliciting = packet.in_flight = False
        self._seq += 1
        self._outstanding = self._seq
        self._probe_sent_at = now
        self._probe_deadline = now + PROBE_TIMEOUT_PTOS * pto
        self.probes_sent += 1
        packet.handlers.append((self._probe_fate, (self._seq, self._candidate)))

    def _probe_fate(self, acked: bool, seq: int, size: int) -> None:
        current = seq == self._outstanding
        if acked:
            if self.plpmtu < size <= self._limit:
                self._set(size)  # even a late acknowledgment proves the size
                self.suspicious = 0
            if current:
                self._outstanding = 0
                self._probe_deadline = None
                self._after_success(size)
            elif not self._outstanding:
                self._after_success(size)  # a late one: the next candidate moves up
        elif current:
            self._probe_lost()

    def _after_success(self, size: int) -> None:
        if self.state is not PmtuState.SEARCHING:
            return
        if self._low < size <= self._limit:
            self._low = size
        self._attempts = 0
        if size == self._jump:  # the configured size passed: now the interface's
            self._next_candidate_or_complete(self._high)
            return
        self._next_candidate()

    def _probe_lost(self) -> None:
        self._outstanding = 0
        self._probe_deadline = None
        self.probes_lost += 1
        if self.state is not PmtuState.SEARCHING:
            return
        self._attempts += 1
        candidate = self._candidate
        if self._attempts < MAX_PROBES and candidate > self.plpmtu:
            return  # the same size again (RFC 8899 §5.1.2 MAX_PROBES)
        self._attempts = 0
        if candidate > self.plpmtu:  # else a late ACK of an earlier probe proved it
            self._high = min(self._high, candidate - 1)
        self._next_candidate()

    def _next_candidate(self) -> None:
        low, high = max(self._low, self.plpmtu), self._high
        self._next_candidate_or_complete((low + high + 1) // 2)  # RFC 8899 §5.3: bisection

    def _next_candidate_or_complete(self, candidate: int) -> None:
        low, high = max(self._low, self.plpmtu), self._high
        if high - low < SEARCH_PRECISION or candidate <= self.plpmtu:
            self._complete(self._probe_sent_at)
            return
        self._candidate = candidate

    # -- timers -----------------------------------------------------------------------

    @property
    def deadline(self) -> float | None:
        """The probe timeout or the PMTU_RAISE_TIMER, whichever is first; in BASE, when
        the search begins."""
        if self._search_at is not None:
            return self._search_at  # BASE: neither of the others is set
        probe, raise_at = self._probe_deadline, self._raise_at
        if probe is None:
            return raise_at
        if raise_at is None or probe < raise_at:
            return probe
        return raise_at

    def handle_timer(self, now: float) -> None:
        search_at = self._search_at
        if search_at is not None:
            if now >= search_at and self.state is PmtuState.BASE:
                self._begin_search(now)
            return
        probe = self._probe_deadline
        if probe is not None and now >= probe:
            self._probe_lost()  # no verdict within PROBE_TIMEOUT_PTOS PTOs
        raise_at = self._raise_at
        if raise_at is not None and now >= raise_at and self.state is PmtuState.SEARCH_COMPLETE:
            self._begin_search(now)

    # -- black-hole detection (RFC 8899 §4.3) -------------------------------------------

    def on_ack(self, acked: Sequence[SentPacket], lost: Sequence[SentPacket], now: float) -> None:
        """One ACK frame's newly acknowledged and lost packets."""
        if self.plpmtu <= BASE_PLPMTU:
            return  # nothing to fall back from
        for packet in reversed(acked):
            if packet.size > BASE_PLPMTU:
                self.suspicious = 0  # large packets get through
                return
        if lost:
            self.on_lost(lost, now)

    def on_lost(self, lost: Sequence[SentPacket], now: float) -> None:
        """Packets declared lost together (an ACK frame or the loss timer)."""
        plpmtu = self.plpmtu
        if plpmtu <= BASE_PLPMTU:
            return
        for packet in lost:
            if BASE_PLPMTU < packet.size <= plpmtu:
                self._suspect(now)
                return

    def on_pto(self, now: float, largest_in_flight: int | None = None) -> None:
        """The PTO fired: nothing was acknowledged for a while. ``largest_in_flight``:
        the largest ack-eliciting packet outstanding, if the caller knows it — when
        none is larger than BASE_PLPMTU the silence says nothing of the path MTU (a
        black hole drops packets larger than the base, RFC 8899 §4.3; small ones went
        unanswered for another reason, e.g. a peer too busy to read its socket in a
        burst of connections), so it is no suspicious event."""
        if self.plpmtu > BASE_PLPMTU and (
            largest_in_flight is None or largest_in_flight > BASE_PLPMTU
        ):
            self._suspect(now)

    def _suspect(self, now: float) -> None:
        self.suspicious += 1
        if self.suspicious < MAX_PROBES:
            return
        failed = self.plpmtu
        self.black_holes += 1
        self._set(BASE_PLPMTU)
        self.suspicious = 0
        self._outstanding = 0
        self._probe_deadline = None
        self._low = BASE_PLPMTU
        self._high = failed - 1
        self._attempts = 0
        self._raise_at = None
        if self._high - self._low < SEARCH_PRECISION:
            self._complete(now)
            return
        self.state = PmtuState.SEARCHING
        self._candidate = (self._low + self._high + 1) // 2
