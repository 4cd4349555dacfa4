"""asyncio driver for the Sans-I/O QUIC endpoint: the only code that touches sockets and
the clock in :mod:`quic`.

Theory of operation
-------------------
:class:`QuicEndpointProtocol` is a pump around one :class:`~quic.endpoint.QuicEndpoint`
bound to one UDP socket::

    datagram_received → endpoint.receive_datagram(data, addr, loop.time())
                      → (once per loop iteration) drain events → send → re-arm timer

Every datagram of a burst is fed before anything is transmitted: asyncio reads one
datagram per loop iteration, so the flush (scheduled with ``call_soon``) goes round the
loop again while full-sized datagrams keep arriving, up to ``_RECEIVE_BATCH`` of them;
ACKs and data for the whole burst then go out together. Small datagrams do not delay the
flush. The UDP socket buffers are enlarged so that a
congestion window's burst is not dropped by the kernel. One ``call_at`` timer follows
``endpoint.get_timer()``.

Per connection a :class:`QuicSession` offers the asyncio face: streams as
(:class:`asyncio.StreamReader`, :class:`QuicStreamWriter`) pairs, datagrams, close.
Writers apply backpressure: :meth:`QuicStreamWriter.drain` waits while more than the
configured number of bytes is buffered (unacknowledged), which is what happens when
flow control or congestion blocks the stream.

Hook for protocols layered on QUIC (e.g. HTTP/3): ``session_setup(session)`` (a keyword of
:func:`connect` and :func:`serve`) runs synchronously before the session sees any event,
and may set :attr:`QuicSession.event_listener`, which then receives every QUIC event of
the connection first. Returning True consumes a stream or datagram event (the default
reader/writer handling is skipped); the session's own state (connected, closed, writer
wake-ups) is kept up to date regardless. Such a layer writes through
:attr:`QuicSession.connection` and calls :meth:`QuicSession.schedule_flush`;
:meth:`QuicSession.wait_progress` waits for the next flush (acknowledgments, credit).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import socket
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from quic.configuration import QuicConfiguration
from quic.connection import QuicConnection
from quic.endpoint import ConnectionAccepted, QuicEndpoint
from quic.errors import StreamResetError
from quic.events import (
    ConnectionTerminated,
    DatagramReceived,
    HandshakeCompleted,
    QuicEvent,
    StopSendingReceived,
    StreamDataReceived,
    StreamReset,
    StreamWritable,
)
from quic.stream_manager import StreamLimitReached, is_local

__all__ = [
    "ConnectionClosed",
    "QuicEndpointProtocol",
    "QuicServer",
    "QuicSession",
    "QuicStreamWriter",
    "connect",
    "serve",
    "wall_clock",
]

logger = logging.getLogger("quic")

StreamPair = tuple[asyncio.StreamReader, "QuicStreamWriter"]

#: Transmit at the latest after this many received datagrams, even mid-burst.
_RECEIVE_BATCH = 32
#: Only full-sized datagrams (bulk data, Initial flights) hold the transmit back; small
#: ones (ACKs, ping-pong) are answered in the same loop iteration, without extra latency.
_FULL_DATAGRAM = 1200
#: Requested UDP socket buffer sizes (the kernel caps them at net.core.rmem_max/wmem_max).
_SOCKET_BUFFER = 4 * 1024 * 1024


def wall_clock() -> datetime.datetime:
    """The real wall clock, injected into TLS for certificate validity."""
    return datetime.datetime.now(datetime.UTC)


class ConnectionClosed(ConnectionError):
    """The QUIC connection is closed; carries the close's code and reason."""

    def __init__(self, error_code: int, reason: str, by_peer: bool = False) -> None:
        super().__init__(f"connection closed (code {error_code}): {reason}")
        self.error_code = error_code
        self.reason = reason
        self.by_peer = by_peer


