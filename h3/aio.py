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
* DATA payloads are held in ``exchange.body`` (a :class:`_Body`) until the application
  reads them, and only then consumed (:meth:`H3Connection.consume_data`), which returns
  their QUIC flow-control credit: a reader that does not keep up holds at most the
  stream window (RFC 9000 §4.1) and the peer waits — that is the receive backpressure,
  nothing else pauses. A body the application abandons (the handler returns without
  reading all of it, a response closed or dropped unread) is discarded and credited,
  and if it is still arriving, reading stops (STOP_SENDING);
* RESET_STREAM, a closed connection, or (client) a GOAWAY that excludes the stream fail
  the pending head and body with :class:`~quic.errors.StreamResetError` or
  :class:`~quic.aio.ConnectionClosed`.

An exchange leaves ``H3Link.exchanges`` once both halves are done (or it failed); no
exception raised while handling an event escapes the event callback: a bug of ours
closes the connection with H3_INTERNAL_ERROR.

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
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from h3.aio_link import DATA_CHUNK, Exchange, H3Link, Headers, header_value
from h3.connection import H3Configuration
from h3.early import TOO_EARLY
from h3.errors import H3ErrorCode
from h3.remembered import remember_settings_in_tickets
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

#: Methods a client sends in 0-RTT: safe ones (RFC 9110 §9.2.1), since early data can be
#: replayed (RFC 9114 §10.9, RFC 8470 §2.1).
_EARLY_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))

logger = logging.getLogger("h3")

ALPN = "h3"  # RFC 9114 §3.1
#: Body chunk size for ``async for`` over a received body.
READ_CHUNK = 64 * 1024

HeaderInput: TypeAlias = (
    Mapping[str, str] | Mapping[bytes, bytes] | Iterable[tuple[str | bytes, str | bytes]]
)
Body: TypeAlias = bytes | bytearray | memoryview | AsyncIterable[bytes] | None


