"""One QUIC connection as seen from asyncio code.

Theory of operation
-------------------
:class:`QuicSession` is created by the pump (:mod:`quic.aio.pump`) for each connection
and receives that connection's events in order (:meth:`QuicSession._on_event`, a table
event type → handler). It offers streams as (:class:`~quic.aio.streams.QuicStreamReader`,
:class:`~quic.aio.streams.QuicStreamWriter`) pairs, datagrams and close.

Hook for protocols layered on QUIC (e.g. HTTP/3): :attr:`QuicSession.event_listener`
receives every QUIC event of the connection first; returning True consumes a stream or
datagram event (the reader/writer handling below is skipped); the session's own state
(connected, closed, writer wake-ups) is kept up to date regardless. Such a layer writes
through :attr:`QuicSession.connection` and then calls :meth:`QuicSession.schedule_flush`
(which tells the endpoint the connection has output, :meth:`QuicEndpoint.wake`);
:meth:`QuicSession.wait_progress` waits for the connection's next flush (ACKs, credit).
If the listener raises, the connection is closed with INTERNAL_ERROR (RFC 9000 §20.1),
the error is logged once, and the pump carries on with the other events.

Idle memory (issue 10): the accept queue, the DATAGRAM deque, the progress Event and the
sets of streams seen out of order are made on first use; an idle connection holds none.

Bounded tables: a reader leaves ``_readers`` once the FIN was read or the stream failed;
a writer leaves ``_writers`` once it was closed (FIN or reset) and everything written
was acknowledged, or the peer stopped it. Peer-initiated streams are recognised as new
by :class:`_SeenStreams` (a watermark plus the few seen above it), so an event arriving
for a stream already forgotten never announces it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from quic.aio.streams import QuicStreamReader, QuicStreamWriter
from quic.connection import QuicConnection
from quic.errors import StreamResetError, TransportErrorCode
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

if TYPE_CHECKING:
    from quic.aio.pump import QuicEndpointProtocol

__all__ = ["ConnectionClosed", "QuicSession", "StreamPair"]

logger = logging.getLogger("quic")

StreamPair = tuple[QuicStreamReader, QuicStreamWriter]
#: Largest ``readuntil``/``readline`` without a separator (bounded by the stream window).
_READ_LIMIT = 1 << 20


class ConnectionClosed(ConnectionError):
    """The QUIC connection is closed; carries the close's code and reason."""

    def __init__(self, error_code: int, reason: str, by_peer: bool = False) -> None:
        super().__init__(f"connection closed (code {error_code}): {reason}")
        self.error_code = error_code
        self.reason = reason
        self.by_peer = by_peer


class _SeenStreams:
    """Which peer-initiated streams were seen, per stream type: every index below a
    watermark, plus the set seen above it (bounded by the peer's stream limits)."""

    __slots__ = ("_above", "_low")

    def __init__(self) -> None:
        self._low = [0, 0, 0, 0]  # by the stream ID's two type bits (RFC 9000 §2.1)
        # made when a stream arrives out of order (an idle connection holds none)
        self._above: list[set[int] | None] = [None, None, None, None]

    def add(self, stream_id: int) -> bool:
        """Note ``stream_id``; True if it was not seen before."""
        kind = stream_id & 3
        index = stream_id >> 2
        low = self._low[kind]
        if index < low:
            return False
        above = self._above[kind]
        if index == low:
            low += 1
            if above:
                while low in above:
                    above.remove(low)
                    low += 1
            self._low[kind] = low
            return True
        if above is None:
            above = self._above[kind] = set()
        elif index in above:
            return False
        above.add(index)
        return True


_T = TypeVar("_T")


def _with_waiter(
    waiters: list[asyncio.Future[_T]] | None, waiter: asyncio.Future[_T]
) -> list[asyncio.Future[_T]]:
    """``waiters`` (made when None) with ``waiter`` added and the cancelled ones gone: a
    future per waiter, resolved directly (a shielded shared one costs its waiter loop
    iterations), and a loop of timed or cancelled waits keeps the list short."""
    if waiters is None:
        return [waiter]
    waiters[:] = [other for other in waiters if not other.done()]
    waiters.append(waiter)
    return waiters


