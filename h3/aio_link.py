"""The asyncio glue of :mod:`h3.aio`: one :class:`H3Link` per QUIC session, one
:class:`Exchange` per request stream, and the :class:`BodyBuffer` of a received body.

Theory of operation
-------------------
See :mod:`h3.aio`, which builds its client and server on these. :class:`H3Link` is the
session's ``event_listener``: it feeds every QUIC event to its
:class:`~h3.connection.H3Connection`, drains the HTTP/3 events with ``next_event`` and
routes them to the exchanges. Body bytes stay uncredited in :class:`BodyBuffer` until the
application reads them (:meth:`Exchange.consumed` → :meth:`H3Link.consume` →
:meth:`H3Connection.consume_data`), so QUIC flow control bounds what a slow reader
holds to the stream window (RFC 9000 §4.1). An exchange leaves :attr:`H3Link.exchanges`
once both halves are done, or it failed, or (server) its handler finished
(:meth:`H3Link.finish`). Nothing raised while handling an event escapes the event
callback: a bug of ours closes the connection with H3_INTERNAL_ERROR, logged once.

Only public APIs of :mod:`quic` are used (``QuicSession.connection``,
``schedule_flush``, ``wait_progress``) — except :meth:`H3Link._send_buffered`, which
needs QUIC's count of unacknowledged stream bytes and has no public accessor yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, TypeAlias

from h3.connection import H3Configuration, H3Connection
from h3.errors import H3ErrorCode
from h3.events import (
    DataReceived,
    GoAwayReceived,
    H3Event,
    HeadersReceived,
    RequestStreamReset,
    SettingsReceived,
    StopSendingReceived,
)
from quic import events as qe
from quic.aio import ConnectionClosed, QuicSession
from quic.errors import StreamResetError

__all__ = [
    "DATA_CHUNK",
    "BodyBuffer",
    "Exchange",
    "H3Link",
    "Headers",
    "fail_future",
    "header_value",
]

logger = logging.getLogger("h3")

#: Largest DATA frame payload written at once.
DATA_CHUNK = 256 * 1024

Headers: TypeAlias = list[tuple[bytes, bytes]]

_STREAM_EVENTS = (
    qe.StreamDataReceived,
    qe.StreamReset,
    qe.StopSendingReceived,
    qe.DatagramReceived,
)


def header_value(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def fail_future(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
        future.exception()  # mark retrieved: nobody may be waiting


# ======================================================================================
# one request stream
# ======================================================================================


class BodyBuffer:
    """Received body bytes held until the application reads them.

    Nothing bounds it here: its bytes are not credited to the peer before they are
    read, so flow control holds it to the stream window (RFC 9000 §4.1)."""

    __slots__ = ("_chunks", "_eof", "_exc", "_loop", "_waiter", "size")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._chunks: deque[bytes] = deque()
        self.size = 0
        self._eof = False
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self.size += len(data)
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def set_exception(self, exc: BaseException) -> None:
        self._exc = exc
        self._wake()

    def discard(self) -> int:
        """Drop what is held; returns how many bytes that was."""
        n = self.size
        self._chunks.clear()
        self.size = 0
        return n

    async def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; ``b""`` at the end; raises the exception set, if any."""
        while True:
            if self._exc is not None:
                raise self._exc
            if self._chunks:
                break
            if self._eof:
                return b""
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        chunks = self._chunks
        first = chunks[0]
        if len(first) <= n:
            chunks.popleft()
            self.size -= len(first)
            return first
        chunks[0] = first[n:]
        self.size -= n
        return first[:n]


