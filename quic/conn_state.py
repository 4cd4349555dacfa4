"""The life of a QUIC connection (RFC 9000 §10), shared by the connection and the
functions that read its state (:mod:`quic.conn_timers`)."""

from __future__ import annotations

from enum import Enum

__all__ = ["LIVE", "ConnectionState"]


class ConnectionState(Enum):
    """RFC 9000 §10: the life of a connection."""

    HANDSHAKE = "handshake"
    CONNECTED = "connected"
    CLOSING = "closing"
    DRAINING = "draining"
    TERMINATED = "terminated"


#: The states in which packets are processed and sent normally.
LIVE = (ConnectionState.HANDSHAKE, ConnectionState.CONNECTED)
