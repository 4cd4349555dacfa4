"""Client migration for the pump (RFC 9000 §9.2): moving a
:class:`~quic.aio.pump.QuicEndpointProtocol` to a new UDP socket.

Theory of operation
-------------------
:func:`rebind` binds the new socket first — a failure changes nothing — through the
same opener as the first one (:func:`quic.aio.owned.open_datagram_endpoint`), with the
pump as its protocol; the pump's ``connection_made`` makes the new socket the one
everything leaves from and runs ``on_switch`` at that moment, before anything is sent
from it. Then the old socket is closed; the endpoint and its connections stay, and the
pump resolves ``closed`` only when its last socket is gone (it counts its sockets).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from quic.aio.owned import open_datagram_endpoint

if TYPE_CHECKING:
    from quic.aio.pump import QuicEndpointProtocol

__all__ = ["rebind"]


async def rebind(
    pump: QuicEndpointProtocol,
    host: str | None = None,
    port: int = 0,
    on_switch: Callable[[], None] | None = None,
) -> None:
    """Move ``pump`` to a new UDP socket bound to ``(host, port)`` (default: the current
    socket's host, any free port) and close the old one; ``on_switch()`` runs when the
    new socket takes over (see the module docstring)."""
    old = pump.transport
    if host is None:
        local = pump.local_address
        host = local[0] if local else "0.0.0.0"
    pump._on_switch = on_switch
    try:
        await open_datagram_endpoint(pump.loop, lambda: pump, (host, port))
    finally:
        pump._on_switch = None
    if old is not None and old is not pump.transport:
        old.close()