class Exchange:
    """Both halves of one request stream as seen from asyncio."""

    def __init__(
        self, stream_id: int, loop: asyncio.AbstractEventLoop, link: H3Link | None = None
    ) -> None:
        self.stream_id = stream_id
        self.link = link
        self.head: asyncio.Future[Headers] = loop.create_future()
        self.body = BodyBuffer(loop)
        self.trailers: Headers | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.stop_code: int | None = None  # the peer's STOP_SENDING
        self.recv_done = False
        self.send_done = False
        self.early_data = False  # server: the request came in 0-RTT (h3.early)

    def fail(self, exc: Exception) -> None:
        fail_future(self.head, exc)
        if not self.recv_done:
            self.recv_done = True
            self.body.set_exception(exc)
        self.writable.set()
        self.release()

    def consumed(self, nbytes: int) -> None:
        """The application read ``nbytes`` of the body: their credit goes back."""
        if self.link is not None:
            self.link.consume(self.stream_id, nbytes)

    def release(self) -> None:
        """Discard what the body holds and credit it (nobody will read it)."""
        self.consumed(self.body.discard())


# ======================================================================================
# the link: QUIC session ⇄ H3Connection
# ======================================================================================


class H3Link:
    """HTTP/3 on one :class:`QuicSession` (both roles); see the module docstring."""

    def __init__(
        self,
        session: QuicSession,
        configuration: H3Configuration | None = None,
        on_request: Callable[[Exchange], None] | None = None,
    ) -> None:
        self.session = session
        self.h3 = H3Connection(session.connection, configuration or H3Configuration())
        self.loop = asyncio.get_running_loop()
        self.exchanges: dict[int, Exchange] = {}
        self.peer_settings: asyncio.Future[dict[int, int]] = self.loop.create_future()
        self.goaway_id: int | None = None  # from the peer
        self.termination: qe.ConnectionTerminated | None = None
        self._on_request = on_request
        self._unflushed: set[int] = set()  # streams we ended, maybe not yet acknowledged
        self._failed = False
        session.event_listener = self._on_quic_event

    # -- input ------------------------------------------------------------------------

    def _on_quic_event(self, event: qe.QuicEvent) -> bool:
        consumed = isinstance(event, _STREAM_EVENTS)
        try:
            self._dispatch(event)
        except Exception:  # a bug of ours: never let it escape the pump's callback
            if not self._failed:
                self._failed = True
                logger.exception("HTTP/3 link failed on %s; closing", type(event).__name__)
            with contextlib.suppress(Exception):
                self.h3.close(H3ErrorCode.H3_INTERNAL_ERROR, "internal error")
                self.session.schedule_flush()
        return consumed

    def _dispatch(self, event: qe.QuicEvent) -> None:
        if isinstance(event, qe.StreamWritable):
            exchange = self.exchanges.get(event.stream_id)
            if exchange is not None:
                exchange.writable.set()
            return
        if isinstance(
            event,
            (
                *_STREAM_EVENTS,
                qe.HandshakeCompleted,
                qe.ProtocolNegotiated,
                qe.ConnectionTerminated,
            ),
        ):
            h3 = self.h3
            h3.handle_event(event)
            while (h3_event := h3.next_event()) is not None:
                self._on_h3_event(h3_event)
            self.session.schedule_flush()
        if isinstance(event, qe.ConnectionTerminated):
            self._on_terminated(event)

    def consume(self, stream_id: int, nbytes: int) -> None:
        """The application is done with ``nbytes`` of body: return their credit."""
        if nbytes > 0 and not self.is_closed and self.h3.consume_data(stream_id, nbytes):
            self.session.schedule_flush()  # only when a credit frame is owed

    def _on_h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            self._on_headers(event)
        elif isinstance(event, DataReceived):
            exchange = self.exchanges.get(event.stream_id)
            if exchange is None or exchange.recv_done:
                self.consume(event.stream_id, len(event.data))  # nobody reads it
                return
            if event.data:
                exchange.body.feed(event.data)  # credited when the application reads
            if event.stream_ended:
                self._end_recv(exchange)
        elif isinstance(event, RequestStreamReset):
            exchange = self.exchanges.get(event.stream_id)
            if exchange is not None:
                exchange.fail(
                    StreamResetError(event.stream_id, event.error_code, "stream reset by peer")
                )
                self._forget(exchange)
        elif isinstance(event, StopSendingReceived):
            exchange = self.exchanges.get(event.stream_id)
            if exchange is not None:
                # QUIC resets our sending half (RFC 9000 §3.5): it is over
                exchange.stop_code = event.error_code
                exchange.send_done = True
                exchange.writable.set()
                self._forget(exchange)
        elif isinstance(event, SettingsReceived):
            if not self.peer_settings.done():
                self.peer_settings.set_result(event.settings)
        elif isinstance(event, GoAwayReceived):
            self._on_goaway(event.stream_id)
        # other events (datagrams, WebTransport, our own GOAWAY) do not concern requests

    def _on_headers(self, event: HeadersReceived) -> None:
        sid = event.stream_id
        exchange = self.exchanges.get(sid)
        if exchange is None:
            if self.h3.is_client or self._on_request is None:
                return
            exchange = self.exchanges[sid] = Exchange(sid, self.loop, self)
            exchange.early_data = event.early_data
            exchange.head.set_result(event.headers)
            self._on_request(exchange)
        elif not exchange.head.done():
            status = header_value(event.headers, b":status")
            if status is not None and status.startswith(b"1"):
                return  # interim response (RFC 9114 §4.1)
            exchange.head.set_result(event.headers)
        else:
            exchange.trailers = event.headers
        if event.stream_ended:
            self._end_recv(exchange)

    def _end_recv(self, exchange: Exchange) -> None:
        exchange.recv_done = True
        exchange.body.feed_eof()
        if not exchange.head.done():
            fail_future(exchange.head, StreamResetError(exchange.stream_id, 0, "no header section"))
        self._forget(exchange)

    def _on_goaway(self, ident: int) -> None:
        self.goaway_id = ident
        if not self.h3.is_client:
            return
        for sid, exchange in list(self.exchanges.items()):
            if sid >= ident:  # RFC 9114 §5.2: not processed, can be retried
                exchange.fail(
                    StreamResetError(sid, H3ErrorCode.H3_REQUEST_REJECTED, "server sent GOAWAY")
                )
                self._forget(exchange, force=True)

    def _on_terminated(self, event: qe.ConnectionTerminated) -> None:
        if self.termination is not None:
            return
        self.termination = event
        exc = ConnectionClosed(event.error_code, event.reason_phrase, event.by_peer)
        fail_future(self.peer_settings, exc)
        for exchange in self.exchanges.values():
            exchange.fail(exc)

    def _forget(self, exchange: Exchange, force: bool = False) -> None:
        if force or (exchange.recv_done and exchange.send_done):
            self.exchanges.pop(exchange.stream_id, None)

    # -- state ------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self.termination is not None or self.session.is_closed

    def check_open(self) -> None:
        term = self.termination or self.session.termination
        if term is not None:
            raise ConnectionClosed(term.error_code, term.reason_phrase, term.by_peer)

    def register(self, stream_id: int) -> Exchange:
        exchange = self.exchanges[stream_id] = Exchange(stream_id, self.loop, self)
        return exchange

    def finish(self, exchange: Exchange) -> None:
        """Server: the handler and the response are over. A response that was not
        completed is reset; the request body nobody read is released, and if it is
        still arriving reading stops with H3_NO_ERROR (RFC 9114 §4.1)."""
        if not exchange.send_done and exchange.stop_code is None:
            self.reset(exchange, H3ErrorCode.H3_REQUEST_CANCELLED)
        self.abandon_body(exchange, H3ErrorCode.H3_NO_ERROR)
        self._forget(exchange, force=True)

    def abandon_body(self, exchange: Exchange, error_code: int) -> None:
        """Nobody will read the rest of this body: credit what is held and, while it is
        still arriving, stop reading it (STOP_SENDING with ``error_code``)."""
        exchange.release()
        if exchange.recv_done or self.is_closed:
            return
        exchange.recv_done = True
        exchange.body.set_exception(
            StreamResetError(exchange.stream_id, error_code, "body abandoned")
        )
        self.h3.stop_stream(exchange.stream_id, error_code)
        self.session.schedule_flush()
        self._forget(exchange)

    # -- output -----------------------------------------------------------------------

    def _check_writable(self, exchange: Exchange) -> None:
        self.check_open()
        if exchange.stop_code is not None:
            raise StreamResetError(exchange.stream_id, exchange.stop_code, "peer sent STOP_SENDING")

    def send_headers(self, exchange: Exchange, headers: Headers, end_stream: bool) -> None:
        """Send a header section; raises FieldSectionTooLarge above the peer's limit."""
        self._check_writable(exchange)
        self.h3.send_headers(exchange.stream_id, headers, end_stream)
        if end_stream:
            self._sent_all(exchange)
        self.session.schedule_flush()

    async def send_data(
        self, exchange: Exchange, data: bytes | bytearray | memoryview, end_stream: bool
    ) -> None:
        """Send body bytes in DATA frames, waiting while QUIC's send buffer is full."""
        total = len(data)
        if total == 0:
            if end_stream:
                self.end_stream(exchange)
            return
        view = data if isinstance(data, bytes) and total <= DATA_CHUNK else memoryview(data)
        for offset in range(0, total, DATA_CHUNK):
            while not exchange.writable.is_set():
                self._check_writable(exchange)
                await exchange.writable.wait()
            self._check_writable(exchange)
            last = end_stream and offset + DATA_CHUNK >= total
            chunk = view[offset : offset + DATA_CHUNK] if total > DATA_CHUNK else view
            try:
                ok = self.h3.send_data(exchange.stream_id, chunk, last)
            except (ValueError, RuntimeError) as exc:  # stream gone (reset, discarded)
                raise StreamResetError(exchange.stream_id, 0, str(exc)) from exc
            if not ok:
                exchange.writable.clear()
            self.session.schedule_flush()
        if end_stream:
            self._sent_all(exchange)

    def end_stream(self, exchange: Exchange) -> None:
        self._check_writable(exchange)
        self.h3.end_stream(exchange.stream_id)
        self._sent_all(exchange)
        self.session.schedule_flush()

    def reset(self, exchange: Exchange, error_code: int) -> None:
        """Abandon both halves of a stream (RESET_STREAM and, if reading, STOP_SENDING)."""
        if self.is_closed:
            return
        sid = exchange.stream_id
        if not exchange.send_done:
            self.h3.reset_stream(sid, error_code)
        if not exchange.recv_done:
            self.h3.stop_stream(sid, error_code)
        exchange.fail(StreamResetError(sid, error_code, "stream reset locally"))
        exchange.send_done = True
        self._forget(exchange, force=True)
        self.session.schedule_flush()

    def _sent_all(self, exchange: Exchange) -> None:
        exchange.send_done = True
        unflushed = self._unflushed
        unflushed.add(exchange.stream_id)
        if len(unflushed) > 64:
            self._prune_unflushed()
        self._forget(exchange)

    def _send_buffered(self, stream_id: int) -> int:
        """Bytes written on ``stream_id`` and not yet acknowledged. QUIC has no public
        accessor for this yet (reported); this is the one place that reaches for it."""
        return self.session.connection.send_buffered(stream_id)

    def _prune_unflushed(self) -> None:
        buffered = self._send_buffered
        self._unflushed = {sid for sid in self._unflushed if buffered(sid)}

    async def wait_flushed(self) -> None:
        """Wait until everything we sent on ended streams is acknowledged."""
        while True:
            self._prune_unflushed()
            if not self._unflushed or self.is_closed:
                return
            await self.session.wait_progress()