def _b(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def normalize_headers(headers: HeaderInput | None) -> Headers:
    """Header fields as ``(lowercase name, value)`` bytes pairs."""
    if headers is None:
        return []
    items: Iterable[tuple[Any, Any]] = headers.items() if isinstance(headers, Mapping) else headers
    return [(_b(name).lower(), _b(value)) for name, value in items]


# ======================================================================================
# messages
# ======================================================================================


class _BodyReader:
    """Async access to a received body (``read()``, ``async for``)."""

    def __init__(self, exchange: Exchange, headers: Headers) -> None:
        self._exchange = exchange
        self.headers = headers
        raw = header_value(headers, b"content-length")
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
        value = header_value(self.headers, name.lower().encode())
        return None if value is None else value.decode("utf-8", "replace")

    async def read_chunk(self, size: int = READ_CHUNK) -> bytes:
        """Up to ``size`` body bytes; ``b""`` at the end of the body."""
        exchange = self._exchange
        chunk = await exchange.body.read(size)
        exchange.consumed(len(chunk))  # credit returns as the application reads
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


def _abandon_later(exchange: Exchange) -> None:
    """Finalizer of a response dropped unread: release its body from the event loop
    (never from inside whatever code the garbage collector interrupted)."""
    link = exchange.link
    if link is not None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to credit
            link.loop.call_soon_threadsafe(
                link.abandon_body, exchange, H3ErrorCode.H3_REQUEST_CANCELLED
            )


class H3ClientResponse(_BodyReader):
    """A response received by :class:`H3Client`: ``status``, ``headers`` (no pseudo
    headers), body through :meth:`read` or ``async for``, ``trailers`` after the end.

    Its body holds the peer's flow-control credit until it is read: :meth:`close` (or
    ``async with``) a response whose body is not wanted. One that is garbage-collected
    unread is closed then."""

    def __init__(self, exchange: Exchange, head: Headers, method: str = "GET") -> None:
        super().__init__(exchange, [(k, v) for k, v in head if not k.startswith(b":")])
        self.status = int(header_value(head, b":status") or b"0")
        if method == "HEAD" or self.status in (204, 304):
            self._checked_length = None  # RFC 9114 §4.1.2: no content, whatever the length
        self._finalizer = weakref.finalize(self, _abandon_later, exchange)
        self._finalizer.atexit = False

    def close(self) -> None:
        """Done with this response: the unread body is discarded and credited, and if it
        is still arriving reading stops (STOP_SENDING, H3_REQUEST_CANCELLED)."""
        self._finalizer.detach()
        exchange = self._exchange
        if exchange.link is not None:
            exchange.link.abandon_body(exchange, H3ErrorCode.H3_REQUEST_CANCELLED)

    async def __aenter__(self) -> H3ClientResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class H3Request(_BodyReader):
    """A request as the server handler sees it: ``method``, ``path``, ``authority``,
    ``scheme``, ``headers`` (no pseudo headers), body through :meth:`read` / ``async for``."""

    def __init__(self, exchange: Exchange, head: Headers) -> None:
        super().__init__(exchange, [(k, v) for k, v in head if not k.startswith(b":")])
        pseudo = {k.decode(): v.decode("utf-8", "replace") for k, v in head if k[:1] == b":"}
        self.method = pseudo.get(":method", "")
        self.path = pseudo.get(":path", "")
        self.authority = pseudo.get(":authority", "")
        self.scheme = pseudo.get(":scheme", "")
        self.protocol = pseudo.get(":protocol")
        #: The request came in 0-RTT (or marked Early-Data: 1): it may be a replay
        #: (RFC 8470 §5.1); answer ``425`` (:data:`h3.early.TOO_EARLY`) to have the
        #: client retry it after the handshake. See ``H3Configuration.early_data_policy``.
        self.early_data = exchange.early_data


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

        async with connect(
            host, port, config, wait_connected=False, session_setup=setup
        ) as session:
            early = session.connection.handshake.early.ticket
            if (
                session.connection.early_data_possible
                and early is not None
                and early.alpn_protocol == ALPN
            ):
                # a resumed connection whose ticket allows 0-RTT (RFC 9001 §4.6.1): our
                # SETTINGS and the first requests go out before the handshake completes,
                # under the default settings of the peer (RFC 9114 §7.2.4.2 lets a client
                # use them; remembered ones are not needed, as we use none beyond them).
                # 0-RTT speaks the ticket's ALPN, so only an h3 ticket; if 0-RTT is
                # refused, QUIC sends it again in 1-RTT.
                links[0].h3.initialize()
                session.schedule_flush()
            else:
                await session.wait_connected()
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
        A request sent in 0-RTT (safe methods on a resumed connection) and answered
        ``425 Too Early`` is sent again once after the handshake (RFC 8470 §5.2) if its
        body can be sent again (bytes or none); the retry's response is returned.
        Raises :class:`StreamResetError` when the server refuses or resets the request,
        :class:`ConnectionClosed` when the connection ends, FieldSectionTooLarge
        (an ``H3StreamError``) when the headers exceed the server's limit.
        """
        response, early = await self._send_request(method, target, headers, body)
        if (
            early
            and response.status == TOO_EARLY
            and (body is None or isinstance(body, (bytes, bytearray, memoryview)))
        ):
            # RFC 8470 §5.2: a request sent in early data and answered 425 is retried
            # once, not in early data: after the handshake
            response.close()
            await self.session.wait_connected()
            response, early = await self._send_request(method, target, headers, body)
        return response

    async def _send_request(
        self, method: str, target: str, headers: HeaderInput | None, body: Body
    ) -> tuple[H3ClientResponse, bool]:
        """Send one request; the response and whether the request went in 0-RTT."""
        link = self.link
        link.check_open()
        if link.goaway_id is not None:
            raise ConnectionClosed(H3ErrorCode.H3_NO_ERROR, "the server sent GOAWAY")
        session = link.session
        if session.connection.early_data_possible and method.upper() not in _EARLY_METHODS:
            # only safe methods ride in 0-RTT, which an attacker may replay (RFC 9114
            # §10.9, RFC 8470 §2.1); the others wait for the handshake
            await session.wait_connected()
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
        early = session.connection.early_data_possible  # the request goes in 0-RTT
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
        return H3ClientResponse(exchange, head, method.upper()), early


async def _send_body(link: H3Link, exchange: Exchange, body: Body) -> None:
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

        def on_request(exchange: Exchange) -> None:
            task = link.loop.create_task(self._respond(link, exchange))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        link = H3Link(session, self.h3_configuration, on_request)
        self.links = {known for known in self.links if not known.is_closed}
        self.links.add(link)
        if self.closing:
            link.h3.send_goaway()

    async def _respond(self, link: H3Link, exchange: Exchange) -> None:
        request = H3Request(exchange, exchange.head.result())
        try:
            await self._answer(link, exchange, request)
        finally:
            link.finish(exchange)  # whatever happened, this exchange is over

    async def _answer(self, link: H3Link, exchange: Exchange, request: H3Request) -> None:
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
    link: H3Link, exchange: Exchange, response: H3Response, head_only: bool
) -> None:
    body = response.body
    fields: Headers = [(b":status", str(response.status).encode())]
    extra = normalize_headers(response.headers)
    fields += [(k, v) for k, v in extra if not k.startswith(b":")]
    is_bytes = isinstance(body, (bytes, bytearray, memoryview)) or body is None
    if is_bytes and header_value(extra, b"content-length") is None:
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
    list gets ``h3``, and its tickets our SETTINGS (RFC 9114 §7.2.4.2, see
    :func:`h3.remembered.remember_settings_in_tickets`).
    """
    configuration.is_client = False
    if ALPN not in configuration.alpn_protocols:
        configuration.alpn_protocols = [ALPN, *configuration.alpn_protocols]
    # RFC 9114 §7.2.4.2: our SETTINGS go with the tickets; 0-RTT only if compatible
    remember_settings_in_tickets(configuration, h3_configuration or H3Configuration())
    server = H3Server(handler, h3_configuration)
    server.quic_server = await serve(host, port, configuration, session_setup=server._setup)
    return server
