"""asyncio HTTP/3 client and server (RFC 9114) over :mod:`quic.aio`.

Theory of operation
-------------------
One :class:`H3Link` glues a :class:`~quic.aio.QuicSession` to a Sans-I/O
:class:`~h3.connection.H3Connection`. It is installed by the ``session_setup`` hook of
:func:`quic.aio.connect` / :func:`quic.aio.serve`, before the connection reports any
event, as the session's ``event_listener``: every QUIC event goes through
:meth:`H3Connection.handle_event`, stream and datagram events are consumed (the QUIC
session's own readers never see them), and the HTTP/3 events are drained with
``next_event`` and routed to one :class:`_Exchange` per request stream:

* the first final header section resolves ``exchange.head`` (interim 1xx responses are
  skipped), a later one is the trailers;
* DATA payloads are fed to ``exchange.body``, an :class:`asyncio.StreamReader` (there is
  no receive backpressure: QUIC credit is granted as data is delivered);
* RESET_STREAM, a closed connection, or (client) a GOAWAY that excludes the stream fail
  the pending head and body with :class:`~quic.errors.StreamResetError` or
  :class:`~quic.aio.ConnectionClosed`.

Sending goes through :class:`H3Connection` (``send_headers``, ``send_data``) in DATA
frames of at most :data:`DATA_CHUNK` bytes; when QUIC's send buffer is above its high
mark the writer waits for the stream's ``StreamWritable`` event (backpressure). A peer's
STOP_SENDING makes further writes raise :class:`StreamResetError`.

Client: :meth:`H3Client.connect` yields an :class:`H3Client`; :meth:`H3Client.request`
opens a stream (waiting for stream credit), sends the request and returns an
:class:`H3ClientResponse` once the response header section arrived; its body is read
with :meth:`H3ClientResponse.read` or ``async for``. A body shorter or longer than its
``content-length`` raises :class:`StreamResetError` (H3_MESSAGE_ERROR).

Server: :func:`serve_h3` runs ``handler(request) -> H3Response`` in one task per
request. A response body is ``bytes`` (``content-length`` added) or an async iterable
of chunks (streamed with backpressure). A request header section larger than our
SETTINGS_MAX_FIELD_SECTION_SIZE never reaches the handler: the HTTP/3 layer resets the
stream with H3_EXCESSIVE_LOAD (RFC 9114 §4.2.2 allows 431 or refusing to process it).
:meth:`H3Server.shutdown` is graceful (RFC 9114 §5.2): GOAWAY on every connection,
in-flight requests finish (up to a timeout) and their responses are acknowledged, then
each connection is closed with H3_NO_ERROR.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import urlsplit

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
from quic.aio import ConnectionClosed, QuicServer, QuicSession, connect, serve
from quic.configuration import QuicConfiguration
from quic.errors import StreamResetError

__all__ = [
    "ALPN",
    "DATA_CHUNK",
    "H3Client",
    "H3ClientResponse",
    "H3Link",
    "H3Request",
    "H3Response",
    "H3Server",
    "HeaderInput",
    "serve_h3",
]

logger = logging.getLogger("h3")

ALPN = "h3"  # RFC 9114 §3.1
#: Largest DATA frame payload written at once.
DATA_CHUNK = 256 * 1024
#: Body chunk size for ``async for`` over a received body.
READ_CHUNK = 64 * 1024
#: Body bytes held for the application before QUIC delivery of the stream pauses.
BODY_BUFFER = 1024 * 1024

Headers: TypeAlias = list[tuple[bytes, bytes]]
HeaderInput: TypeAlias = (
    Mapping[str, str] | Mapping[bytes, bytes] | Iterable[tuple[str | bytes, str | bytes]]
)
Body: TypeAlias = bytes | bytearray | memoryview | AsyncIterable[bytes] | None

_STREAM_EVENTS = (
    qe.StreamDataReceived,
    qe.StreamReset,
    qe.StopSendingReceived,
    qe.DatagramReceived,
)


def _b(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def normalize_headers(headers: HeaderInput | None) -> Headers:
    """Header fields as ``(lowercase name, value)`` bytes pairs."""
    if headers is None:
        return []
    items: Iterable[tuple[Any, Any]] = headers.items() if isinstance(headers, Mapping) else headers
    return [(_b(name).lower(), _b(value)) for name, value in items]


def _header(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
        future.exception()  # mark retrieved: nobody may be waiting


# ======================================================================================
# one request stream
# ======================================================================================


class _Exchange:
    """Both halves of one request stream as seen from asyncio."""

    def __init__(self, stream_id: int, loop: asyncio.AbstractEventLoop) -> None:
        self.stream_id = stream_id
        self.head: asyncio.Future[Headers] = loop.create_future()
        self.body = asyncio.StreamReader(limit=1 << 20)
        self.trailers: Headers | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.stop_code: int | None = None  # the peer's STOP_SENDING
        self.recv_done = False
        self.send_done = False
        # receive backpressure: body bytes held for the application, and whether QUIC
        # delivery of this stream is paused (its flow-control window then stops the peer)
        self.buffered = 0
        self.paused = False
        self.resume: Callable[[], None] | None = None

    def fail(self, exc: Exception) -> None:
        _fail(self.head, exc)
        if not self.recv_done:
            self.recv_done = True
            self.body.set_exception(exc)
        self.writable.set()


# ======================================================================================
# the link: QUIC session ⇄ H3Connection
# ======================================================================================


class H3Link:
    """HTTP/3 on one :class:`QuicSession` (both roles); see the module docstring."""

    def __init__(
        self,
        session: QuicSession,
        configuration: H3Configuration | None = None,
        on_request: Callable[[_Exchange], None] | None = None,
    ) -> None:
        self.session = session
        self.h3 = H3Connection(session.connection, configuration or H3Configuration())
        self.loop = asyncio.get_running_loop()
        self.exchanges: dict[int, _Exchange] = {}
        self.peer_settings: asyncio.Future[dict[int, int]] = self.loop.create_future()
        self.goaway_id: int | None = None  # from the peer
        self.termination: qe.ConnectionTerminated | None = None
        self._on_request = on_request
        self._unflushed: set[int] = set()  # streams we ended, maybe not yet acknowledged
        session.event_listener = self._on_quic_event

    # -- input ------------------------------------------------------------------------

    def _on_quic_event(self, event: qe.QuicEvent) -> bool:
        if isinstance(event, qe.StreamWritable):
            exchange = self.exchanges.get(event.stream_id)
            if exchange is not None:
                exchange.writable.set()
            return False
        consumed = isinstance(event, _STREAM_EVENTS)
        if consumed or isinstance(
            event, (qe.HandshakeCompleted, qe.ProtocolNegotiated, qe.ConnectionTerminated)
        ):
            h3 = self.h3
            h3.handle_event(event)
            while (h3_event := h3.next_event()) is not None:
                self._on_h3_event(h3_event)
            self.session.schedule_flush()
        if isinstance(event, qe.ConnectionTerminated):
            self._on_terminated(event)
        return consumed

    def _pause(self, exchange: _Exchange) -> None:
        exchange.paused = True
        sid = exchange.stream_id
        quic = self.session.connection
        quic.pause_stream_receive(sid, True)

        def resume() -> None:
            exchange.paused = False
            quic.pause_stream_receive(sid, False)
            self.session.schedule_flush()

        exchange.resume = resume

    def _on_h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            self._on_headers(event)
        elif isinstance(event, DataReceived):
            exchange = self.exchanges.get(event.stream_id)
            if exchange is not None and not exchange.recv_done:
                if event.data:
                    self.h3.consume_data(event.stream_id, len(event.data))
                    exchange.body.feed_data(event.data)
                    exchange.buffered += len(event.data)
                    if exchange.buffered > BODY_BUFFER and not exchange.paused:
                        self._pause(exchange)
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
                exchange.stop_code = event.error_code
                exchange.writable.set()
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
            exchange = self.exchanges[sid] = _Exchange(sid, self.loop)
            exchange.head.set_result(event.headers)
            self._on_request(exchange)
        elif not exchange.head.done():
            status = _header(event.headers, b":status")
            if status is not None and status.startswith(b"1"):
                return  # interim response (RFC 9114 §4.1)
            exchange.head.set_result(event.headers)
        else:
            exchange.trailers = event.headers
        if event.stream_ended:
            self._end_recv(exchange)

    def _end_recv(self, exchange: _Exchange) -> None:
        exchange.recv_done = True
        exchange.body.feed_eof()
        if not exchange.head.done():
            _fail(exchange.head, StreamResetError(exchange.stream_id, 0, "no header section"))
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
        _fail(self.peer_settings, exc)
        for exchange in self.exchanges.values():
            exchange.fail(exc)

    def _forget(self, exchange: _Exchange, force: bool = False) -> None:
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

    def register(self, stream_id: int) -> _Exchange:
        exchange = self.exchanges[stream_id] = _Exchange(stream_id, self.loop)
        return exchange

    # -- output -----------------------------------------------------------------------

    def _check_writable(self, exchange: _Exchange) -> None:
        self.check_open()
        if exchange.stop_code is not None:
            raise StreamResetError(exchange.stream_id, exchange.stop_code, "peer sent STOP_SENDING")

    def send_headers(self, exchange: _Exchange, headers: Headers, end_stream: bool) -> None:
        """Send a header section; raises FieldSectionTooLarge above the peer's limit."""
        self._check_writable(exchange)
        self.h3.send_headers(exchange.stream_id, headers, end_stream)
        if end_stream:
            self._sent_all(exchange)
        self.session.schedule_flush()

    async def send_data(
        self, exchange: _Exchange, data: bytes | bytearray | memoryview, end_stream: bool
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

    def end_stream(self, exchange: _Exchange) -> None:
        self._check_writable(exchange)
        self.h3.end_stream(exchange.stream_id)
        self._sent_all(exchange)
        self.session.schedule_flush()

    def reset(self, exchange: _Exchange, error_code: int) -> None:
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

    def _sent_all(self, exchange: _Exchange) -> None:
        exchange.send_done = True
        unflushed = self._unflushed
        unflushed.add(exchange.stream_id)
        if len(unflushed) > 64:
            self._prune_unflushed()
        self._forget(exchange)

    def _prune_unflushed(self) -> None:
        buffered = self.session.connection.streams.send_buffered
        self._unflushed = {sid for sid in self._unflushed if buffered(sid)}

    async def wait_flushed(self) -> None:
        """Wait until everything we sent on ended streams is acknowledged."""
        while True:
            self._prune_unflushed()
            if not self._unflushed or self.is_closed:
                return
            await self.session.wait_progress()


# ======================================================================================
# messages
# ======================================================================================


class _BodyReader:
    """Async access to a received body (``read()``, ``async for``)."""

    def __init__(self, exchange: _Exchange, headers: Headers) -> None:
        self._exchange = exchange
        self.headers = headers
        raw = _header(headers, b"content-length")
        self.content_length: int | None = int(raw) if raw is not None and raw.isdigit() else None
        self._checked_length = self.content_length  # None: no content-length check
        self._received = 0

    @property
    def stream_id(self) -> int:
        return self._exchange.stream_id

    @property
    def trailers(self) -> Headers | None:
        return self._exchange.trailers

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), decoded."""
        value = _header(self.headers, name.lower().encode())
        return None if value is None else value.decode("utf-8", "replace")

    async def read_chunk(self, size: int = READ_CHUNK) -> bytes:
        """Up to ``size`` body bytes; ``b""`` at the end of the body."""
        exchange = self._exchange
        chunk = await exchange.body.read(size)
        exchange.buffered -= len(chunk)
        if exchange.paused and exchange.buffered <= BODY_BUFFER // 2 and exchange.resume:
            exchange.resume()
        self._received += len(chunk)
        length = self._checked_length
        if length is not None and (
            self._received > length or (not chunk and self._received != length)
        ):
            raise StreamResetError(
                self.stream_id, H3ErrorCode.H3_MESSAGE_ERROR, "body does not match content-length"
            )
        return chunk

    async def read(self) -> bytes:
        """The whole (remaining) body."""
        parts = []
        while chunk := await self.read_chunk(1 << 20):
            parts.append(chunk)
        return b"".join(parts)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while chunk := await self.read_chunk():
            yield chunk


class H3ClientResponse(_BodyReader):
    """A response received by :class:`H3Client`: ``status``, ``headers`` (no pseudo
    headers), body through :meth:`read` or ``async for``, ``trailers`` after the end."""

    def __init__(self, exchange: _Exchange, head: Headers, method: str = "GET") -> None:
        super().__init__(exchange, [(k, v) for k, v in head if not k.startswith(b":")])
        self.status = int(_header(head, b":status") or b"0")
        if method == "HEAD" or self.status in (204, 304):
            self._checked_length = None  # RFC 9114 §4.1.2: no content, whatever the length


class H3Request(_BodyReader):
    """A request as the server handler sees it: ``method``, ``path``, ``authority``,
    ``scheme``, ``headers`` (no pseudo headers), body through :meth:`read` / ``async for``."""

    def __init__(self, exchange: _Exchange, head: Headers) -> None:
        super().__init__(exchange, [(k, v) for k, v in head if not k.startswith(b":")])
        pseudo = {k.decode(): v.decode("utf-8", "replace") for k, v in head if k[:1] == b":"}
        self.method = pseudo.get(":method", "")
        self.path = pseudo.get(":path", "")
        self.authority = pseudo.get(":authority", "")
        self.scheme = pseudo.get(":scheme", "")
        self.protocol = pseudo.get(":protocol")


@dataclass
class H3Response:
    """What a server handler returns. ``body``: bytes (``content-length`` is added) or an
    async iterable of chunks (streamed; give ``content-length`` in ``headers`` if known)."""

    status: int = 200
    headers: HeaderInput = field(default_factory=list)
    body: Body = b""


Handler: TypeAlias = Callable[[H3Request], Awaitable[H3Response]]


# ======================================================================================
# client
# ======================================================================================


def _split_target(target: str, port: int | None) -> tuple[str, int, str]:
    """``(host, port, path)`` from a URL or a bare host name."""
    if "://" in target:
        parts = urlsplit(target)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"not an https URL with a host: {target!r}")
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return parts.hostname, port or parts.port or 443, path
    return target, port or 443, "/"


class H3Client:
    """An HTTP/3 client on one QUIC connection; make it with :meth:`connect`."""

    def __init__(self, link: H3Link, authority: str) -> None:
        self.link = link
        self.session = link.session
        self.authority = authority

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls,
        target: str,
        port: int | None = None,
        *,
        configuration: QuicConfiguration | None = None,
        h3_configuration: H3Configuration | None = None,
    ) -> AsyncIterator[H3Client]:
        """Connect to ``target`` (``https://host:port/...`` or a host name) with ALPN h3.

        ``configuration`` defaults to certificate verification with the system's trust
        store; set ``verify_certificates=False``, ``cafile`` or
        ``server_certificate_hashes`` on it as needed.
        """
        host, port, _ = _split_target(target, port)
        config = configuration or QuicConfiguration(is_client=True)
        config.is_client = True
        if ALPN not in config.alpn_protocols:
            config.alpn_protocols = [ALPN, *config.alpn_protocols]
        links: list[H3Link] = []

        def setup(session: QuicSession) -> None:
            links.append(H3Link(session, h3_configuration))

        async with connect(host, port, config, session_setup=setup) as session:
            if session.alpn_protocol != ALPN:
                session.close(H3ErrorCode.H3_GENERAL_PROTOCOL_ERROR, "ALPN h3 not selected")
                raise ConnectionError(f"the server did not select ALPN {ALPN}")
            authority = f"[{host}]" if ":" in host else host
            if port != 443:
                authority += f":{port}"
            client = cls(links[0], authority)
            try:
                yield client
            finally:
                await session.aclose(H3ErrorCode.H3_NO_ERROR)

    async def get(self, target: str = "/", headers: HeaderInput | None = None) -> H3ClientResponse:
        return await self.request("GET", target, headers)

    async def request(
        self,
        method: str,
        target: str = "/",
        headers: HeaderInput | None = None,
        body: Body = None,
    ) -> H3ClientResponse:
        """Send a request and wait for the response header section.

        ``target`` is a path (``/x?y``) or an https URL on this connection's server.
        Raises :class:`StreamResetError` when the server refuses or resets the request,
        :class:`ConnectionClosed` when the connection ends, FieldSectionTooLarge
        (an ``H3StreamError``) when the headers exceed the server's limit.
        """
        link = self.link
        link.check_open()
        if link.goaway_id is not None:
            raise ConnectionClosed(H3ErrorCode.H3_NO_ERROR, "the server sent GOAWAY")
        authority = self.authority
        if "://" in target:
            parts = urlsplit(target)
            authority = parts.netloc or authority
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        else:
            path = target if target.startswith("/") else "/" + target
        fields: Headers = [
            (b":method", method.upper().encode()),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
        ]
        fields += normalize_headers(headers)
        if isinstance(body, (bytes, bytearray, memoryview)) and (
            body or method.upper() in ("POST", "PUT", "PATCH")
        ):
            fields.append((b"content-length", str(len(body)).encode()))
        _, writer = await self.session.create_stream()
        exchange = link.register(writer.stream_id)
        try:
            empty = body is None or (isinstance(body, (bytes, bytearray, memoryview)) and not body)
            link.send_headers(exchange, fields, end_stream=empty)
            if not empty:
                assert body is not None
                await _send_body(link, exchange, body)
        except StreamResetError as exc:
            if exc.error_code != H3ErrorCode.H3_NO_ERROR:  # §4.1: response came early
                raise
        except BaseException:
            link.reset(exchange, H3ErrorCode.H3_REQUEST_CANCELLED)
            raise
        head = await exchange.head
        return H3ClientResponse(exchange, head, method.upper())


async def _send_body(link: H3Link, exchange: _Exchange, body: Body) -> None:
    if body is None:
        link.end_stream(exchange)
    elif isinstance(body, (bytes, bytearray, memoryview)):
        await link.send_data(exchange, body, True)
    else:
        async for chunk in body:
            if chunk:
                await link.send_data(exchange, chunk, False)
        link.end_stream(exchange)


# ======================================================================================
# server
# ======================================================================================


class H3Server:
    """A running HTTP/3 server: ``port``, graceful :meth:`shutdown`."""

    def __init__(self, handler: Handler, h3_configuration: H3Configuration | None) -> None:
        self.handler = handler
        self.h3_configuration = h3_configuration
        self.quic_server: QuicServer | None = None
        self.links: set[H3Link] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = False

    @property
    def port(self) -> int:
        assert self.quic_server is not None
        return self.quic_server.port

    def _setup(self, session: QuicSession) -> None:
        link: H3Link

        def on_request(exchange: _Exchange) -> None:
            task = link.loop.create_task(self._respond(link, exchange))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        link = H3Link(session, self.h3_configuration, on_request)
        self.links = {known for known in self.links if not known.is_closed}
        self.links.add(link)
        if self.closing:
            link.h3.send_goaway()

    async def _respond(self, link: H3Link, exchange: _Exchange) -> None:
        request = H3Request(exchange, exchange.head.result())
        try:
            response = await self.handler(request)
        except (ConnectionClosed, StreamResetError, asyncio.IncompleteReadError):
            return
        except Exception:
            logger.exception("handler failed for %s %s", request.method, request.path)
            response = H3Response(500, [("content-type", "text/plain")], b"internal error\n")
        try:
            await _send_response(link, exchange, response, head_only=request.method == "HEAD")
        except (ConnectionClosed, StreamResetError) as exc:
            logger.debug("stream %d: response abandoned: %s", exchange.stream_id, exc)
        except Exception:
            logger.exception("stream %d: cannot send the response", exchange.stream_id)
            link.reset(exchange, H3ErrorCode.H3_INTERNAL_ERROR)
        else:
            if not exchange.recv_done and not link.is_closed:
                # RFC 9114 §4.1: the rest of the request is not needed
                link.h3.stop_stream(exchange.stream_id, H3ErrorCode.H3_NO_ERROR)
                link.session.schedule_flush()

    async def shutdown(self, timeout: float = 5.0) -> None:
        """GOAWAY, let in-flight requests finish (up to ``timeout``), close everything."""
        self.closing = True
        for link in list(self.links):
            if not link.is_closed:
                link.h3.send_goaway()  # RFC 9114 §5.2
                link.session.schedule_flush()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.tasks:
                    await asyncio.wait(set(self.tasks))
                for link in list(self.links):
                    await link.wait_flushed()
        for task in list(self.tasks):
            task.cancel()
        if self.quic_server is not None:
            await self.quic_server.shutdown(H3ErrorCode.H3_NO_ERROR, "server shutdown")

    def close(self) -> None:
        """Close the socket now (no GOAWAY); see :meth:`shutdown`."""
        if self.quic_server is not None:
            self.quic_server.close()

    async def __aenter__(self) -> H3Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()


async def _send_response(
    link: H3Link, exchange: _Exchange, response: H3Response, head_only: bool
) -> None:
    body = response.body
    fields: Headers = [(b":status", str(response.status).encode())]
    extra = normalize_headers(response.headers)
    fields += [(k, v) for k, v in extra if not k.startswith(b":")]
    is_bytes = isinstance(body, (bytes, bytearray, memoryview)) or body is None
    if is_bytes and _header(extra, b"content-length") is None:
        fields.append((b"content-length", str(len(body or b"")).encode()))  # type: ignore[arg-type]
    empty = head_only or (is_bytes and not body)
    link.send_headers(exchange, fields, end_stream=empty)
    if empty:
        if body is not None and not is_bytes:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()
        return
    await _send_body(link, exchange, body)


async def serve_h3(
    host: str,
    port: int,
    configuration: QuicConfiguration,
    handler: Handler,
    *,
    h3_configuration: H3Configuration | None = None,
) -> H3Server:
    """Serve HTTP/3 on ``host:port`` (port 0: any free port) with ``handler``.

    ``configuration`` is the server's QUIC configuration (certificate and key); its ALPN
    list gets ``h3``.
    """
    configuration.is_client = False
    if ALPN not in configuration.alpn_protocols:
        configuration.alpn_protocols = [ALPN, *configuration.alpn_protocols]
    server = H3Server(handler, h3_configuration)
    server.quic_server = await serve(host, port, configuration, session_setup=server._setup)
    return server