class QuicSession:
    """One QUIC connection as seen from asyncio code (see the module docstring)."""

    __slots__ = (  # per connection: no per-instance dict (issue 10, memory)
        "__dict__",
        "_close_settled",
        "_closed",
        "_closing",
        "_connected",
        "_datagram_waiter",
        "_datagrams",
        "_failed",
        "_handshake_done",
        "_incoming_queue",
        "_progress",
        "_protocol",
        "_read_limit",
        "_readers",
        "_release",
        "_seen",
        "_writers",
        "connection",
        "event_listener",
        "stream_handler",
        "termination",
        "unreachable",
    )

    def __init__(self, protocol: QuicEndpointProtocol, connection: QuicConnection) -> None:
        self._protocol = protocol
        self.connection = connection
        # what wait_connected() and wait_closed() await, made by their first waiter (an
        # idle server connection has none, issue 10); the flags say whether they are
        # settled already. A future per waiter, resolved directly: a shielded shared one
        # would cost its waiter two loop iterations more (shield's inner and outer done
        # callbacks), the client's connect() returning that much later after its
        # handshake, its aclose() after its close
        self._connected: list[asyncio.Future[None]] | None = None
        self._handshake_done = False
        self._closed: list[asyncio.Future[ConnectionTerminated]] | None = None
        self._close_settled = False  # closed, and the close flushed (or the end known)
        self._readers: dict[int, QuicStreamReader] = {}
        self._writers: dict[int, QuicStreamWriter] = {}
        self._closing: dict[int, QuicStreamWriter] = {}  # closed, not yet acknowledged
        self._seen = _SeenStreams()
        self._read_limit = max(
            1, min(_READ_LIMIT, connection.configuration.initial_max_stream_data)
        )
        # created on first use: an idle connection holds no queue, deque or Event
        self._incoming_queue: asyncio.Queue[StreamPair] | None = None
        self._datagrams: deque[bytes] | None = None
        self._datagram_waiter: asyncio.Future[None] | None = None
        self._progress: asyncio.Event | None = None  # set by the next flush (limits, acks)
        self._failed = False
        self.termination: ConnectionTerminated | None = None
        #: errno of an ICMP unreachable that ended the connection before the peer answered
        self.unreachable = 0
        # what gives the socket back when :func:`quic.aio.connect` is done (see release_socket)
        self._release: Callable[[], None] | None = None
        self.stream_handler: Callable[[QuicStreamReader, QuicStreamWriter], Any] | None = None
        #: Sees every QUIC event first; True consumes it (see the module docstring).
        self.event_listener: Callable[[QuicEvent], bool] | None = None

    # -- state ------------------------------------------------------------------------------

    @property
    def alpn_protocol(self) -> str | None:
        return self.connection.alpn_protocol

    async def wait_connected(self) -> None:
        """Wait for the handshake's completion; raises :class:`ConnectionClosed` if the
        connection ended before it."""
        if self._handshake_done:
            return
        self.check_open()
        waiter: asyncio.Future[None] = self._protocol.loop.create_future()
        self._connected = _with_waiter(self._connected, waiter)
        await waiter  # cancelling it cancels this waiter only

    async def wait_closed(self) -> ConnectionTerminated:
        """Wait until the connection ended and its close was sent."""
        if self._close_settled and self.termination is not None:
            return self.termination
        waiter: asyncio.Future[ConnectionTerminated] = self._protocol.loop.create_future()
        self._closed = _with_waiter(self._closed, waiter)  # accept_stream() cancels many
        return await waiter  # cancelling it cancels this waiter only

    def _settle_closed(self) -> None:
        """The connection ended and its close went out: wait_closed() returns now."""
        termination = self.termination
        assert termination is not None
        self._close_settled = True
        waiters, self._closed = self._closed, None  # later waiters: the flag
        if waiters is not None:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(termination)

    @property
    def is_closed(self) -> bool:
        return self.termination is not None

    def check_open(self) -> None:
        """Raise :class:`ConnectionClosed` if the connection has ended."""
        term = self.termination
        if term is not None:
            raise ConnectionClosed(term.error_code, term.reason_phrase, term.by_peer)

    _check_open = check_open  # the name used before

    @property
    def open_streams(self) -> int:
        """Stream halves this session still tracks (readers + writers)."""
        return len(self._readers) + len(self._writers)

    # -- streams ----------------------------------------------------------------------------

    async def create_stream(self, bidirectional: bool = True) -> StreamPair:
        """Open a stream; waits while the peer's stream limit is reached, and until the
        handshake completes unless 0-RTT can carry the stream (RFC 9001 §4.6.1)."""
        blocked = False
        while True:
            self.check_open()
            if not self.connection.early_data_possible:
                await self.wait_connected()
            try:
                sid = self.connection.create_stream(bidirectional)
            except StreamLimitReached:
                if not blocked:  # once: STREAMS_BLOCKED goes out with the next flush
                    blocked = True
                    self.schedule_flush()
                await self.wait_progress()  # then only the peer's packets wake us
                continue
            return self._stream_objects(sid)

    @property
    def _incoming(self) -> asyncio.Queue[StreamPair]:
        """Streams the peer opened, waiting for :meth:`accept_stream` (made on first use)."""
        queue = self._incoming_queue
        if queue is None:
            queue = self._incoming_queue = asyncio.Queue()
        return queue

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
        self.check_open()
        raise ConnectionClosed(0, "closed")

    def _stream_objects(self, sid: int) -> StreamPair:
        local = is_local(sid, self.connection.is_client)
        unidirectional = bool(sid & 2)
        reader = QuicStreamReader(sid, self._read_limit, self._consumer(sid), self._reader_done)
        if unidirectional and local:
            reader._feed_eof()  # our unidirectional stream: nothing to read
        else:
            self._readers[sid] = reader
        if unidirectional and not local:
            writer = QuicStreamWriter(self, sid)
            writer._closed = True  # peer's unidirectional stream: nothing to write
        else:
            writer = self._writers[sid] = QuicStreamWriter(self, sid, self._writer_closed)
        return reader, writer

    def _consumer(self, sid: int) -> Callable[[int], None]:
        connection = self.connection

        def consume(nbytes: int) -> None:
            # credit on consumption (RFC 9000 §4.1): the peer may send as much again
            if self.termination is None and connection.consume_stream_data(sid, nbytes):
                self.schedule_flush()  # only when a credit frame is owed

        return consume

    def _reader_done(self, sid: int) -> None:
        self._readers.pop(sid, None)

    def _writer_closed(self, writer: QuicStreamWriter) -> None:
        if self._writers.get(writer.stream_id) is writer:
            self._closing[writer.stream_id] = writer

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        """Ask the peer to stop sending (STOP_SENDING, RFC 9000 §19.5)."""
        self.connection.stop_stream(stream_id, error_code)
        reader = self._readers.get(stream_id)
        if reader is not None:
            reader._fail(StreamResetError(stream_id, error_code, "stream stopped"))
        self.schedule_flush()

    # -- datagrams --------------------------------------------------------------------------

    def send_datagram(self, data: bytes | bytearray | memoryview) -> None:
        """Queue an unreliable DATAGRAM (RFC 9221); ValueError if it is larger than
        :attr:`max_datagram_size` now (docs/datagrams.md)."""
        self.check_open()
        self.connection.send_datagram(data)
        self._protocol.transmit_now(self.connection)

    async def receive_datagram(self) -> bytes:
        """The next DATAGRAM payload; raises ConnectionClosed once the connection ends."""
        while True:
            queue = self._datagrams
            if queue:
                return queue.popleft()
            self.check_open()
            waiter = self._datagram_waiter
            if waiter is None or waiter.done():
                waiter = self._datagram_waiter = self._protocol.loop.create_future()
            await waiter

    def _wake_datagram_waiter(self) -> None:
        waiter = self._datagram_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def max_datagram_size(self) -> int:
        """Largest DATAGRAM payload that fits one packet now (0: not negotiated); it
        follows the path MTU up and down (docs/datagrams.md)."""
        return self.connection.max_datagram_payload

    # -- migration --------------------------------------------------------------------------

    async def migrate(self, host: str | None = None, port: int = 0) -> None:
        """Client: continue the connection from a new local UDP socket (RFC 9000 §9.2).

        The pump binds a socket to ``(host, port)`` (default: same host, a new port);
        the moment it takes over, the connection switches to an unused connection ID
        of the peer (so the first packet from the new address carries it, §9.5),
        resets its congestion state and validates the new path. On a socket other
        connections share (:mod:`quic.aio.shared`) this connection alone moves, to a
        socket of its own. Raises
        :class:`~quic.conn_migrate.MigrationRefused` when migration is not allowed
        (handshake not confirmed, the peer's disable_active_migration, no unused
        connection ID) and ``OSError`` if the socket cannot be bound; nothing is
        changed then.
        """
        self.check_open()
        connection = self.connection
        connection.check_migration()
        loop = self._protocol.loop
        clock = self._protocol.clock  # the endpoint's "now" (quic.aio.pump: The clock)

        def switch() -> None:
            connection.migrate(clock())

        protocol = self._protocol
        if not protocol.shared:
            try:
                await protocol.rebind(host, port, switch)
            finally:
                self.schedule_flush()
            return
        # a socket other connections share (quic.aio.shared): this one moves to its own
        from quic.aio.shared import open_client_pump  # imports this module

        if host is None:
            local = protocol.local_address
            host = local[0] if local else "0.0.0.0"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        own = await open_client_pump(loop, family, port, host)
        try:
            self.check_open()  # it may have ended while the socket was being bound
            protocol.hand_over(self, own)
        except BaseException:
            own.close_socket()
            raise
        switch()  # before anything leaves the new socket
        release, self._release = self._release, own.close_socket
        if release is not None:
            release()  # the shared socket's lease
        self.schedule_flush()

    def release_socket(self) -> None:
        """Give back the socket :func:`quic.aio.connect` took for this connection: a
        shared socket's lease, or close a socket of its own. Idempotent."""
        release, self._release = self._release, None
        if release is not None:
            release()

    # -- for layers that drive the connection directly ------------------------------------

    def schedule_flush(self) -> None:
        """Have the pump transmit what was queued on :attr:`connection` directly."""
        self._protocol.wake(self.connection)

    def transmit_now(self) -> None:
        """:meth:`schedule_flush`, but send at once unless a flush is already on its way:
        for what a caller queued just before it waits for the answer (nothing it does
        could join it; a request leaves a loop iteration sooner)."""
        self._protocol.transmit_now(self.connection)

    def transmit_reply(self) -> None:
        """:meth:`schedule_flush` for a datagram a task sent: the first since the socket
        was read leaves at once (:meth:`QuicEndpointProtocol.wake`)."""
        self._protocol.wake(self.connection, True)

    def flush_after_event(self) -> None:
        """:meth:`schedule_flush` for what a layer queued while an event of this
        session's was handed up: the pump transmits after the events it hands up, so
        this does not count towards a wake storm (:mod:`quic.aio.pump`), whose early
        send would build the connection before the tasks the event woke could write."""
        protocol = self._protocol
        protocol.endpoint.wake(self.connection)
        protocol.schedule_flush()

    async def wait_progress(self) -> None:
        """Wait for the connection's next flush (after which acks and credit may have
        changed); raises :class:`ConnectionClosed` once the connection has ended."""
        self.check_open()
        progress = self._progress
        if progress is None:
            progress = self._progress = asyncio.Event()
        await progress.wait()

    # -- closing ----------------------------------------------------------------------------

    def close(self, error_code: int = 0, reason: str = "") -> None:
        """Close now (application CONNECTION_CLOSE); see :meth:`aclose` to flush first."""
        self.connection.close(error_code, reason)
        self.schedule_flush()

    async def aclose(self, error_code: int = 0, reason: str = "", timeout: float = 5.0) -> None:
        """Wait (up to ``timeout``) for written data to be acknowledged, close, and wait
        until the close was sent.

        The close leaves at once unless a flush is already on its way (nothing the caller
        does can join it: it waits here), so a connection with nothing in flight is
        closed, its close sent, without a loop iteration."""
        if not self.is_closed and self._writers:
            with contextlib.suppress(TimeoutError, ConnectionClosed):
                async with asyncio.timeout(timeout):
                    for writer in list(self._writers.values()):
                        await writer.wait_flushed()
        self.connection.close(error_code, reason)
        self.transmit_now()  # else at the flush
        if self._close_settled:  # sent (_after_flush): nothing to wait for
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.wait_closed()

    def _internal_error(self, what: str, exc: BaseException) -> None:
        """A callback raised: close the connection with INTERNAL_ERROR, log once."""
        if self._failed:
            return
        self._failed = True
        logger.error("%s failed; closing the QUIC connection", what, exc_info=exc)
        with contextlib.suppress(Exception):
            self.connection.close(
                TransportErrorCode.INTERNAL_ERROR, f"{what} failed", application=False
            )
        self.schedule_flush()

    # -- events (called by the pump) --------------------------------------------------------

    def _on_event(self, event: QuicEvent) -> None:
        listener = self.event_listener
        if listener is not None:
            try:
                consumed = listener(event)
            except Exception as exc:
                self._internal_error("QUIC event listener", exc)
                consumed = True
            kind = type(event)  # (no isinstance of a tuple built per event: final classes)
            if consumed and kind is not HandshakeCompleted and kind is not ConnectionTerminated:
                return
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)

    def _on_stream_data(self, event: StreamDataReceived) -> None:
        sid = event.stream_id
        reader = self._readers.get(sid)
        if reader is None:
            if is_local(sid, self.connection.is_client) or not self._seen.add(sid):
                return  # a stream already finished here: nothing more to deliver
            reader, writer = self._stream_objects(sid)
            if event.data:
                reader._feed(event.data)
            if event.end_stream:
                reader._feed_eof()
            self._announce(reader, writer)
            return
        if event.data:
            reader._feed(event.data)
        if event.end_stream:
            reader._feed_eof()

    def _on_stream_reset(self, event: StreamReset) -> None:
        sid = event.stream_id
        exc = StreamResetError(sid, event.error_code, "stream reset by peer")
        reader = self._readers.get(sid)
        if reader is not None:
            reader._fail(exc, keep=event.reliable_size > 0)  # RESET_STREAM_AT
        elif not is_local(sid, self.connection.is_client) and self._seen.add(sid):
            reader, writer = self._stream_objects(sid)
            reader._fail(exc)
            self._announce(reader, writer)

    def _on_stop_sending(self, event: StopSendingReceived) -> None:
        writer = self._writers.get(event.stream_id)
        if writer is not None:
            writer._stopped(event.error_code)

    def _on_writable(self, event: StreamWritable) -> None:
        writer = self._writers.get(event.stream_id)
        if writer is not None:
            writer._wake()

    def _on_datagram(self, event: DatagramReceived) -> None:
        queue = self._datagrams
        if queue is None:
            queue = self._datagrams = deque(maxlen=self.connection.configuration.max_datagram_queue)
        queue.append(event.data)
        self._wake_datagram_waiter()

    def _on_handshake(self, event: HandshakeCompleted) -> None:
        self._handshake_done = True
        waiters, self._connected = self._connected, None  # later waiters: the flag
        if waiters is not None:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _announce(self, reader: QuicStreamReader, writer: QuicStreamWriter) -> None:
        handler = self.stream_handler
        if handler is None:
            self._incoming.put_nowait((reader, writer))
            return
        try:
            result = handler(reader, writer)
        except Exception as exc:
            self._internal_error("stream handler", exc)
            return
        if asyncio.iscoroutine(result):
            self._protocol.spawn(result)

    def _on_terminated(self, event: ConnectionTerminated) -> None:
        if self.termination is None:
            self.termination = event
        exc = ConnectionClosed(event.error_code, event.reason_phrase, event.by_peer)
        self._wake_datagram_waiter()
        waiters, self._connected = self._connected, None  # later waiters: check_open
        if waiters is not None:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
                    waiter.exception()  # mark retrieved
        for reader in list(self._readers.values()):
            if not reader._eof:  # a reader that got its FIN keeps its data
                reader._fail(exc)
        for writer in self._writers.values():
            writer._wake()
        self._pulse_progress()

    def _pulse_progress(self) -> None:
        """Wake every :meth:`wait_progress` waiter (their Event goes; the next waiter
        makes a new one)."""
        progress = self._progress
        if progress is not None:
            self._progress = None
            progress.set()

    def _after_flush(self) -> None:
        """The pump flushed this connection: resolve a finished close, pulse progress,
        forget writers whose data is all acknowledged."""
        if self.termination is not None and not self._close_settled:
            self._settle_closed()
        progress = self._progress  # _pulse_progress(), inline: once per transmit
        if progress is not None:
            self._progress = None
            progress.set()
        if self._closing:
            self._forget_flushed_writers()

    def _forget_flushed_writers(self) -> None:
        """Forget the closing writers whose data is all acknowledged (a method of its
        own: its comprehension would have :meth:`_after_flush` build a cell per call)."""
        closing = self._closing
        buffered = self.connection.send_buffered
        for sid in [sid for sid in closing if not buffered(sid)]:
            del closing[sid]
            self._writers.pop(sid, None)

    def _on_removed(self) -> None:
        """The endpoint forgot the connection: nothing more will happen to it."""
        if self.termination is None:  # it ended without a word (a connection that failed)
            self._on_event(
                ConnectionTerminated(TransportErrorCode.INTERNAL_ERROR, "connection removed")
            )
        assert self.termination is not None
        self._settle_closed()
        self._pulse_progress()


_HANDLERS: dict[type, Callable[[QuicSession, Any], None]] = {
    StreamDataReceived: QuicSession._on_stream_data,
    StreamReset: QuicSession._on_stream_reset,
    StopSendingReceived: QuicSession._on_stop_sending,
    StreamWritable: QuicSession._on_writable,
    DatagramReceived: QuicSession._on_datagram,
    HandshakeCompleted: QuicSession._on_handshake,
    ConnectionTerminated: QuicSession._on_terminated,
}
