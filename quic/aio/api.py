"""Entry points of the asyncio driver: :func:`connect`, :func:`serve`, :class:`QuicServer`.

Theory of operation
-------------------
Each call binds one UDP socket (:func:`quic.aio.owned.open_datagram_endpoint`: asyncio's
datagram transport on the selector loop, a socket of our own on uvloop) and puts a
:class:`~quic.aio.pump.QuicEndpointProtocol` (the pump) around a fresh
:class:`~quic.endpoint.QuicEndpoint` on it — or, for :func:`connect` with ``sockets=``,
leases the socket that client connections share (:mod:`quic.aio.shared`).
``session_setup(session)`` runs synchronously before a session sees any event (this is
where HTTP/3 or WebTransport install their
:attr:`~quic.aio.session.QuicSession.event_listener`). The wall clock that TLS needs for
certificate validity is injected here (:func:`wall_clock`), the only place of
:mod:`quic` besides the pump that reads a clock. A configuration without a key log gets
the one named by ``$SSLKEYLOGFILE``, if set (read at each call).
A numeric host is parsed inline (``AI_NUMERICHOST``); only names reach the loop's
resolver, which runs ``getaddrinfo`` in a worker thread.

A client fails fast where the OS tells (Linux): an ICMP port or host unreachable that
answers the first flight, before the server said anything, makes :func:`connect` raise
:class:`ConnectionUnreachable` (a :class:`ConnectionRefusedError` and a
:class:`~quic.aio.session.ConnectionClosed`) naming the host and port at once, instead
of waiting for a handshake timeout (see "ICMP hints" in :mod:`quic.aio.pump`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from quic.aio.owned import open_datagram_endpoint
from quic.aio.pump import QuicEndpointProtocol
from quic.aio.session import ConnectionClosed, QuicSession
from quic.aio.shared import SharedSockets, open_client_pump
from quic.aio.streams import QuicStreamReader, QuicStreamWriter
from quic.aio.workers import WorkerSpec
from quic.configuration import QuicConfiguration
from quic.endpoint import QuicEndpoint
from quic.tls.keylog import keylog_from_environment

__all__ = ["ConnectionUnreachable", "QuicServer", "connect", "serve", "wall_clock"]


def wall_clock() -> datetime.datetime:
    """The real wall clock, injected into TLS for certificate validity."""
    return datetime.datetime.now(datetime.UTC)


def _prepare(configuration: QuicConfiguration) -> None:
    if configuration.clock is None:
        configuration.clock = wall_clock
    if configuration.keylog is None:  # $SSLKEYLOGFILE, for every layer above
        configuration.keylog = keylog_from_environment()


async def _resolve(
    loop: asyncio.AbstractEventLoop, host: str, port: int
) -> tuple[int, tuple[Any, ...]]:
    """(family, socket address) of ``host:port``: a numeric address is parsed inline
    (no resolver, so no trip through the loop's thread pool); a name goes to
    ``loop.getaddrinfo``."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    family, _, _, _, addr = infos[0]
    return family, addr


@contextlib.asynccontextmanager
async def connect(
    host: str,
    port: int,
    configuration: QuicConfiguration,
    *,
    local_port: int = 0,
    wait_connected: bool = True,
    session_setup: Callable[[QuicSession], None] | None = None,
    sockets: SharedSockets | None = None,
) -> AsyncIterator[QuicSession]:
    """Connect to ``host:port``; yields a :class:`QuicSession`; closes on exit.

    ``session_setup(session)`` runs before the session receives any event. Raises
    :class:`ConnectionUnreachable` when the OS reports that nothing answers at
    ``host:port`` (see the module docstring). ``sockets``: open the connection on the
    UDP socket these connections share (:class:`~quic.aio.shared.SharedSockets`)
    instead of binding one of its own; not with ``local_port``.
    """
    if sockets is not None and local_port:
        raise ValueError("a shared socket has no local_port of its own")
    loop = asyncio.get_running_loop()
    family, addr = await _resolve(loop, host, port)
    if configuration.server_name is None:
        configuration.server_name = host
    _prepare(configuration)
    if sockets is not None:
        protocol = await sockets.acquire(family)
        release: Callable[[], None] = functools.partial(sockets.release, protocol)
    else:
        protocol = await open_client_pump(loop, family, local_port)
        release = protocol.close_socket
    try:
        session = protocol.connect(addr, configuration)
    except BaseException:
        release()
        raise
    session._release = release
    try:
        if session_setup is not None:
            session_setup(session)
        if wait_connected:
            # Nothing can join the first flight before the handshake completes: it
            # leaves now, not a loop iteration later.
            protocol.transmit_now(session.connection)
            try:
                await session.wait_connected()
            except ConnectionClosed as exc:
                code = session.unreachable
                if code:
                    raise ConnectionUnreachable(code, host, port, exc) from exc
                raise
        else:  # the caller may add 0-RTT data to the first flight before the flush
            protocol.schedule_flush()
        yield session
        await session.aclose()
    finally:
        if not session.is_closed:  # left early (an error, a cancellation): end it, so
            session.close()  # a shared socket does not keep it until its idle timeout
        session.release_socket()


class ConnectionUnreachable(ConnectionClosed, ConnectionRefusedError):
    """:func:`connect` failed at once: the OS reported an ICMP port or host unreachable
    for the first flight. An :class:`OSError` whose ``errno`` is the OS's
    (``ECONNREFUSED``, ``EHOSTUNREACH``, ``ENETUNREACH``) and a
    :class:`ConnectionClosed` (``error_code`` CONNECTION_REFUSED, closed locally)."""

    def __init__(self, code: int, host: str, port: int, closed: ConnectionClosed) -> None:
        text = f"{os.strerror(code)}: nothing answers at {host} port {port} (ICMP unreachable)"
        OSError.__init__(self, code, text)
        self.error_code = closed.error_code
        self.reason = closed.reason
        self.by_peer = False
        self.host = host
        self.port = port


class QuicServer:
    """A running server: ``port``, ``close()``, ``await wait_closed()``."""

    def __init__(
        self,
        transport: asyncio.DatagramTransport,
        protocol: QuicEndpointProtocol,
        worker: WorkerSpec | None = None,
    ):
        self.transport = transport
        self.protocol = protocol
        #: the worker this server is, with ``--workers N`` (quic.aio.workers)
        self.worker = worker

    @property
    def port(self) -> int:
        return int(self.transport.get_extra_info("sockname")[1])

    @property
    def endpoint(self) -> QuicEndpoint:
        return self.protocol.endpoint

    @property
    def sessions(self) -> list[QuicSession]:
        return list(self.protocol.sessions.values())

    async def shutdown(self, error_code: int = 0, reason: str = "", timeout: float = 2.0) -> None:
        """Close every connection (waiting until the closes are sent), then the socket."""
        sessions = self.sessions
        for session in sessions:
            session.close(error_code, reason)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                for session in sessions:
                    await session.wait_closed()
        self.close()

    def close(self) -> None:
        for extra in self.protocol.extra_sockets:
            extra.close()
        if self.worker is not None:
            self.worker.close()
        self.transport.close()

    async def wait_closed(self) -> None:
        await self.protocol.closed

    async def __aenter__(self) -> QuicServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()


async def serve(
    host: str,
    port: int,
    configuration: QuicConfiguration,
    handler: Callable[[QuicSession], Awaitable[Any]] | None = None,
    *,
    stream_handler: Callable[[QuicStreamReader, QuicStreamWriter], Any] | None = None,
    session_setup: Callable[[QuicSession], None] | None = None,
    worker: WorkerSpec | None = None,
    token_bytes: Callable[[int], bytes] | None = None,
) -> QuicServer:
    """Serve QUIC on ``host:port`` (port 0: any free port).

    ``handler(session)`` runs for each connection once its handshake completes;
    ``stream_handler(reader, writer)`` runs for each stream the peer opens;
    ``session_setup(session)`` runs as a connection is accepted, before any of its events.
    With ``configuration.preferred_address`` the server listens there too (RFC 9000
    §9.6; port 0 is replaced by the port bound). ``worker``: serve as one worker of a
    group on one port, on its socket (``host`` and ``port`` are then not used; see
    :mod:`quic.aio.workers`; its CID scheme, QUIC-LB settings included, makes the
    connection IDs). Otherwise ``token_bytes`` replaces the endpoint's
    source of random bytes, and so of the connection IDs it issues (e.g.
    :meth:`quic.quiclb.QuicLbConfig.token_bytes`, with
    ``configuration.connection_id_length`` set to its ``cid_length``).
    """
    loop = asyncio.get_running_loop()
    _prepare(configuration)

    def on_session(session: QuicSession) -> Awaitable[None]:
        session.stream_handler = stream_handler
        if session_setup is not None:
            session_setup(session)
        return run(session)

    async def run(session: QuicSession) -> None:
        await session.wait_connected()
        if handler is not None:
            await handler(session)

    if worker is not None:
        if token_bytes is not None:
            raise ValueError("with a worker, its CID scheme makes the connection IDs")
        if configuration.preferred_address is not None:
            raise ValueError("a preferred address is not supported with workers on one port")
        endpoint = worker.endpoint(configuration)
        transport, protocol = await open_datagram_endpoint(
            loop, lambda: QuicEndpointProtocol(endpoint, on_session), (host, port), sock=worker.sock
        )
        assert isinstance(protocol, QuicEndpointProtocol)
        try:
            worker.start(loop, protocol)
        except BaseException:
            transport.close()
            raise
        return QuicServer(transport, protocol, worker)

    def make_protocol() -> QuicEndpointProtocol:
        if token_bytes is None:
            return QuicEndpointProtocol(QuicEndpoint(configuration), on_session)
        endpoint = QuicEndpoint(configuration, token_bytes=token_bytes)
        return QuicEndpointProtocol(endpoint, on_session)

    transport, protocol = await open_datagram_endpoint(loop, make_protocol, (host, port))
    assert isinstance(protocol, QuicEndpointProtocol)
    if configuration.preferred_address is not None:
        try:
            await _listen_preferred(protocol, configuration)
        except BaseException:
            transport.close()
            raise
    return QuicServer(transport, protocol)


class _PreferredSocket(asyncio.DatagramProtocol):
    """The preferred address's socket (RFC 9000 §9.6): it feeds the same pump."""

    def __init__(self, pump: QuicEndpointProtocol) -> None:
        self.pump = pump
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.transport is not None:
            self.pump.datagram_received_on(self.transport, data, addr)


async def _listen_preferred(pump: QuicEndpointProtocol, configuration: QuicConfiguration) -> None:
    """Listen on the preferred address too; port 0 is replaced by the port bound (the
    transport parameter must carry the real one)."""
    assert configuration.preferred_address is not None
    host, port = configuration.preferred_address
    loop = asyncio.get_running_loop()
    transport, _ = await open_datagram_endpoint(loop, lambda: _PreferredSocket(pump), (host, port))
    pump.add_socket(transport)
    configuration.preferred_address = (host, int(transport.get_extra_info("sockname")[1]))
