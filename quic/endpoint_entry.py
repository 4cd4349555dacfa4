"""What a :class:`~quic.endpoint.QuicEndpoint` keeps per connection, and the events it
adds to those of its connections.

Theory of operation
-------------------
:class:`Entry` is the endpoint's record of one connection: the connection IDs routed to
it, the source IP it counts against (per-address admission limit), the handshake
deadline of a half-open server connection and the progress that restarts it, the
connection's deadline in the endpoint's heap (valid while ``seq`` is current: lazy
invalidation), and the peer reset token indexed for it. :class:`ConnectionAccepted`
and :class:`ConnectionRemoved` open and close the event stream of each connection the
endpoint owns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quic.connection import QuicConnection
from quic.events import QuicEvent

__all__ = ["ConnectionAccepted", "ConnectionRemoved", "Entry", "addr_key", "end_trace"]


@dataclass(frozen=True, slots=True)
class ConnectionAccepted(QuicEvent):
    """A client opened a new connection to this (server) endpoint."""

    connection: QuicConnection


@dataclass(frozen=True, slots=True)
class ConnectionRemoved(QuicEvent):
    """The endpoint forgot this connection (closed, or abandoned before its handshake
    completed); it is the connection's last event."""

    connection: QuicConnection


class Entry:
    """What the endpoint keeps per connection."""

    __slots__ = (
        "addr_key",
        "cids",
        "conn",
        "deadline",
        "failed",
        "first_dcid",
        "half_open",
        "progress",
        "reset_token",
        "seq",
        "timer",
    )

    def __init__(self, conn: QuicConnection, addr_key: Any, deadline: float | None) -> None:
        self.conn = conn
        # every connection ID routed to ``conn`` (a dict used as a set: 224 bytes for
        # up to 5 IDs, a set's table grows to 728 at 5; issue 10, memory)
        self.cids: dict[bytes, None] = {}
        self.addr_key = addr_key  # source IP counted against the per-address limit
        self.deadline = deadline  # handshake deadline (server, until complete)
        self.half_open = deadline is not None
        self.first_dcid = b""  # the client's first DCID (server), chosen by the client
        self.progress = 0  # packets the connection had processed when the deadline was set
        self.timer: float | None = None  # deadline of the valid heap entry
        self.seq = 0  # its sequence number; 0: no valid heap entry
        self.failed = False  # raised once already (closed with INTERNAL_ERROR)
        self.reset_token: bytes | None = None  # the peer's token for the CID in use


def addr_key(addr: Any) -> Any:
    """The source IP of ``addr`` (``(host, port, ...)``), the unit of per-address limits."""
    if isinstance(addr, tuple) and addr:
        return addr[0]
    return addr


def end_trace(conn: QuicConnection) -> None:
    """A connection is forgotten (or a tentative one discarded): its qlog trace ends
    (a close not yet logged is logged; the file is closed)."""
    if conn.qlog is not None:
        conn.qlog.end()
