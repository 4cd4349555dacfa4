"""Low-level WebTransport server for asyncio: session requests in, sessions out.

Theory of operation
-------------------
:meth:`WebTransportServer.listen` binds a UDP socket through :func:`quic.aio.serve`;
its ``session_setup`` hook installs a :class:`~pywebtransport._link.WtLink` on every
accepted QUIC connection before the connection reports any event. The protocol core
parks CONNECT requests until the client's SETTINGS arrive and picks the newest common
draft per request (draft-ietf-webtrans-http3-16 §7.1); each ``SessionRequested`` it
reports becomes a :class:`SessionRequest`, queued for :meth:`incoming_sessions` and
emitted as a ``session_request`` event. With QUIC-LB settings in the configuration
(:meth:`ServerConfig.quic_lb`), the endpoint makes its connection IDs with the QUIC-LB
configuration's ``token_bytes`` (docs/quic-lb.md). The application answers with
:meth:`SessionRequest.accept` (→ :class:`~pywebtransport.session.WebTransportSession`;
streams and datagrams that arrived early are replayed to it) or
:meth:`SessionRequest.reject` (an HTTP status).

:meth:`WebTransportServer.shutdown` is graceful: new requests are refused (503), every
connection gets an HTTP/3 GOAWAY and every session a WT_DRAIN_SESSION (draft-16 §4.6;
draft-02 has none); sessions get ``timeout`` seconds to end, then the rest are closed
with (``code``, ``reason``), their close capsules are flushed, the connections are
closed with H3_NO_ERROR, and the socket last.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from h3.errors import H3ErrorCode
from pywebtransport._link import WtLink, decode_headers
from pywebtransport.config import ServerConfig, draft_name
from pywebtransport.events import EventEmitter, EventType
from pywebtransport.exceptions import WebTransportError
from pywebtransport.protocol import SessionRequested, WebTransportConfiguration
from pywebtransport.protocol import WebTransportError as ProtocolApiError
from pywebtransport.session import WebTransportSession
from quic.aio import QuicServer, QuicSession, serve
from quic.aio.workers import WorkerSpec

__all__ = ["SessionRequest", "WebTransportServer"]

_COUNTERS = ("bytes_sent", "bytes_received", "datagrams_sent", "datagrams_received")


def _encode_headers(headers: Mapping[str, str] | None) -> list[tuple[bytes, bytes]]:
    if not headers:
        return []
    return [(k.lower().encode("latin-1"), v.encode("utf-8")) for k, v in headers.items()]


class SessionRequest:
    """One incoming CONNECT, waiting for :meth:`accept` or :meth:`reject`."""

    def __init__(self, server: WebTransportServer, link: WtLink, event: SessionRequested) -> None:
        self._server = server
        self._link = link
        self._event = event
        self.session_id = event.session_id
        target = urlsplit(event.path)
        # the strings an accepted session keeps, interned like its header fields: the
        # same path, authority and peer host for many sessions are one object each
        intern = sys.intern
        self.path: str = intern(target.path or "/")
        self.query: str = target.query
        self.authority: str = intern(event.authority)
        self.headers: dict[str, str] = decode_headers(event.headers)
        self.origin: str | None = self.headers.get("origin")
        self.draft: str = draft_name(event.draft)
        self.protocols: list[str] = list(event.protocols)
        address = link.peer_address
        self.remote_address: tuple[str, int] = (
            (intern(str(address[0])), int(address[1])) if address else ("", 0)
        )
        self.state = "pending"  # "accepted", "rejected"
        self.session: WebTransportSession | None = None

    def __repr__(self) -> str:
        return f"<SessionRequest {self.path!r} draft={self.draft} state={self.state}>"

    @property
    def url(self) -> str:
        query = f"?{self.query}" if self.query else ""
        return f"https://{self.authority}{self.path}{query}"

    def _check_pending(self) -> None:
        if self.state != "pending":
            raise WebTransportError(f"the session request was already {self.state}")
        self._link.check_open()

    async def accept(
        self, headers: dict[str, str] | None = None, protocol: str | None = None
    ) -> WebTransportSession:
        """Accept with a 200 response (optionally choosing a WT-Protocol)."""
        self._check_pending()
        link = self._link
        session = WebTransportSession(
            link,
            self.session_id,
            path=self.path,
            authority=self.authority,
            headers=self.headers,
            draft=self._event.draft,
            protocol=protocol,
            remote_address=self.remote_address,
        )
        try:
            # registers the session, then routes what waited for it (§4.7)
            link.accept(session, _encode_headers(headers), protocol)
        except ProtocolApiError as exc:
            raise WebTransportError(str(exc)) from exc
        self.state = "accepted"
        self.session = session
        self._server._adopt(session)
        return session

    async def reject(self, status_code: int = 404, headers: dict[str, str] | None = None) -> None:
        """Refuse with a non-2xx HTTP status."""
        self._check_pending()
        try:
            self._link.reject(self.session_id, status_code, _encode_headers(headers))
        except ProtocolApiError as exc:
            raise WebTransportError(str(exc)) from exc
        self.state = "rejected"
        self._server._rejected += 1


class WebTransportServer:
    """A WebTransport server socket; see the module docstring."""

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.events = EventEmitter(self)
        self._quic: QuicServer | None = None
        self._wt_config: WebTransportConfiguration | None = None  # made by listen()
        self._links: set[WtLink] = set()
        self._requests: asyncio.Queue[SessionRequest | None] = asyncio.Queue()
        self._pending: dict[tuple[int, int], SessionRequest] = {}
        self._sessions: set[WebTransportSession] = set()
        self._closing = False
        self._closed: asyncio.Event | None = None
        self._rejected = 0
        self._connections_total = 0
        self._sessions_total = 0
        self._totals = dict.fromkeys(_COUNTERS, 0)
        # the callbacks every link and session is given, bound once: not a bound method
        # (or closure) per connection and per session (issue 10, memory per idle session)
        self._forget_session = self._forget
        self._request_hook = self._on_request
        self._link_closed_hook = self._on_link_closed

    # -- lifecycle ----------------------------------------------------------------------

    async def listen(
        self, host: str | None = None, port: int | None = None, *, worker: WorkerSpec | None = None
    ) -> None:
        """Bind and start serving (port 0: any free port, see :attr:`port`).
        ``worker``: serve on that worker's socket of a group on one port instead
        (:mod:`quic.aio.workers`)."""
        if self._quic is not None:
            raise WebTransportError("the server is already listening")
        self._closed = asyncio.Event()
        # one WebTransport configuration for every connection (read-only to them), made
        # with the QUIC one: not one per connection (issue 10, memory)
        self._wt_config = self.config.webtransport_configuration()
        quic_config = self.config.quic_configuration()
        # QUIC-LB: every connection ID issued carries the server ID (docs/quic-lb.md)
        lb = self.config.quic_lb()
        self._quic = await serve(
            self.config.host if host is None else host,
            self.config.port if port is None else port,
            quic_config,
            session_setup=self._setup,
            worker=worker,
            # with workers the worker's CID scheme carries the QUIC-LB settings
            token_bytes=lb.token_bytes if lb is not None and worker is None else None,
        )

    @property
    def port(self) -> int:
        if self._quic is None:
            raise WebTransportError("the server is not listening")
        return self._quic.port

    @property
    def address(self) -> tuple[str, int]:
        if self._quic is None:
            raise WebTransportError("the server is not listening")
        sockname = self._quic.transport.get_extra_info("sockname")
        return str(sockname[0]), int(sockname[1])

    @property
    def is_serving(self) -> bool:
        return self._quic is not None and not self._closing

    @property
    def sessions(self) -> list[WebTransportSession]:
        return [s for s in self._sessions if not s.is_closed]

    async def __aenter__(self) -> WebTransportServer:
        if self._quic is None:
            await self.listen()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def wait_closed(self) -> None:
        """Wait until :meth:`shutdown` finished."""
        if self._closed is not None:
            await self._closed.wait()

    # -- connections and requests -------------------------------------------------------

    def _setup(self, quic_session: QuicSession) -> None:
        config = self.config
        wt_config = self._wt_config
        if wt_config is None:  # listen() makes it; this is only a fallback
            wt_config = self._wt_config = config.webtransport_configuration()
        link = WtLink(
            quic_session,
            wt_config,
            datagram_queue=config.datagram_queue_size,
            datagram_queue_bytes=config.datagram_queue_bytes,
            stream_backlog=config.stream_backlog,
            on_request=self._request_hook,
            on_closed=self._link_closed_hook,
        )
        self._links.add(link)
        self._connections_total += 1
        self.events.emit(EventType.CONNECTION, link.peer_address)

    def _on_link_closed(self, link: WtLink) -> None:
        self._links.discard(link)
        for key in [k for k in self._pending if k[0] == id(link)]:
            self._pending.pop(key, None)
        self.events.emit(EventType.CONNECTION_CLOSED, link.peer_address)

    def _on_request(self, link: WtLink, event: SessionRequested) -> None:
        if self._closing:
            link.reject(event.session_id, 503, [])  # shutting down
            self._rejected += 1
            return
        request = SessionRequest(self, link, event)
        self._pending[(id(link), event.session_id)] = request
        self._requests.put_nowait(request)
        self.events.emit(EventType.SESSION_REQUEST, request)

    async def incoming_sessions(self) -> AsyncIterator[SessionRequest]:
        """Session requests as they arrive, until :meth:`shutdown`."""
        while (request := await self._requests.get()) is not None:
            self._pending.pop((id(request._link), request.session_id), None)
            if request.state == "pending" and not request._link.is_closed:
                yield request
        self._requests.put_nowait(None)  # other iterators end too

    def _adopt(self, session: WebTransportSession) -> None:
        self._sessions.add(session)
        self._sessions_total += 1
        session._on_end = self._forget_session  # one bound method for every session
        self.events.emit(EventType.SESSION, session)

    def _forget(self, session: WebTransportSession) -> None:
        if session in self._sessions:
            self._sessions.discard(session)
            for name in _COUNTERS:
                self._totals[name] += getattr(session, name)

    # -- shutdown -----------------------------------------------------------------------

    async def shutdown(self, code: int = 0, reason: str = "", timeout: float = 5.0) -> None:
        """GOAWAY and DRAIN, wait up to ``timeout`` for sessions to end, then close the
        rest (``code``, ``reason``), the connections and the socket."""
        if self._quic is None or self._closing:
            await self.wait_closed()
            return
        self._closing = True
        self._requests.put_nowait(None)
        for request in list(self._pending.values()):
            if request.state == "pending" and not request._link.is_closed:
                with contextlib.suppress(WebTransportError):
                    await request.reject(503)
        self._pending.clear()
        for link in list(self._links):
            link.send_goaway()  # RFC 9114 §5.2
        for session in self.sessions:
            await session.drain()
        sessions = self.sessions
        if sessions and timeout > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.gather(*(s.wait_closed() for s in sessions))
        await asyncio.gather(
            *(s.close(code, reason) for s in self.sessions), return_exceptions=True
        )
        await asyncio.gather(
            *(link.aclose(H3ErrorCode.H3_NO_ERROR) for link in list(self._links)),
            return_exceptions=True,
        )
        await self._quic.shutdown(H3ErrorCode.H3_NO_ERROR, "server shutdown", timeout=1.0)
        await self._quic.wait_closed()
        assert self._closed is not None
        self._closed.set()

    # -- statistics ---------------------------------------------------------------------

    def table_sizes(self) -> dict[str, int]:
        """The size of every table the server keeps, summed over its connections: all
        0 (``core_claimed_ids`` small) once the sessions and streams ended."""
        sizes = {
            "connections": len(self._links),
            "pending_requests": len(self._pending),
            "sessions": len(self._sessions),
        }
        for link in self._links:
            for key, value in link.table_sizes().items():
                sizes[key] = sizes.get(key, 0) + value
        return sizes

    def stats(self) -> dict[str, Any]:
        """Server-wide counters: connections, sessions, streams, datagrams, bytes."""
        live = self.sessions
        totals = dict(self._totals)
        for session in live:
            for name in _COUNTERS:
                totals[name] += getattr(session, name)
        return {
            "connections": len(self._links),
            "connections_total": self._connections_total,
            "sessions": len(live),
            "sessions_total": self._sessions_total,
            "sessions_rejected": self._rejected,
            "streams": sum(s.open_streams for s in live),
            **totals,
        }