class QuicStreamWriter:
    """Sending half of a QUIC stream, with backpressure."""

    def __init__(self, session: QuicSession, stream_id: int) -> None:
        self._session = session
        self.stream_id = stream_id
        self._writable = asyncio.Event()
        self._writable.set()
        self._closed = False
        self.reset_code: int | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._send(data, False)

    def writelines(self, lines: list[bytes]) -> None:
        for line in lines:
            self.write(line)

    def write_eof(self) -> None:
        if not self._closed:
            self._closed = True
            self._send(b"", True)

    def close(self) -> None:
        self.write_eof()

    def is_closing(self) -> bool:
        return self._closed

    def can_write_eof(self) -> bool:
        return True

    def _send(self, data: bytes | bytearray | memoryview, end: bool) -> None:
        session = self._session
        session._check_open()
        if self.reset_code is not None:
            raise StreamResetError(self.stream_id, self.reset_code, "stream was reset")
        if not session.connection.send_stream_data(self.stream_id, data, end):
            self._writable.clear()
        session._protocol.schedule_flush()

    async def drain(self) -> None:
        """Wait until the send buffer is below its high-water mark."""
        while not self._writable.is_set():
            self._session._check_open()
            if self.reset_code is not None:
                raise StreamResetError(self.stream_id, self.reset_code, "stream was reset")
            await self._writable.wait()
        self._session._check_open()

    async def wait_flushed(self) -> None:
        """Wait until everything written was acknowledged by the peer."""
        session = self._session
        while session.connection.streams.send_buffered(self.stream_id):
            session._check_open()
            await session._progress.wait()

    def reset(self, error_code: int) -> None:
        """Abandon the stream with RESET_STREAM (RFC 9000 §19.4)."""
        self.reset_code = error_code
        self._session.connection.reset_stream(self.stream_id, error_code)
        self._writable.set()
        self._session._protocol.schedule_flush()

    def _wake(self) -> None:
        self._writable.set()


