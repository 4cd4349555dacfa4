"""Client UDP sockets that several QUIC connections share.

Theory of operation
-------------------
A QUIC endpoint tells its connections apart by connection ID, not by UDP socket
(RFC 9000 §5.2), so the client connections of one application need not hold a socket
each. :class:`SharedSockets` keeps one pump (:class:`~quic.aio.pump.QuicEndpointProtocol`
around one :class:`~quic.endpoint.QuicEndpoint`) per address family and per event loop;
:func:`quic.aio.connect` called with ``sockets=`` opens its connection on that pump
instead of binding a socket of its own. What that buys, with many connections:

* one file descriptor instead of one per connection (a client with thousands of
  sessions does not meet the process's descriptor limit);
* one wake-up reads every datagram that arrived for all of them (batched reading, GRO),
  one transmit pass serves all, runs of equal-sized datagrams to one server leave in one
  ``sendmsg`` (GSO), and one loop timer serves every connection's deadline.

Leases: :meth:`SharedSockets.acquire` counts a user of the pump and
:meth:`SharedSockets.release` takes it back; the socket is closed when its last user
leaves (so an idle client holds no socket) or at :meth:`SharedSockets.close`. Two
``acquire`` calls racing for a family open one socket, not two.

What stays per connection: an ICMP unreachable ends only the connections to the address
it names that have heard nothing from their peer, and :func:`~quic.aio.connect` reads the
error of its own connection (:attr:`~quic.aio.session.QuicSession.unreachable`). A
connection that migrates (:meth:`~quic.aio.session.QuicSession.migrate`, RFC 9000 §9.2)
moves off the shared socket to a socket of its own (:meth:`QuicEndpointProtocol.
hand_over`): the others stay where they are.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from quic.aio.owned import open_datagram_endpoint
from quic.aio.pump import QuicEndpointProtocol
from quic.endpoint import QuicEndpoint

__all__ = ["SharedSockets", "open_client_pump"]


async def open_client_pump(
    loop: asyncio.AbstractEventLoop, family: int, local_port: int = 0, host: str | None = None
) -> QuicEndpointProtocol:
    """A client pump on a new UDP socket bound to ``(host, local_port)`` (default: the
    wildcard address of ``family``)."""
    if host is None:
        host = "::" if family == socket.AF_INET6 else "0.0.0.0"
    _, protocol = await open_datagram_endpoint(
        loop, lambda: QuicEndpointProtocol(QuicEndpoint(), icmp_hints=True), (host, local_port)
    )
    assert isinstance(protocol, QuicEndpointProtocol)
    return protocol


class SharedSockets:
    """One client UDP socket per address family (and event loop), shared by the
    connections that lease it (see the module docstring)."""

    def __init__(self) -> None:
        self._pumps: dict[tuple[Any, int], QuicEndpointProtocol] = {}
        self._users: dict[QuicEndpointProtocol, int] = {}
        self._opening: dict[tuple[Any, int], asyncio.Future[None]] = {}

    @property
    def sockets(self) -> int:
        """Sockets open now."""
        return len(self._pumps)

    def users(self, pump: QuicEndpointProtocol) -> int:
        """Leases held on ``pump``."""
        return self._users.get(pump, 0)

    async def acquire(self, family: int) -> QuicEndpointProtocol:
        """The shared pump of ``family`` on the running loop (opened if there is none),
        with one more user counted; give it back with :meth:`release`."""
        loop = asyncio.get_running_loop()
        key = (loop, family)
        while True:
            pump = self._pumps.get(key)
            if pump is not None and not _usable(pump):
                self._forget(key, pump)
                pump = None
            if pump is not None:
                self._users[pump] += 1
                return pump
            opening = self._opening.get(key)
            if opening is not None:  # another caller is opening it: wait, then count
                await asyncio.wait([opening])
                continue
            opening = self._opening[key] = loop.create_future()
            try:
                pump = await open_client_pump(loop, family)
            except BaseException:
                opening.cancel()  # the waiters go round again (and open one themselves)
                raise
            finally:
                del self._opening[key]
            pump.shared = True
            self._pumps[key] = pump
            self._users[pump] = 1
            opening.set_result(None)
            return pump

    def release(self, pump: QuicEndpointProtocol) -> None:
        """One user of ``pump`` is done; the last one closes its socket."""
        users = self._users.get(pump)
        if users is None:
            return
        if users > 1:
            self._users[pump] = users - 1
            return
        for key, held in list(self._pumps.items()):
            if held is pump:
                self._forget(key, pump)
        pump.close_socket()

    def close(self) -> None:
        """Close every socket; connections still on them are closed first (NO_ERROR)."""
        for key, pump in list(self._pumps.items()):
            self._forget(key, pump)
            pump.shutdown()

    def _forget(self, key: tuple[Any, int], pump: QuicEndpointProtocol) -> None:
        if self._pumps.get(key) is pump:
            del self._pumps[key]
        self._users.pop(pump, None)


def _usable(pump: QuicEndpointProtocol) -> bool:
    transport = pump.transport
    return (
        transport is not None
        and not transport.is_closing()
        and not pump.loop.is_closed()
        and not pump.closed.done()
    )
