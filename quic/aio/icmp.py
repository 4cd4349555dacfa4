"""ICMP hints for client pumps (``icmp_hints=True``; Linux).

Theory of operation
-------------------
The pump enables the socket's error queue (:func:`quic.aio.udp.enable_error_queue`) once
its own reader owns the socket, and drains it (:func:`read_hints`) whenever the socket
reports an error or wakes the reader with nothing to read. A port or host unreachable
for the address of a client connection that has not yet received one authenticated
packet ends that connection at once (:func:`refused`: CONNECTION_REFUSED, local; the
pump keeps the errno in ``unreachable`` for :func:`quic.aio.connect`): nothing answers
there, and waiting for the handshake timeout would only delay the failure. Once the peer
has answered, ICMP errors are only counted (``icmp_errors``): they can be forged or
stale, so they are a hint and never end an established connection (RFC 8085 §5.2;
RFC 9000 §14.2.1 treats ICMP likewise, as unauthenticated). Nothing is kept per error:
the queue is read to its end each time and each entry is looked at once.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from quic.aio.udp import read_error_queue
from quic.connection import QuicConnection
from quic.errors import TransportErrorCode

if TYPE_CHECKING:
    from quic.aio.pump import QuicEndpointProtocol

__all__ = ["UNREACHABLE", "read_errors", "read_hints", "refused"]

#: the errnos that end a client connection that has heard nothing from its peer
UNREACHABLE = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH})


def read_hints(sock: socket.socket | None) -> Iterator[tuple[int, Any]]:
    """Every ``(errno, address)`` waiting on ``sock``'s error queue (none once the
    socket is closed)."""
    if sock is None or sock.fileno() < 0:
        return iter(())
    return iter(read_error_queue(sock))


def refused(connections: Iterable[QuicConnection], code: int, addr: Any) -> list[QuicConnection]:
    """Close, with CONNECTION_REFUSED, the client connections to ``addr`` that have not
    received an authenticated packet (an ICMP ``code`` unreachable came back for it);
    returns them (the pump wakes each). The others are left alone (RFC 8085 §5.2)."""
    if code not in UNREACHABLE or not isinstance(addr, tuple) or len(addr) < 2:
        return []
    where = tuple(addr[:2])
    ended = []
    for conn in list(connections):
        peer = conn.peer_address
        if (
            not conn.is_client
            or conn.has_authenticated_packet
            or conn.is_closed
            or peer is None
            or tuple(peer[:2]) != where
        ):
            continue
        reason = f"ICMP: {os.strerror(code)} ({where[0]} port {where[1]})"
        conn.close(TransportErrorCode.CONNECTION_REFUSED, reason, application=False)
        ended.append(conn)
    return ended


def read_errors(self: QuicEndpointProtocol) -> None:
    """Drain the pump's error queue (its ``_read_errors`` method): every hint counted
    (``icmp_errors``), the connections it refuses (:func:`refused`) marked with the errno
    (the pump's and their session's ``unreachable``) and woken, so they close now."""
    for code, addr in read_hints(self._errors):
        self.icmp_errors += 1
        for conn in refused(self.sessions, code, addr):
            self.unreachable = code
            session = self.sessions.get(conn)
            if session is not None:
                session.unreachable = code
            self.wake(conn)
