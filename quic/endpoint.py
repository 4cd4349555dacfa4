"""The Sans-I/O QUIC endpoint: many connections behind one UDP socket (RFC 9000 §5.2).

Theory of operation
-------------------
The endpoint routes each datagram by its Destination Connection ID (§5.2): every
connection ID a connection has issued (and, for a new server connection, the client's
original Destination Connection ID, §7.2) maps to that connection. A datagram for no
known connection is handled statelessly:

* a long header with a version we do not speak gets a Version Negotiation packet, but
  only if the datagram is at least 1200 bytes (§6.1, §14.1) and is not itself VN;
* an Initial packet of a supported version, in a datagram of at least 1200 bytes
  (§14.1), creates a server connection (if this endpoint serves);
* anything else is dropped silently (garbage never raises).

Events: :meth:`QuicEndpoint.next_event` yields ``(connection, event)`` pairs; a new
server connection is announced by :class:`ConnectionAccepted` before its own events.
Connection-ID routing events are consumed here and also passed through.
The driving API is the one of DESIGN.md, so the asyncio layer is a pump.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from quic.configuration import QuicConfiguration
from quic.connection import QuicConnection
from quic.errors import QuicProtocolError
from quic.events import ConnectionIdIssued, ConnectionIdRetired, QuicEvent
from quic.packet import PacketType, encode_version_negotiation, parse_header, peek_dcid

__all__ = ["ConnectionAccepted", "QuicEndpoint"]

_MIN_INITIAL = 1200


@dataclass(frozen=True, slots=True)
class ConnectionAccepted(QuicEvent):
    """A client opened a new connection to this (server) endpoint."""

    connection: QuicConnection


class QuicEndpoint:
    """Demultiplexes datagrams to connections; creates server connections."""

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
        self.max_connections = max_connections
        self._routes: dict[bytes, QuicConnection] = {}
        self.connections: list[QuicConnection] = []
        self._events: deque[tuple[QuicConnection, QuicEvent]] = deque()
        self._stateless: list[tuple[bytes, Any]] = []
        self.dropped = 0

    # -- client side ----------------------------------------------------------------------

    def connect(self, addr: Any, configuration: QuicConfiguration, now: float) -> QuicConnection:
        """Open a client connection to ``addr``."""
        if not configuration.is_client:
            raise ValueError("connect() needs a client configuration")
        configuration.connection_id_length = self.connection_id_length
        conn = QuicConnection(configuration, token_bytes=self._token_bytes)
        self._add(conn)
        conn.connect(addr, now)
        self._drain(conn)
        return conn

    # -- driving API ----------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        try:
            dcid = peek_dcid(data, self.connection_id_length)
        except QuicProtocolError:
            self.dropped += 1
            return
        conn = self._routes.get(dcid)
        if conn is None:
            conn = self._stateless_receive(data, addr, now)
            if conn is None:
                return
        conn.receive_datagram(data, addr, now)
        self._drain(conn)

    def _stateless_receive(self, data: bytes, addr: Any, now: float) -> QuicConnection | None:
        try:
            header = parse_header(data, 0, self.connection_id_length)
        except QuicProtocolError:
            self.dropped += 1
            return None
        if not header.is_long or header.version == 0:
            self.dropped += 1  # short header for nobody, or a VN packet: drop (§6.1)
            return None
        config = self.server_configuration
        versions = config.supported_versions if config is not None else ()
        if header.version not in versions:
            if config is not None and len(data) >= _MIN_INITIAL:
                vn = encode_version_negotiation(
                    header.scid, header.dcid, [*versions, 0x1A2A3A4A], 0x15
                )
                self._stateless.append((vn, addr))  # RFC 9000 §6.1
            else:
                self.dropped += 1
            return None
        if (
            config is None
            or header.packet_type is not PacketType.INITIAL
            or len(data) < _MIN_INITIAL  # RFC 9000 §14.1
            or len(header.dcid) < 8  # RFC 9000 §7.2
            or len(self.connections) >= self.max_connections
        ):
            self.dropped += 1
            return None
        assert header.version is not None
        conn = QuicConnection(
            config,
            original_destination_connection_id=header.dcid,
            peer_connection_id=header.scid,
            version=header.version,
            token_bytes=self._token_bytes,
        )
        conn.peer_address = addr
        self._add(conn)
        self._routes[header.dcid] = conn  # the client keeps it until our first Initial
        self._events.append((conn, ConnectionAccepted(conn)))
        return conn

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        out = self._stateless
        self._stateless = []
        for conn in self.connections:
            out.extend(conn.datagrams_to_send(now))
            self._drain(conn)
        self._reap()
        return out

    def get_timer(self) -> float | None:
        timer: float | None = None
        for conn in self.connections:
            t = conn.get_timer()
            if t is not None and (timer is None or t < timer):
                timer = t
        return timer

    def handle_timer(self, now: float) -> None:
        for conn in self.connections:
            t = conn.get_timer()
            if t is not None and t <= now:
                conn.handle_timer(now)
                self._drain(conn)
        self._reap()

    def next_event(self) -> tuple[QuicConnection, QuicEvent] | None:
        events = self._events
        return events.popleft() if events else None

    # -- bookkeeping ----------------------------------------------------------------------

    def _add(self, conn: QuicConnection) -> None:
        self.connections.append(conn)
        self._routes[conn.host_cid] = conn

    def _drain(self, conn: QuicConnection) -> None:
        events = self._events
        routes = self._routes
        while (event := conn.next_event()) is not None:
            if isinstance(event, ConnectionIdIssued):
                routes[event.connection_id] = conn
            elif isinstance(event, ConnectionIdRetired) and routes.get(event.connection_id) is conn:
                del routes[event.connection_id]
            events.append((conn, event))

    def _reap(self) -> None:
        if not any(c.is_closed for c in self.connections):
            return
        alive = []
        for conn in self.connections:
            if conn.is_closed:
                for cid in [c for c, owner in self._routes.items() if owner is conn]:
                    del self._routes[cid]
            else:
                alive.append(conn)
        self.connections = alive
