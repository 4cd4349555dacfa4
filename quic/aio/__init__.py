"""asyncio driver for the Sans-I/O QUIC endpoint: the only code that touches sockets and
the clock in :mod:`quic`.

Theory of operation
-------------------
A thin layer, split by responsibility:

* :mod:`quic.aio.pump` — :class:`QuicEndpointProtocol`, the pump around one
  :class:`~quic.endpoint.QuicEndpoint` on one UDP socket: receive → feed → drain
  events → send → re-arm one timer. It touches only connections with something to do.
* :mod:`quic.aio.session` — :class:`QuicSession`, one connection as asyncio code sees
  it (streams, datagrams, close; the ``event_listener`` hook for HTTP/3 and
  WebTransport), and :class:`ConnectionClosed`.
* :mod:`quic.aio.streams` — :class:`QuicStreamReader` (``asyncio.StreamReader``'s
  reading methods; flow-control credit goes back as the application reads, so an
  unread stream holds at most its window) and :class:`QuicStreamWriter` (backpressure).
* :mod:`quic.aio.udp` — socket helpers; :func:`~quic.aio.udp.take_over_reading` and
  :func:`~quic.aio.udp.soon_caller` are the two functions that use asyncio internals
  (batched reading on selector loops; the pump's flush through one reused handle), each
  with a fallback to public API.
* :mod:`quic.aio.owned` — on other loops (uvloop) the driver binds its own socket
  (:class:`~quic.aio.owned.OwnedDatagramTransport`, public loop API only) so batched
  reading, ECN, GRO and GSO work there too (docs/event-loops.md).
* :mod:`quic.aio.api` — :func:`connect`, :func:`serve`, :class:`QuicServer`,
  :func:`wall_clock`.
* :mod:`quic.aio.shared` — :class:`~quic.aio.shared.SharedSockets`: client connections
  that share one UDP socket (``connect(..., sockets=...)``).
* :mod:`quic.aio.mtu` — the local interface's MTU toward a peer (Linux ``IP_MTU``),
  which bounds each new connection's DPLPMTUD search (RFC 8899 §5.1.2).

Hook for protocols layered on QUIC (e.g. HTTP/3): ``session_setup(session)`` (a keyword
of :func:`connect` and :func:`serve`) runs synchronously before the session sees any
event, and may set :attr:`QuicSession.event_listener`, which then receives every QUIC
event of the connection first. Returning True consumes a stream or datagram event.
Such a layer writes through :attr:`QuicSession.connection` and calls
:meth:`QuicSession.schedule_flush`; :meth:`QuicSession.wait_progress` waits for the
connection's next flush (acknowledgments, credit).
"""

from __future__ import annotations

from quic.aio.api import ConnectionUnreachable, QuicServer, connect, serve, wall_clock
from quic.aio.pump import QuicEndpointProtocol
from quic.aio.session import ConnectionClosed, QuicSession, StreamPair
from quic.aio.streams import QuicStreamReader, QuicStreamWriter

__all__ = [
    "ConnectionClosed",
    "ConnectionUnreachable",
    "QuicEndpointProtocol",
    "QuicServer",
    "QuicSession",
    "QuicStreamReader",
    "QuicStreamWriter",
    "StreamPair",
    "connect",
    "serve",
    "wall_clock",
]