class QuicSession:
    """One QUIC connection as seen from asyncio code."""

    def __init__(self, protocol: QuicEndpointProtocol, connection: QuicConnection) -> None:
        self._protocol = protocol
        self.connection = connection
        loop = protocol.loop
        self._connected: asyncio.Future[None] = loop.create_future()
        self._closed: asyncio.Future[ConnectionTerminated] = loop.create_future()
        self._readers: dict[int, asyncio.StreamReader] = {}
        self._writers: dict[int, QuicStreamWriter] = {}
        self._incoming: asyncio.Queue[StreamPair] = asyncio.Queue()
        self._datagrams: deque[bytes] = deque(maxlen=connection.configuration.max_datagram_queue)
        self._datagram_waiter: asyncio.Future[None] | None = None
        self._progress = asyncio.Event()  # pulsed after each flush (stream limits, acks)
        self.termination: ConnectionTerminated | None = None
        self.stream_handler: Callable[[asyncio.StreamReader, QuicStreamWriter], Any] | None = None
        #: Sees every QUIC event first; True consumes it (see the module docstring).
        self.event_listener: Callable[[QuicEvent], bool] | None = None

    # -- state ------------------------------------------------------------------------------

    @property
    def alpn_protocol(self) -> str | None:
        return self.connection.alpn_protocol

    async def wait_connected(self) -> None:
        await asyncio.shield(self._connected)

    async def wait_closed(self) -> ConnectionTerminated:
        return await asyncio.shield(self._closed)

    @property
    def is_closed(self) -> bool:
        return self.termination is not None

    def _check_open(self) -> None:
        term = self.termination
        if term is not None:
            raise ConnectionClosed(term.error_code, term.reason_phrase, term.by_peer)

    # -- streams ----------------------------------------------------------------------------

    async def create_stream(self, bidirectional: bool = True) -> StreamPair:
        """Open a stream; waits while the peer's stream limit is reached."""
        while True:
            self._check_open()
            await self.wait_connected()
            try:
                sid = self.connection.create_stream(bidirectional)
            except StreamLimitReached:
                self._protocol.schedule_flush()  # sends STREAMS_BLOCKED
                self._progress.clear()
                await self._progress.wait()
                continue
            return self._stream_objects(sid)

    async def accept_stream(self) -> StreamPair:
        """Wait for the next stream opened by the peer."""
        get = asyncio.ensure_future(self._incoming.get())
        closed = asyncio.ensure_future(self.wait_closed())
        try:
            done, _ = await asyncio.wait({get, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        if get in done:
            return get.result()
        get.cancel()
        self._check_open()
        raise ConnectionClosed(0, "closed")

    def _stream_objects(self, sid: int) -> StreamPair:
        reader = self._readers.get(sid)
        if reader is None:
            reader = self._readers[sid] = asyncio.StreamReader(limit=1 << 20)
            if sid & 2 and is_local(sid, self.connection.is_client):
                reader.feed_eof()  # our unidirectional stream: nothing to read
        writer = self._writers.get(sid)
        if writer is None:
            writer = self._writers[sid] = QuicStreamWriter(self, sid)
            if sid & 2 and not is_local(sid, self.connection.is_client):
                writer._closed = True  # peer's unidirectional stream: nothing to write
        return reader, writer

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        """Ask the peer to stop sending (STOP_SENDING, RFC 9000 §19.5)."""
        self.connection.stop_stream(stream_id, error_code)
        self._protocol.schedule_flush()

    # -- datagrams --------------------------------------------------------------------------

    def send_datagram(self, data: bytes | bytearray | memoryview) -> None:
        self._check_open()
        self.connection.send_datagram(data)
        self._protocol.transmit_soon()

    async def receive_datagram(self) -> bytes:
        """The next DATAGRAM payload; raises ConnectionClosed once the connection ends."""
        queue = self._datagrams
        while not queue:
            self._check_open()
            waiter = self._datagram_waiter
            if waiter is None or waiter.done():
                waiter = self._datagram_waiter = self._protocol.loop.create_future()
            await waiter
        return queue.popleft()

    def _wake_datagram_waiter(self) -> None:
        waiter = self._datagram_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def max_datagram_size(self) -> int:
        return self.connection.max_datagram_payload

    # -- for layers that drive the connection directly ------------------------------------

    def schedule_flush(self) -> None:
        """Have the pump transmit what was queued on :attr:`connection` directly."""
        self._protocol.schedule_flush()

    async def wait_progress(self) -> None:
        """Wait for the pump's next flush (after which acks and credit may have changed)."""
        self._check_open()
        await self._progress.wait()

    # -- closing ----------------------------------------------------------------------------

    def close(self, error_code: int = 0, reason: str = "") -> None:
        """Close now (application CONNECTION_CLOSE); see :meth:`aclose` to flush first."""
        self.connection.close(error_code, reason)
        self._protocol.schedule_flush()

    async def aclose(self, error_code: int = 0, reason: str = "", timeout: float = 5.0) -> None:
        """Wait (up to ``timeout``) for written data to be acknowledged, close, and wait
        until the close was sent."""
        if not self.is_closed:
            with contextlib.suppress(TimeoutError, ConnectionClosed):
                async with asyncio.timeout(timeout):
                    for writer in list(self._writers.values()):
                        await writer.wait_flushed()
        self.close(error_code, reason)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.wait_closed()

    # -- events -----------------------------------------------------------------------------

    def _on_event(self, event: QuicEvent) -> None:
        listener = self.event_listener
        if (
            listener is not None
            and listener(event)
            and not isinstance(event, (HandshakeCompleted, ConnectionTerminated))
        ):
            return
        if isinstance(event, StreamDataReceived):
            sid = event.stream_id
            known = sid in self._readers
            reader, writer = self._stream_objects(sid)
            if event.data:
                self.connection.consume_stream_data(sid, len(event.data))
                reader.feed_data(event.data)
            if event.end_stream:
                reader.feed_eof()
            if not known and not is_local(sid, self.connection.is_client):
                self._announce(reader, writer)
        elif isinstance(event, DatagramReceived):
            self._datagrams.append(event.data)
            self._wake_datagram_waiter()
        elif isinstance(event, StreamWritable):
            writer_w = self._writers.get(event.stream_id)
            if writer_w is not None:
                writer_w._wake()
        elif isinstance(event, StreamReset):
            reader_r = self._readers.get(event.stream_id)
            exc = StreamResetError(event.stream_id, event.error_code, "stream reset by peer")
            if reader_r is None:
                reader_r, writer_r = self._stream_objects(event.stream_id)
                if not is_local(event.stream_id, self.connection.is_client):
                    self._announce(reader_r, writer_r)
            reader_r.set_exception(exc)
        elif isinstance(event, StopSendingReceived):
            writer_s = self._writers.get(event.stream_id)
            if writer_s is not None:
                writer_s.reset_code = event.error_code
                writer_s._wake()
        elif isinstance(event, HandshakeCompleted):
            if not self._connected.done():
                self._connected.set_result(None)
        elif isinstance(event, ConnectionTerminated):
            self._on_terminated(event)

    def _announce(self, reader: asyncio.StreamReader, writer: QuicStreamWriter) -> None:
        handler = self.stream_handler
        if handler is not None:
            result = handler(reader, writer)
            if asyncio.iscoroutine(result):
                self._protocol.spawn(result)
        else:
            self._incoming.put_nowait((reader, writer))

    def _on_terminated(self, event: ConnectionTerminated) -> None:
        if self.termination is None:
            self.termination = event
        exc = ConnectionClosed(event.error_code, event.reason_phrase, event.by_peer)
        self._wake_datagram_waiter()
        if not self._connected.done():
            self._connected.set_exception(exc)
            self._connected.exception()  # mark retrieved
        for reader in self._readers.values():
            if not reader.at_eof():
                reader.set_exception(exc)
        for writer in self._writers.values():
            writer._wake()
        self._progress.set()

    def _after_flush(self) -> None:
        if self.termination is not None and not self._closed.done():
            self._closed.set_result(self.termination)
        self._progress.set()
        self._progress = asyncio.Event()


class QuicEndpointProtocol(asyncio.DatagramProtocol):
    """The pump: UDP socket ⇄ Sans-I/O endpoint (see module docstring)."""

    def __init__(
        self,
        endpoint: QuicEndpoint,
        on_session: Callable[[QuicSession], Any] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.DatagramTransport | None = None
        self.sessions: dict[QuicConnection, QuicSession] = {}
        self._on_session = on_session
        self._flush_scheduled = False
        self._received = 0  # datagrams fed since the last transmit
        self._received_seen = 0  # ... as of the previous flush attempt
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = self.loop.create_future()

    # -- asyncio callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Room for a whole congestion window of bursts: with the default (~200 KB,
            # about 90 datagrams) the kernel drops packets the peer's window allows.
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)
        # the transport registers its own reader right after this callback: replace it then
        self.loop.call_soon(self._take_over_reading, transport)

    def _take_over_reading(self, transport: asyncio.BaseTransport) -> None:
        """Batch receive: on a selector event loop, read the socket ourselves.

        asyncio's datagram transport reads one datagram per loop iteration; here every
        datagram waiting in the socket (up to ``_RECEIVE_BATCH``) is fed to the endpoint
        before anything is transmitted, so a burst costs one transmit pass, not one per
        datagram. On other loops (uvloop, proactor) the transport's own reading stays.
        """
        raw = getattr(transport, "_sock", None)
        pause = getattr(transport, "pause_reading", None)
        add_reader = getattr(self.loop, "_add_reader", None)  # selector loops only
        if not isinstance(raw, socket.socket) or pause is None or add_reader is None:
            return
        if transport.is_closing():
            return
        try:
            pause()  # the transport stops reading; closing it still unregisters the fd
            add_reader(raw.fileno(), self._read_ready, raw)
        except (NotImplementedError, RuntimeError, ValueError, OSError):
            logger.debug("batched UDP reading unavailable; using the transport's reader")

    def _read_ready(self, sock: socket.socket) -> None:
        endpoint = self.endpoint
        now = self.loop.time()
        recvfrom = sock.recvfrom
        for _ in range(_RECEIVE_BATCH):
            try:
                data, addr = recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self.error_received(exc)
                break
            endpoint.receive_datagram(data, addr, now)
        self._dispatch()
        if self._flush_scheduled:
            return  # application writes already asked for a flush: it will send
        self._transmit()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.endpoint.receive_datagram(data, addr, self.loop.time())
        # Hand events to the application now: the tasks they wake run in the next loop
        # iteration *before* the flush scheduled below, so a reply (an echoed datagram,
        # a response) leaves in the same transmit as the ACK for what triggered it.
        self._dispatch()
        if len(data) >= _FULL_DATAGRAM:
            self._received += 1  # part of a burst, probably: see _flush
        self.schedule_flush()

    def error_received(self, exc: Exception) -> None:
        logger.debug("UDP error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self.closed.done():
            self.closed.set_result(None)

    # -- pump ---------------------------------------------------------------------------------

    def transmit_soon(self) -> None:
        """Send now unless a flush is already on its way (latency-sensitive callers:
        a lone datagram should not wait a loop iteration)."""
        if not self._flush_scheduled:
            self._transmit()

    def schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        received = self._received
        if received != self._received_seen and received < _RECEIVE_BATCH:
            # Datagrams are still arriving (asyncio reads one per loop iteration): go
            # round the loop once more and transmit after the burst, so its ACKs and
            # data leave together (batch receive processing before transmitting).
            self._received_seen = received
            self.loop.call_soon(self._flush)
            return
        self._flush_scheduled = False
        self._transmit()

    def _transmit(self) -> None:
        self._received = self._received_seen = 0
        endpoint = self.endpoint
        self._dispatch()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            sendto = transport.sendto
            for data, addr in endpoint.datagrams_to_send(self.loop.time()):
                sendto(data, addr)
        self._dispatch()
        for session in list(self.sessions.values()):
            session._after_flush()
            if session.connection.is_closed and session._closed.done():
                del self.sessions[session.connection]
        self._arm_timer()

    def _dispatch(self) -> None:
        endpoint = self.endpoint
        while (item := endpoint.next_event()) is not None:
            conn, event = item
            if isinstance(event, ConnectionAccepted):
                session = QuicSession(self, conn)
                self.sessions[conn] = session
                if self._on_session is not None:
                    result = self._on_session(session)
                    if asyncio.iscoroutine(result):
                        self.spawn(result)
                continue
            found = self.sessions.get(conn)
            if found is not None:
                found._on_event(event)

    def _arm_timer(self) -> None:
        when = self.endpoint.get_timer()
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None:
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.endpoint.handle_timer(self.loop.time())
        self._transmit()

    def spawn(self, coro: Awaitable[Any]) -> None:
        async def runner() -> None:
            try:
                await coro
            except (ConnectionClosed, StreamResetError, asyncio.IncompleteReadError):
                pass
            except Exception:
                logger.exception("QUIC handler failed")

        task = self.loop.create_task(runner())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- client -------------------------------------------------------------------------------

    def connect(self, addr: Any, configuration: QuicConfiguration) -> QuicSession:
        conn = self.endpoint.connect(addr, configuration, self.loop.time())
        session = QuicSession(self, conn)
        self.sessions[conn] = session
        self.schedule_flush()
        return session


def _prepare(configuration: QuicConfiguration) -> None:
    if configuration.clock is None:
        configuration.clock = wall_clock


@contextlib.asynccontextmanager
async def connect(
    host: str,
    port: int,
    configuration: QuicConfiguration,
    *,
    local_port: int = 0,
    wait_connected: bool = True,
    session_setup: Callable[[QuicSession], None] | None = None,
) -> AsyncIterator[QuicSession]:
    """Connect to ``host:port``; yields a :class:`QuicSession`; closes on exit.

    ``session_setup(session)`` runs before the session receives any event.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    family, _, _, _, addr = infos[0]
    if configuration.server_name is None:
        configuration.server_name = host
    _prepare(configuration)
    local = "::" if family == socket.AF_INET6 else "0.0.0.0"
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: QuicEndpointProtocol(QuicEndpoint()), local_addr=(local, local_port)
    )
    try:
        session = protocol.connect(addr, configuration)
        if session_setup is not None:
            session_setup(session)
        if wait_connected:
            await session.wait_connected()
        yield session
        await session.aclose()
    finally:
        transport.close()


class QuicServer:
    """A running server: ``port``, ``close()``, ``await wait_closed()``."""

    def __init__(self, transport: asyncio.DatagramTransport, protocol: QuicEndpointProtocol):
        self.transport = transport
        self.protocol = protocol

    @property
    def port(self) -> int:
        return int(self.transport.get_extra_info("sockname")[1])

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
    stream_handler: Callable[[asyncio.StreamReader, QuicStreamWriter], Any] | None = None,
    session_setup: Callable[[QuicSession], None] | None = None,
) -> QuicServer:
    """Serve QUIC on ``host:port`` (port 0: any free port).

    ``handler(session)`` runs for each connection once its handshake completes;
    ``stream_handler(reader, writer)`` runs for each stream the peer opens;
    ``session_setup(session)`` runs as a connection is accepted, before any of its events.
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

    transport, protocol = await loop.create_datagram_endpoint(
        lambda: QuicEndpointProtocol(QuicEndpoint(configuration), on_session),
        local_addr=(host, port),
    )
    return QuicServer(transport, protocol)
