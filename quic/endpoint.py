"""The Sans-I/O QUIC endpoint: many connections behind one UDP socket (RFC 9000 §5.2).

Theory of operation
-------------------
The endpoint routes each datagram by its Destination Connection ID (§5.2): every
connection ID a connection has issued (and, for a new server connection, the client's
original Destination Connection ID, §7.2) maps to that connection; each connection's
entry keeps the set of IDs routed to it, so forgetting a connection touches only its
own routes. A datagram for no known connection is handled statelessly, by the owned
:class:`~quic.endpoint_stateless.StatelessReplies` (its replies wait in one bounded
queue; the endpoint keeps the admission limits and the connections):

* a long header with a version we do not speak gets a Version Negotiation packet, but
  only if the datagram is at least 1200 bytes (§6.1, §14.1) and is not itself VN (at
  most ``max_pending_stateless_packets`` wait for the next send);
* an Initial packet of a supported version, in a datagram of at least 1200 bytes
  (§14.1), if this endpoint serves and the admission limits allow it, first goes
  through address validation (:mod:`quic.retry`, §8.1): with no usable token it gets a
  stateless Retry when ``QuicConfiguration.retry`` asks for one (``"always"``, or
  ``"auto"`` once ``retry_threshold`` handshakes are in flight) — no connection, no
  route, nothing kept; a bad Retry token gets a stateless INVALID_TOKEN close; a valid
  token admits it with its address validated. An admitted Initial is offered to a
  *tentative* server connection. The connection is kept only if the datagram held a
  packet that authenticated: a packet that fails authentication is discarded and no
  state is kept for it (Initial keys come from the DCID, RFC 9001 §5.2; "packets that
  cannot be authenticated are discarded", RFC 9000 §21.2, §12.2) — no route, no
  event, nothing sent. (Keeping it let a corrupted first Initial fix the connection's peer CID, so
  the intact retransmission failed the §7.3 check and was answered with
  CONNECTION_CLOSE.)
* a short-header datagram for no known connection is answered with a Stateless Reset
  (RFC 9000 §10.3) when it could be a packet of a connection we forgot:
  :class:`~quic.stateless_reset.StatelessResetter` derives the token from its
  Destination Connection ID with the endpoint's static key (the same function gives the
  token of every ID our connections issue), keeps every reset shorter than its trigger
  and rate limited (``stateless_reset_burst``, ``stateless_reset_rate``), so a flood of
  unknown-CID datagrams costs O(1) state and bounded output;
* anything else is dropped silently (garbage never raises).

A datagram whose Destination Connection ID routes nowhere may be a Stateless Reset from
a peer that lost its state: its last 16 bytes are looked up among the peer reset tokens
of the connection IDs our connections use (one per connection, kept up to date after
each call into it), and a match is handed to that connection, which checks it in
constant time (RFC 9000 §10.3.1).

A server also discards Initial packets in datagrams under 1200 bytes for connections
that exist (§14.1): a first-byte check before routing.

Admission limits (:class:`~quic.configuration.QuicConfiguration`): ``max_connections``
in all, ``max_half_open_connections`` (handshake not complete),
``max_connections_per_address`` (per source IP), counted by the owned
:class:`~quic.endpoint_admission.Admission`. When the half-open table is full, an
authenticated new Initial evicts the oldest half-open connection that has shown no
sign of a live client (it received nothing after its first datagram) — a spoofer, who
never sees our replies, cannot go further, while a real client answers within a round
trip; so a flood of spoofed Initials at rate R leaves every real handshake
``max_half_open_connections / R`` seconds to make progress instead of shutting it out
until the spoofs expire (the SYN-cache answer; Retry, above, is the stateless one, and
connections admitted with a valid token are never evicted). Only when no
such connection is left, and beyond the other limits, is a new Initial dropped
silently — not answered with CONNECTION_REFUSED (a SHOULD of RFC 9000 §5.2.2), since a
reply to an unvalidated, possibly spoofed address is work and reflected traffic an
attacker chooses (§21.1.1.2). A server connection whose handshake is not complete
``handshake_timeout`` seconds after its first Initial is abandoned silently, like an
idle connection (§10.1); once the client has proved its address (§8.1), every datagram
that makes progress restarts that deadline, so a slow handshake on a lossy path is not
cut off while it moves.

Cost per datagram is O(1) in the number of connections (O(log n) for the heap):

* ``_pending`` holds the connections that may have output — those that received a
  datagram, whose timer fired, or that the application touched (:meth:`wake`); only
  they are asked by :meth:`datagrams_to_send` (one whose call stopped at its cap of
  datagrams, :attr:`QuicConnection.more_to_send`, stays pending for the next call;
  the others wait for their next input, timer or wake — a burst of connections is
  not served a second, empty time at every transmit);
* the owned :class:`~quic.endpoint_timers.Deadlines` heap (lazy invalidation, rebuilt
  when stale entries outnumber live ones) lets :meth:`get_timer` and
  :meth:`handle_timer` touch only due connections;
* the bookkeeping after a connection received datagrams (its events passed on, its
  deadline re-filed, its peer reset token indexed, a closed one reaped) runs once per
  batch (``_touched``, :meth:`_settle`), not per datagram: every public entry point that
  reads that state (:meth:`next_event`, :meth:`get_timer`, :meth:`handle_timer`, the
  ``*datagrams_to_send`` methods, the counters) and the rare unrouted path settle first,
  so a caller sees the same state as if it ran after each datagram. A connection
  just served by a ``*datagrams_to_send`` call is noted the same way: its bookkeeping
  runs at the caller's next call (the I/O layer's ``get_timer`` or ``next_event``),
  after the datagrams left — the reply of a ping-pong does not wait for it.
* a connection that received datagrams is pending, so the next ``*datagrams_to_send``
  serves it and re-files its deadline then: the settle leaves it *unfiled*
  (``Deadlines.unfiled``) instead of computing a deadline the transmit recomputes a
  moment later; :meth:`get_timer` and :meth:`handle_timer` file it first if not.

No exception escapes :meth:`receive_datagram` (:meth:`receive_datagrams`: those of a
GRO read), :meth:`datagrams_to_send`, :meth:`handle_timer` or :meth:`get_timer`: if a
connection raises (a bug), it is closed with INTERNAL_ERROR (RFC 9000 §20.1), the
error is logged once, and the endpoint serves the others; a connection that fails again
is forgotten.

ECN (RFC 9000 §13.4): :meth:`receive_datagram` takes the ECN codepoint of the datagram
(``ecn``, default Not-ECT) and hands it to the connection; an I/O layer that can set
the codepoint of what it sends calls :meth:`marked_datagrams_to_send`, which returns
``(data, addr, ecn)`` triples (each connection's :attr:`~quic.connection.
QuicConnection.ecn_codepoint`; stateless replies are Not-ECT) instead of pairs.

Several local addresses (a server's preferred address, RFC 9000 §9.6): the I/O layer
gives :meth:`receive_datagram` the index of the socket a datagram came to (``local``,
0 the main one) and sends what :meth:`routed_datagrams_to_send` returns, ``(data,
addr, ecn, local)``, from the socket of that index: each connection chooses (§9.6.2).

Workers on one port (:mod:`quic.workers`): the endpoint issues the CIDs of a
:class:`~quic.quiclb.WorkerCids` scheme (``token_bytes``, ``connection_id_length``) and
:attr:`worker_routing` gets the datagrams no connection claims: another worker's go to
it (:meth:`receive_forwarded` there). Known connections never reach that code.

Events: :meth:`QuicEndpoint.next_event` yields ``(connection, event)`` pairs; a new
server connection is announced by :class:`ConnectionAccepted` before its own events,
and :class:`ConnectionRemoved` is the last event of every connection the endpoint
forgets (closed, or abandoned). Connection-ID routing events are consumed here and
also passed through. The driving API is the one of DESIGN.md, so the asyncio layer is
a pump; a driver that acts on a connection directly (writes, closes, consumes) calls
:meth:`wake` so that the next :meth:`datagrams_to_send` serves it.
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from itertools import repeat
from operator import itemgetter
from typing import Any

from quic.configuration import QuicConfiguration
from quic.conn_state import ConnectionState
from quic.connection import QuicConnection
from quic.endpoint_admission import Admission
from quic.endpoint_batch import feed_run, quiet, receive_datagrams, take_busy
from quic.endpoint_entry import (
    ConnectionAccepted,
    ConnectionRemoved,
    Entry,
    addr_key,
    end_trace,
)
from quic.endpoint_handover import hand_over, take_over
from quic.endpoint_stateless import StatelessReplies
from quic.endpoint_timers import Deadlines
from quic.errors import QuicProtocolError, TransportErrorCode
from quic.events import ConnectionIdIssued, ConnectionIdRetired, QuicEvent
from quic.packet import (
    peek_dcid,
    starts_with_initial,
)
from quic.qlog_endpoint import EndpointLogger, create_endpoint_logger
from quic.retry import AddressValidator, InitialVerdict
from quic.stateless_reset import MIN_RESET
from quic.workers import DROP, LOCAL, WorkerRouting

__all__ = ["ConnectionAccepted", "ConnectionRemoved", "QuicEndpoint"]

logger = logging.getLogger("quic.endpoint")

_MIN_INITIAL = 1200  # RFC 9000 §14.1
_DATA, _ADDR = itemgetter(0), itemgetter(1)  # of a connection's (data, addr, local)
_TERMINATED = ConnectionState.TERMINATED


class QuicEndpoint:
    """Demultiplexes datagrams to connections; admits server connections."""

    def __init__(
        self,
        server_configuration: QuicConfiguration | None = None,
        *,
        connection_id_length: int = 8,
        token_bytes: Callable[[int], bytes] = secrets.token_bytes,
        max_connections: int = 10_000,
    ) -> None:
        if server_configuration is not None and server_configuration.is_client:
            raise ValueError("server_configuration must have is_client=False")
        self.server_configuration = server_configuration
        self.connection_id_length = (
            server_configuration.connection_id_length
            if server_configuration is not None
            else connection_id_length
        )
        self._token_bytes = token_bytes
        self._entries: dict[QuicConnection, Entry] = {}
        self._routes: dict[bytes, QuicConnection] = {}
        # the peer's stateless reset token of the connection ID each connection uses:
        # a reset carries no connection ID we chose (RFC 9000 §10.3.1)
        self._reset_tokens: dict[bytes, QuicConnection] = {}
        self._pending: dict[QuicConnection, None] = {}  # insertion-ordered set
        self._busy: dict[QuicConnection, None] = {}  # fed a long run (take_busy)
        # entries that received datagrams since the last settle (see _settle)
        self._touched: dict[Entry, None] = {}
        # the deadline heap, and the pending entries re-filed when served (see _settle)
        self._deadlines = Deadlines(self._entries, self._internal_error)
        # the admission limits and the half-open table (quic.endpoint_admission)
        self._admission = Admission(server_configuration, max_connections)
        self._events: deque[tuple[QuicConnection, QuicEvent]] = deque()
        #: Workers on one port (quic.workers): None with one worker; set by the I/O
        #: layer, asked only for datagrams no connection claims (see "Workers")
        self.worker_routing: WorkerRouting | None = None
        #: The connections served by the last :meth:`datagrams_to_send` call.
        self.last_flushed: list[QuicConnection] = []
        # counters (observability and tests); the stateless path's are _replies'
        self.expired = 0  # connections abandoned at their handshake deadline
        self.internal_errors = 0  # connections that raised (closed with INTERNAL_ERROR)
        #: qlog of what belongs to no connection, or None: the VN, Retry and Stateless
        #: Resets sent, the datagrams dropped or refused (quic.qlog); ended by close()
        self.qlog: EndpointLogger | None = (
            create_endpoint_logger(server_configuration, token_bytes)
            if server_configuration is not None
            else None
        )
        # what is answered without a connection: VN, Retry, Stateless Reset, drops
        self._replies = StatelessReplies(
            server_configuration, self.connection_id_length, token_bytes, self.qlog
        )
        #: Retry and address validation tokens (:mod:`quic.retry`); None for a client
        self.address_validator: AddressValidator | None = self._replies.validator

    # -- inspection -----------------------------------------------------------------------

    @property
    def max_connections(self) -> int:
        """The limit on connections in all (RFC 9000 §5.2.2)."""
        return self._admission.max_connections

    @max_connections.setter
    def max_connections(self, value: int) -> None:
        self._admission.max_connections = value

    @property
    def evicted(self) -> int:
        """Half-open connections evicted by a newer Initial."""
        return self._admission.evicted

    @property
    def dropped(self) -> int:
        """Datagrams dropped: garbage, unroutable, too small, not authentic."""
        return self._replies.dropped

    @property
    def refused(self) -> int:
        """Initials refused by an admission limit."""
        return self._replies.refused

    @property
    def resets_sent(self) -> int:
        """Stateless Resets sent (RFC 9000 §10.3)."""
        return self._replies.resets_sent

    @property
    def resets_suppressed(self) -> int:
        """Stateless Resets not sent: rate limit or queue full (RFC 9000 §10.3.3)."""
        return self._replies.resets_suppressed

    @property
    def connections(self) -> list[QuicConnection]:
        """The connections of this endpoint, oldest first (a new list: O(n))."""
        if self._touched:
            self._settle()
        return list(self._entries)

    @property
    def half_open_connections(self) -> int:
        """Server connections whose handshake is not complete yet."""
        if self._touched:
            self._settle()
        return self._admission.half_open

    @property
    def route_count(self) -> int:
        """Connection IDs routed to a connection."""
        if self._touched:
            self._settle()
        return len(self._routes)

    @property
    def reset_token_count(self) -> int:
        """Peer stateless reset tokens indexed (one per connection at most)."""
        if self._touched:
            self._settle()
        return len(self._reset_tokens)

    @property
    def has_pending_output(self) -> bool:
        """True if some connection may have datagrams to send."""
        return bool(self._pending or self._replies.pending)

    # -- client side ----------------------------------------------------------------------

    def connect(self, addr: Any, configuration: QuicConfiguration, now: float) -> QuicConnection:
        """Open a client connection to ``addr``."""
        if not configuration.is_client:
            raise ValueError("connect() needs a client configuration")
        configuration.connection_id_length = self.connection_id_length
        conn = QuicConnection(
            configuration, token_bytes=self._token_bytes, reset_token=self.reset_token
        )
        entry = self._register(conn, None, None)
        conn.connect(addr, now)
        self._pending[conn] = None
        self._after_activity(entry)
        return conn

    # -- driving API ----------------------------------------------------------------------

    def wake(self, connection: QuicConnection) -> None:
        """The application acted on ``connection`` (wrote, closed, consumed data...): the
        next :meth:`datagrams_to_send` serves it. O(1)."""
        if connection in self._entries:
            self._pending[connection] = None

    def receive_datagram(
        self, data: bytes, addr: Any, now: float, ecn: int = 0, local: int = 0
    ) -> None:
        """Feed one UDP payload (``ecn``: the ECN field of its IP header, RFC 9000
        §13.4.1, if the I/O layer reads it; ``local``: the index of our local address
        it came to, 1 for a server's preferred address); never raises."""
        try:
            n = self.connection_id_length  # _receive()'s established short-header case,
            if type(data) is bytes and len(data) > n and data[0] < 0x80:  # inline: per datagram
                conn = self._routes.get(data[1 : n + 1])
                entry = None if conn is None else self._entries[conn]
                if entry is not None and not entry.half_open:
                    try:
                        entry.conn.receive_datagram(data, addr, now, ecn, local)
                    except Exception as exc:
                        self._internal_error(entry, exc)
                        return
                    self._pending[entry.conn] = None
                    self._touched[entry] = None
                    return
            self._receive(data, addr, now, ecn, local)
        except Exception:  # a bug in the endpoint itself: drop the datagram, keep serving
            self._drop(now, "internal_error", data)
            logger.exception("QUIC endpoint failed on a datagram; dropped it")

    # datagrams of one GRO read, the connections fed long runs of them
    # (quic.endpoint_batch): methods, without a call more
    receive_datagrams = receive_datagrams
    _feed_run = feed_run
    take_busy = take_busy

    def receive_forwarded(
        self, data: bytes, addr: Any, now: float, ecn: int = 0, local: int = 0
    ) -> None:
        """A datagram another worker forwarded to this one (:mod:`quic.workers`): as
        :meth:`receive_datagram`, except that it is never forwarded again."""
        try:
            self._receive(data, addr, now, ecn, local, True)
        except Exception:
            self._drop(now, "internal_error", data)
            logger.exception("QUIC endpoint failed on a forwarded datagram; dropped it")

    def _receive(
        self, data: bytes, addr: Any, now: float, ecn: int, local: int = 0, forwarded: bool = False
    ) -> Entry | None:
        """Route and feed one datagram; the entry of the established connection a short
        header's connection ID routed it to (see :meth:`receive_datagrams`), else None."""
        n = self.connection_id_length  # peek_dcid()'s short header case, inline:
        dcid = data[1 : n + 1] if data and not data[0] & 0x80 and len(data) > n else None
        if type(dcid) is not bytes:  # a long header, a short datagram, not bytes
            try:
                dcid = peek_dcid(data, n)
            except QuicProtocolError:
                self._drop(now, "invalid", data, "no connection ID")
                return None
        conn = self._routes.get(dcid)
        if conn is None and self._touched:
            self._settle()  # routes and reset tokens up to date for the rare path
            conn = self._routes.get(dcid)
        routed = conn is not None
        if conn is None and len(data) >= MIN_RESET:
            conn = self._reset_tokens.get(bytes(data[-16:]))  # RFC 9000 §10.3.1
        if conn is None:
            routing = self.worker_routing
            if routing is not None:  # workers on one port: perhaps another worker's
                target = routing.divert(data, addr, ecn, local, forwarded)
                if target != LOCAL:
                    if target == DROP:
                        self._drop(now, "connection_unknown", data, "not routable")
                    return None
            self._stateless_receive(data, addr, now, ecn)
            return None
        if (
            len(data) < _MIN_INITIAL
            and data[0] & 0x80  # a long header: the call below only then (per datagram)
            and not conn.is_client
            and starts_with_initial(data)
        ):
            self._drop(now, "invalid", data, "small Initial")  # RFC 9000 §14.1
            return None
        entry = self._entries[conn]
        if entry.half_open:
            self._admission.heard_again(conn)  # a second datagram: a live client, likely
        try:
            conn.receive_datagram(data, addr, now, ecn, local)
        except Exception as exc:
            self._internal_error(entry, exc)
            return None
        self._pending[conn] = None
        if entry.half_open:
            if (dcid != entry.first_dcid and len(dcid) >= 8) or conn.address_validated:
                self._admission.progress(entry, now)  # the handshake deadline restarts
            self._touched[entry] = None  # bookkeeping once per batch: _settle
            return None
        self._touched[entry] = None
        return entry if routed and not data[0] & 0x80 else None

    def _settle(self) -> None:
        """The bookkeeping of every connection that received datagrams since the last
        call (its events passed on, its deadline re-filed, its reset token indexed, a
        closed one reaped): once per batch, not per datagram. Every public entry point
        that reads that state settles first, so callers see no difference."""
        touched = self._touched
        self._touched = {}
        entries = self._entries
        pending = self._pending
        unfiled = self._deadlines.unfiled
        for entry in touched:
            conn = entry.conn
            if conn in entries:
                if conn in pending:  # served (and its deadline re-filed) at the next send
                    self._after_activity(entry, False)
                    if conn in entries:
                        unfiled[entry] = None
                else:
                    self._after_activity(entry)

    def _stateless_receive(self, data: bytes, addr: Any, now: float, ecn: int = 0) -> None:
        """A datagram no connection claims: answered or dropped statelessly
        (:mod:`quic.endpoint_stateless`), or an Initial that may open a connection: the
        admission limits, then address validation (RFC 9000 §8.1), then admitted."""
        replies = self._replies
        header = replies.unknown(data, addr, now)
        config = self.server_configuration
        if header is None or config is None:
            return
        admission = self._admission
        if not admission.admits(addr, len(self._entries)):
            replies.refuse(now, data, "admission limit")
            return
        verdict = replies.validate(header, data, addr, admission.half_open, now)
        if verdict is not None:
            assert header.version is not None
            self._accept(
                config, header.dcid, header.scid, header.version, data, addr, now, verdict, ecn
            )

    def reset_token(self, cid: bytes) -> bytes:
        """The stateless reset token of ``cid`` (RFC 9000 §10.3.2)."""
        return self._replies.reset_token(cid)

    def _drop(self, now: float, trigger: str, data: bytes, reason: str | None = None) -> None:
        """Count a datagram dropped without a connection; log it (``packet_dropped``)."""
        self._replies.drop(now, trigger, data, reason)

    def _refuse(self, now: float, data: bytes, reason: str) -> None:
        """Count an Initial refused by an admission limit; log it (trigger ``rejected``)."""
        self._replies.refuse(now, data, reason)

    def close(self) -> None:
        """The owner is done (its socket closed): end the qlog traces of the connections
        still held (``connection_closed``, trigger ``aborted``, if none was logged) and
        of the endpoint, flushed and closed. Idempotent; datagrams fed afterwards are
        handled but no longer traced."""
        for conn in self._entries:
            if conn.qlog is not None:
                conn.qlog.abort("endpoint closed")
        if self.qlog is not None:
            self.qlog.close()

    def _make_room(self) -> bool:
        """Before registering an authenticated new connection: evict the oldest
        evictable half-open one if a limit is reached; False if there is no room."""
        admission = self._admission
        if admission.room(len(self._entries)):
            return True
        oldest = admission.evict()
        if oldest is None:
            return False
        self._abandon(self._entries[oldest], "evicted by a newer Initial")
        return True

    def _accept(
        self,
        config: QuicConfiguration,
        dcid: bytes,
        scid: bytes,
        version: int,
        data: bytes,
        addr: Any,
        now: float,
        verdict: InitialVerdict,
        ecn: int = 0,
    ) -> None:
        """A tentative server connection; kept only if the datagram authenticated."""
        validator = self.address_validator
        assert validator is not None
        try:
            conn = QuicConnection(
                config,
                original_destination_connection_id=verdict.original_dcid or dcid,
                peer_connection_id=scid,
                version=version,
                retry_source_connection_id=verdict.retry_scid,
                token_bytes=self._token_bytes,
                address_validated=verdict.validated,
                issue_token=validator.issue_new_token if config.send_new_token else None,
                reset_token=self.reset_token,
            )
            conn.peer_address = addr
            conn.receive_datagram(data, addr, now, ecn)
        except Exception:  # a bug: nothing was registered, nothing to undo
            self._drop(now, "internal_error", data)
            logger.exception("QUIC connection failed on its first datagram; dropped it")
            return
        if not conn.has_authenticated_packet:
            # RFC 9000 §21.2, §12.2: not authenticated, so discarded; no state kept for it
            self._drop(now, "decryption_failure", data)
            end_trace(conn)
            return
        if not self._make_room():
            self._refuse(now, data, "connection limit")
            end_trace(conn)
            return
        # a token proved a live client: never evicted
        entry = self._register(conn, addr, now + config.handshake_timeout, not verdict.validated)
        entry.first_dcid = dcid
        self._route(entry, dcid)  # the client keeps it until our first Initial (§7.2)
        self._events.append((conn, ConnectionAccepted(conn)))
        self._pending[conn] = None
        self._after_activity(entry)

    def datagrams_to_send(
        self, now: float, only: Iterable[QuicConnection] | None = None
    ) -> list[tuple[bytes, Any]]:
        """Everything the pending connections (and stateless replies) have to send;
        ``only``: just these connections, those of them that are pending (the others
        stay pending for the next call)."""
        return [(data, addr) for data, addr, _, _ in self.routed_datagrams_to_send(now, only)]

    def marked_datagrams_to_send(
        self, now: float, only: Iterable[QuicConnection] | None = None
    ) -> list[tuple[bytes, Any, int]]:
        """:meth:`datagrams_to_send` with the ECN codepoint of each datagram (0 Not-ECT,
        2 ECT(0); RFC 9000 §13.4.2), for an I/O layer that can set it."""
        replies = self._replies
        out = [(data, addr, 0) for data, addr in replies.take()] if replies.pending else []
        for datagrams, codepoint in self._serve(now, only):
            if len(datagrams) == 1:  # a reply, a ping-pong: no list to build and copy
                data, addr, _ = datagrams[0]
                out.append((data, addr, codepoint))
            else:  # the tuples made in C, not by a comprehension per datagram
                out.extend(zip(map(_DATA, datagrams), map(_ADDR, datagrams), repeat(codepoint)))
        return out

    def routed_datagrams_to_send(
        self, now: float, only: Iterable[QuicConnection] | None = None
    ) -> list[tuple[bytes, Any, int, int]]:
        """:meth:`marked_datagrams_to_send` with the index of the local address each
        datagram leaves from, ``(data, addr, ecn, local)``, for an I/O layer with more
        than one socket (a server's preferred address, RFC 9000 §9.6.2). Stateless
        replies leave the first address."""
        out = [(data, addr, 0, 0) for data, addr in self._replies.take()]
        for datagrams, codepoint in self._serve(now, only):
            out.extend([(data, addr, codepoint, local) for data, addr, local in datagrams])
        return out

    def _serve(
        self, now: float, only: Iterable[QuicConnection] | None = None
    ) -> list[tuple[list[tuple[bytes, Any, int]], int]]:
        """The datagrams of every pending connection (``only``: of these, if pending),
        with its ECN codepoint."""
        if self._touched:
            self._settle()
        if only is None:
            pending = self._pending
            self._pending = {}
            if self._busy:
                self._busy = {}  # served below
        else:
            pending = _take(self._pending, only)
        flushed: list[QuicConnection] = []
        batches: list[tuple[list[tuple[bytes, Any, int]], int]] = []
        entries = self._entries
        unfiled = self._deadlines.unfiled
        touched = self._touched  # empty: settled above
        for conn in pending:
            entry = entries.get(conn)
            if entry is None:
                continue
            try:
                if not conn.datagrams.pending and quiet(conn, now):  # nothing to send: no build,
                    flushed.append(conn)  # its deadline filed lazily, its events passed on
                    unfiled[entry] = None
                    if (event := conn.next_event()) is not None:
                        self._drain(entry, event)
                    continue
                data = conn.routed_datagrams_to_send(now)
            except Exception as exc:
                self._internal_error(entry, exc)
                continue
            if data:
                batches.append((data, conn.ecn_codepoint))
                if conn.more_to_send:  # the call stopped at its cap: more may go now
                    self._pending[conn] = None
            flushed.append(conn)
            if unfiled:
                unfiled.pop(entry, None)
            # its bookkeeping (_after_activity: events passed on, deadline re-filed...)
            # at the next settle: the caller's next call, after these datagrams left
            touched[entry] = None
        self.last_flushed = flushed
        return batches

    def get_timer(self) -> float | None:
        """The earliest deadline of any connection (O(1) amortised)."""
        if self._touched:
            self._settle()
        return self._deadlines.earliest()

    def handle_timer(self, now: float) -> None:
        """Fire every due connection timer and handshake deadline; safe to call early."""
        if self._touched:
            self._settle()
        entries = self._entries
        for entry in self._deadlines.due(now):
            if entry.conn not in entries:
                continue  # removed while handling an earlier one
            if entry.half_open and entry.deadline is not None and now >= entry.deadline:
                self._expire(entry)
                continue
            conn = entry.conn
            try:
                owed = conn.handle_timer(now)
            except Exception as exc:
                self._internal_error(entry, exc)
                continue
            if owed:  # not a rest alone: served at the next send, which re-files its
                self._pending[conn] = None  # deadline (once per activation, not twice)
                self._after_activity(entry, False)
                if conn in entries:
                    self._deadlines.unfiled[entry] = None
            else:
                self._after_activity(entry)

    def next_event(self) -> tuple[QuicConnection, QuicEvent] | None:
        if self._touched:
            self._settle()
        events = self._events
        return events.popleft() if events else None

    # -- bookkeeping ----------------------------------------------------------------------

    def _register(
        self, conn: QuicConnection, addr: Any, deadline: float | None, evictable: bool = False
    ) -> Entry:
        entry = Entry(conn, addr_key(addr) if addr is not None else None, deadline)
        self._entries[conn] = entry
        self._admission.added(entry, evictable)
        self._route(entry, conn.host_cid)
        return entry

    def _route(self, entry: Entry, cid: bytes) -> None:
        if self._routes.setdefault(cid, entry.conn) is entry.conn:
            entry.cids[cid] = None

    def _after_activity(self, entry: Entry, refile: bool = True) -> None:
        """After any call into a connection: pass its events on, reap it if closed,
        note a completed handshake, and re-file its deadline (``refile``; else the
        caller notes it in ``Deadlines.unfiled``)."""
        conn = entry.conn
        try:
            event = conn.next_event()  # _drain(), inline: per datagram received
            while event is not None:
                if type(event) is ConnectionIdIssued or type(event) is ConnectionIdRetired:
                    self._drain(entry, event)  # routes to change: this event and the rest
                    break
                self._events.append((conn, event))
                event = conn.next_event()
            if conn.state is _TERMINATED:  # is_closed, without the property
                self._remove(entry)
                return
            token = conn.cids.active_peer_reset_token
            if token != entry.reset_token:
                self._index_reset_token(entry, token)
            if entry.half_open and conn.handshake_complete:
                self._admission.handshake_done(entry)
            if refile:
                self._deadlines.schedule(entry, conn.get_timer())
        except Exception as exc:
            self._internal_error(entry, exc)

    def _index_reset_token(self, entry: Entry, token: bytes | None) -> None:
        tokens = self._reset_tokens
        old = entry.reset_token
        if old is not None and tokens.get(old) is entry.conn:
            del tokens[old]
        entry.reset_token = token
        if token is not None:
            tokens.setdefault(token, entry.conn)

    def _drain(self, entry: Entry, event: QuicEvent | None = None) -> None:
        """Pass the connection's events on (``event``: the first, already taken)."""
        conn = entry.conn
        events = self._events
        routes = self._routes
        if event is None:
            event = conn.next_event()
        while event is not None:
            # final event classes: type(), not an isinstance() call per event
            if type(event) is ConnectionIdIssued:
                self._route(entry, event.connection_id)
            elif type(event) is ConnectionIdRetired:
                cid = event.connection_id
                entry.cids.pop(cid, None)
                if routes.get(cid) is conn:
                    del routes[cid]
            events.append((conn, event))
            event = conn.next_event()

    def _expire(self, entry: Entry) -> None:
        """The handshake deadline passed: abandon the connection silently (§10.1)."""
        self.expired += 1
        self._abandon(entry, "handshake timeout")

    def _abandon(self, entry: Entry, reason: str) -> None:
        """Forget a half-open connection without sending anything."""
        conn = entry.conn
        try:
            # nothing is sent: the endpoint forgets the connection right away
            conn.close(TransportErrorCode.NO_ERROR, reason, application=False)
            self._drain(entry)
        except Exception as exc:
            logger.debug("closing an expired connection failed: %r", exc)
        self._remove(entry)

    def _internal_error(self, entry: Entry, exc: BaseException) -> None:
        """A connection raised (a bug): close it with INTERNAL_ERROR, log once; if it
        fails again, forget it."""
        conn = entry.conn
        if conn not in self._entries:
            return
        if not entry.failed:
            entry.failed = True
            self.internal_errors += 1
            logger.error("internal error in a QUIC connection; closing it", exc_info=exc)
            try:
                conn.close(TransportErrorCode.INTERNAL_ERROR, type(exc).__name__, application=False)
                self._drain(entry)
                if not conn.is_closed:
                    self._pending[conn] = None  # send the CONNECTION_CLOSE
                    self._deadlines.schedule(entry, conn.get_timer())
                    return
            except Exception as again:
                logger.debug("closing a failed connection failed too: %r", again)
        self._remove(entry)

    # a live client connection moving to another endpoint (quic.endpoint_handover)
    hand_over = hand_over
    take_over = take_over

    def _remove(self, entry: Entry, ended: bool = True) -> None:
        """Forget a connection: only its own routes, counters and queue slots
        (``ended``: its :class:`ConnectionRemoved` event, its trace closed)."""
        conn = entry.conn
        if self._entries.pop(conn, None) is None:
            return
        routes = self._routes
        for cid in entry.cids:
            if routes.get(cid) is conn:
                del routes[cid]
        entry.cids.clear()
        self._index_reset_token(entry, None)
        self._deadlines.forget(entry)
        self._pending.pop(conn, None)
        self._admission.removed(entry)
        if ended:
            self._events.append((conn, ConnectionRemoved(conn)))
            end_trace(conn)


# Comprehensions over a caller's locals, in functions of their own: Python builds the
# caller a cell per captured local at every call, taken or not (per transmit; issue 10).


def _take(
    waiting: dict[QuicConnection, None], only: Iterable[QuicConnection]
) -> dict[QuicConnection, None]:
    """The connections of ``only`` that are ``waiting``, taken out of it."""
    pending = {conn: None for conn in only if conn in waiting}
    for conn in pending:
        del waiting[conn]
    return pending
