"""A live client connection moving from one :class:`~quic.endpoint.QuicEndpoint` to
another (a connection moving to a socket of its own, :mod:`quic.aio.shared`): the
endpoint takes these functions as its methods ``hand_over`` and ``take_over``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quic.connection import QuicConnection
    from quic.endpoint import QuicEndpoint

__all__ = ["hand_over", "take_over"]


def hand_over(self: QuicEndpoint, conn: QuicConnection) -> list[bytes]:
    """Forget the live client connection ``conn`` without ending it, for another
    endpoint to :meth:`take_over` (a connection moving to a socket of its own,
    :mod:`quic.aio.shared`); returns the connection IDs routed to it. Its queued
    events stay queued here: the caller passes them on first."""
    if self._touched:
        self._settle()  # its events queued, before it is forgotten
    entry = self._entries.get(conn)
    if entry is None or not conn.is_client:
        raise ValueError("not a client connection of this endpoint")
    cids = list(entry.cids)
    self._remove(entry, ended=False)
    return cids


def take_over(self: QuicEndpoint, conn: QuicConnection, cids: list[bytes]) -> None:
    """Serve the client connection another endpoint handed over, routing ``cids``."""
    entry = self._register(conn, None, None)
    for cid in cids:
        self._route(entry, cid)
    self._pending[conn] = None
    self._after_activity(entry)
