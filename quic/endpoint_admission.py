"""Which new connections a QUIC endpoint admits, and which half-open ones give way
(RFC 9000 §5.2.2, §8.1, §10.1, §21.1.1.2).

Theory of operation
-------------------
:class:`Admission` is owned by :class:`~quic.endpoint.QuicEndpoint`. It counts what the
admission limits of :class:`~quic.configuration.QuicConfiguration` bound: connections in
all (``max_connections``, the endpoint's), half-open server connections (handshake not
complete, ``max_half_open_connections``) and connections per source IP
(``max_connections_per_address``). The endpoint tells it of every connection it
registers (:meth:`added`), of every one it forgets (:meth:`removed`), of a completed
handshake (:meth:`handshake_done`) and of a half-open connection heard from again
(:meth:`heard_again`); it asks :meth:`admits` before address validation and
:meth:`room` / :meth:`evict` before it registers an authenticated new connection.

Eviction (the SYN-cache answer to a flood of spoofed Initials): a half-open server
connection that received nothing after its first datagram is *evictable*, oldest first
(an insertion-ordered dict). A spoofer never sees our replies, so it cannot go further,
while a real client answers within a round trip; when a limit is reached, the oldest
evictable connection gives way to the new one (:meth:`evict` names it, the endpoint
abandons it silently). A connection admitted with a valid address validation token is
never evictable (the token proved a live client, §8.1). Only when no connection can be
evicted is a new Initial refused (dropped silently, not answered with
CONNECTION_REFUSED: a reply to an unvalidated address is work an attacker chooses,
§21.1.1.2).

The handshake deadline of a half-open connection (``handshake_timeout`` after its first
Initial, §10.1) restarts whenever the client, having shown that it receives our packets,
makes progress (:meth:`progress`); the endpoint abandons a connection whose deadline
passes. Every table here has an exit: :meth:`removed` undoes :meth:`added`, and a
completed handshake leaves the half-open count and the evictable set.
"""

from __future__ import annotations

from typing import Any

from quic.configuration import QuicConfiguration
from quic.connection import QuicConnection
from quic.endpoint_entry import Entry, addr_key

__all__ = ["Admission"]


class Admission:
    """The admission limits and the half-open table of one endpoint."""

    __slots__ = ("_evictable", "config", "evicted", "half_open", "max_connections", "per_address")

    def __init__(self, config: QuicConfiguration | None, max_connections: int) -> None:
        self.config = config  # the server configuration; None for a client endpoint
        self.max_connections = max_connections
        #: Server connections whose handshake is not complete.
        self.half_open = 0
        #: Connections counted per source IP (read-only outside; an IP leaves at 0).
        self.per_address: dict[Any, int] = {}
        #: Half-open connections evicted by a newer Initial.
        self.evicted = 0
        # half-open connections heard from only once, oldest first (see the module doc)
        self._evictable: dict[QuicConnection, None] = {}

    @property
    def evictable(self) -> int:
        """How many half-open connections could give way to a new one now."""
        return len(self._evictable)

    # -- questions ------------------------------------------------------------------------

    def admits(self, addr: Any, connections: int) -> bool:
        """May an Initial from ``addr`` open a connection, ``connections`` being held
        (RFC 9000 §5.2.2)? A full table admits it if a connection can be evicted."""
        config = self.config
        if config is None:
            return False
        evictable = bool(self._evictable)
        if self.half_open >= config.max_half_open_connections and not evictable:
            return False
        return (
            connections < self.max_connections + evictable
            and self.per_address.get(addr_key(addr), 0) < config.max_connections_per_address
        )

    def room(self, connections: int) -> bool:
        """True if one more connection fits the limits without an eviction."""
        config = self.config
        return (
            config is not None
            and self.half_open < config.max_half_open_connections
            and connections < self.max_connections
        )

    def evict(self) -> QuicConnection | None:
        """The oldest evictable connection, taken off the evictable set and counted in
        :attr:`evicted`; None if there is none. The caller abandons it."""
        evictable = self._evictable
        if not evictable:
            return None
        oldest = next(iter(evictable))
        del evictable[oldest]
        self.evicted += 1
        return oldest

    # -- what the endpoint tells it -------------------------------------------------------

    def added(self, entry: Entry, evictable: bool) -> None:
        """The endpoint registered ``entry``; ``evictable``: a half-open server connection
        admitted without a valid token."""
        key = entry.addr_key
        if key is not None:
            self.per_address[key] = self.per_address.get(key, 0) + 1
        if entry.half_open:
            self.half_open += 1
            if evictable:
                self._evictable[entry.conn] = None

    def heard_again(self, conn: QuicConnection) -> None:
        """A half-open connection received another datagram: a live client, likely, so
        it is no longer evictable."""
        self._evictable.pop(conn, None)

    def progress(self, entry: Entry, now: float) -> None:
        """A half-open connection whose client showed it receives our packets (a
        Handshake packet, a token, or a connection ID we chose: §8.1) was fed: if it
        processed new packets, its handshake deadline restarts."""
        processed = entry.conn.packets_processed
        config = self.config
        if processed > entry.progress and config is not None:
            entry.progress = processed
            entry.deadline = now + config.handshake_timeout

    def handshake_done(self, entry: Entry) -> None:
        """``entry``'s handshake completed: it is half-open no more, has no deadline."""
        if entry.half_open:
            entry.half_open = False
            entry.deadline = None
            self.half_open -= 1
            self._evictable.pop(entry.conn, None)

    def removed(self, entry: Entry) -> None:
        """The endpoint forgot ``entry`` (once): its counts and its slot go."""
        self._evictable.pop(entry.conn, None)
        if entry.half_open:
            self.half_open -= 1
        key = entry.addr_key
        if key is not None:
            left = self.per_address[key] - 1
            if left:
                self.per_address[key] = left
            else:
                del self.per_address[key]
