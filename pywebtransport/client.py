"""WebTransport client for asyncio.

Theory of operation
-------------------
:meth:`WebTransportClient.connect` opens one QUIC connection per session (ALPN
``h3``) through :func:`quic.aio.connect`; a client's connections share one UDP socket
per address family (``ClientConfig.share_socket``, :class:`quic.aio.shared.SharedSockets`:
one descriptor, one wake-up and one transmit pass for all of them; a connection that
migrates moves to a socket of its own). The ``session_setup`` hook installs a
:class:`~pywebtransport._link.WtLink` before the connection reports any event. Once
the handshake is done the extended CONNECT is queued with the core's ``connect``; the
core sends it when the server's SETTINGS have arrived, with the newest draft both
sides speak (draft-ietf-webtrans-http3-16 §3.1, §7.1). The server's answer resolves
the pending future: a 2xx gives a :class:`~pywebtransport.session.WebTransportSession`
(built by the link as the answer is routed, so streams the server opens right away
are not lost); anything else raises
:class:`~pywebtransport.exceptions.SessionRejected`. ``connect_timeout`` covers the
handshake and the CONNECT exchange (:class:`~pywebtransport.exceptions.ConnectTimeout`);
a refused certificate raises :class:`~pywebtransport.exceptions.CertificateError`.

When the session ends (either side) its QUIC connection is closed once the
session's final capsules were acknowledged — the last session of a shared connection
closes it. :meth:`WebTransportClient.close` (or leaving ``async with``) closes every
session and connection.

Several sessions on one connection: ``connect(url, pool_with=session)`` sends the
CONNECT on that session's connection; ``WebTransportClient(config, pool=True)`` (or
``pool=N``) does it on its own, per origin (host, port): a new session joins an open
connection to the same origin whose draft allows more than one session
(:func:`pool_capacity`: draft-16 with flow control on both sides, §5.1; draft-07 up
to the server's SETTINGS_WEBTRANSPORT_MAX_SESSIONS; never draft-02) and that has room,
else a new connection is opened. At most ``N`` sessions (16 for ``True``) share one
connection, and the client announces that many (draft-07 setting, draft-16 limit).
Opens to one origin are serialized so concurrent connects share instead of racing
(one lock per origin with connections or waiters; it leaves with them). A pooled
CONNECT the server refuses without an answer (status 0: H3_REQUEST_REJECTED, a
session limit) marks that connection full and is retried once on a new connection.

Saying why: failures name the host and port, the draft when one was negotiated, and
the close in words — a TLS alert as ``bad_certificate (42)`` (CRYPTO_ERROR = 0x100 +
alert, RFC 9001 §4.8), a refused certificate with its problem (hash mismatch,
expired, name mismatch, unknown issuer), a port nobody listens on as such (the OS's
ICMP report, :class:`quic.aio.ConnectionUnreachable`) — see
:mod:`pywebtransport.exceptions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from h3.errors import H3ErrorCode
from pywebtransport._link import WtLink, decode_headers
from pywebtransport.config import ClientConfig, draft_name
from pywebtransport.events import EventType
from pywebtransport.exceptions import (
    CertificateError,
    ConnectionFailed,
    ConnectTimeout,
    SessionRejected,
    WebTransportError,
    certificate_problem,
    error_code_text,
    tls_alert_text,
)
from pywebtransport.protocol import Draft, SessionEstablished
from pywebtransport.protocol import WebTransportError as ProtocolApiError
from pywebtransport.protocol.drafts import session_limit, supported_by_peer
from pywebtransport.session import WebTransportSession
from quic.aio import ConnectionClosed, ConnectionUnreachable, QuicSession
from quic.aio import connect as quic_connect
from quic.aio.shared import SharedSockets
from quic.events import ConnectionTerminated
from quic.tls.alerts import AlertDescription

__all__ = ["DEFAULT_POOL_SESSIONS", "WebTransportClient", "parse_url", "pool_capacity"]

#: Sessions one pooled connection carries at most with ``pool=True``.
DEFAULT_POOL_SESSIONS = 16
_CRYPTO_ERROR = 0x100  # RFC 9001 §4.8
_CERTIFICATE_ALERTS = frozenset(
    _CRYPTO_ERROR + a
    for a in (
        AlertDescription.bad_certificate,
        AlertDescription.unsupported_certificate,
        AlertDescription.certificate_revoked,
        AlertDescription.certificate_expired,
        AlertDescription.certificate_unknown,
        AlertDescription.unknown_ca,
    )
)

HeaderInput = Mapping[str, str] | Iterable[tuple[str, str]]


def parse_url(url: str) -> tuple[str, int, str, str]:
    """``https://host:port/path?query`` → ``(host, port, authority, path_and_query)``."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("https", "wt", "webtransport"):
        raise ValueError(f"WebTransport URLs use https: {url!r}")
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in {url!r}")
    try:
        port = parts.port or 443
    except ValueError as exc:
        raise ValueError(f"bad port in {url!r}") from exc
    authority = parts.netloc.rpartition("@")[2]
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return host, port, authority, path


def _header_list(*sources: HeaderInput | None) -> list[tuple[bytes, bytes]]:
    result: list[tuple[bytes, bytes]] = []
    for source in sources:
        if not source:
            continue
        items = source.items() if isinstance(source, Mapping) else source
        for name, value in items:
            result.append((name.lower().encode("latin-1"), value.encode("utf-8")))
    return result


def pool_capacity(link: WtLink) -> int:
    """Sessions the connection of ``link`` may carry at once, by its draft and SETTINGS
    (0: not known yet — the server's SETTINGS have not arrived). draft-16 §5.1: more
    than one only with flow control enabled on both sides; draft-07: the server's
    SETTINGS_WEBTRANSPORT_MAX_SESSIONS; draft-13: both (the server's WT_MAX_SESSIONS with
    flow control on both sides); draft-02 (and no common draft): one. Never more
    than the sessions we announced (``max_sessions`` of our configuration)."""
    settings = link.peer_settings
    if settings is None:
        return 0
    ours = max(1, link.configuration.max_sessions)
    draft = link.draft
    if draft is None or draft is Draft.DRAFT02:
        return 1
    # draft-16/13: ours with flow control on both sides, else 1; draft-07/13: the
    # server's session count (drafts.session_limit)
    limit = session_limit(draft, link.draft_flow_control, True, settings, ours)
    return max(1, min(ours, limit))


def _drafts_of(settings: Mapping[int, int] | None) -> str:
    """The drafts the server's SETTINGS offer, in words."""
    if settings is None:
        return "unknown (no SETTINGS)"
    names = [draft_name(d) for d in sorted(Draft, reverse=True)
             if supported_by_peer(d, settings, peer_is_server=True)]  # fmt: skip
    return ", ".join(names) or "no WebTransport"


class _Connection:
    """One QUIC connection of the client and its exit stack."""

    def __init__(
        self, stack: contextlib.AsyncExitStack, link: WtLink, origin: tuple[str, int]
    ) -> None:
        self.stack = stack
        self.link = link
        self.origin = origin
        self.closed = False
        self.full = False  # the server refused a pooled CONNECT: no more sessions here

    @property
    def draft(self) -> str:
        draft = self.link.draft
        return draft_name(draft) if draft is not None else ""

    def has_room(self) -> bool:
        link = self.link
        if self.closed or self.full or link.is_closed:
            return False
        return len(link.sessions) + len(link.pending) < pool_capacity(link)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            await self.stack.aclose()


class WebTransportClient:
    """Connects to WebTransport servers; an async context manager."""

    def __init__(self, config: ClientConfig | None = None, *, pool: bool | int = False) -> None:
        """``pool``: share connections between sessions to one origin where the draft
        allows (True: up to :data:`DEFAULT_POOL_SESSIONS` per connection; an int: that
        many); see the module docstring."""
        self.config = config or ClientConfig()
        size = DEFAULT_POOL_SESSIONS if pool is True else int(pool)
        if size < 0:
            raise ValueError("pool must be True, False or a positive session count")
        self.pool_size = size
        self._origins: dict[tuple[str, int], list[_Connection]] = {}
        self._origin_locks: dict[tuple[str, int], asyncio.Lock] = {}
        self._origin_users: dict[tuple[str, int], int] = {}  # connects choosing now
        self._connections: set[_Connection] = set()
        self._sessions: set[WebTransportSession] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._sockets = SharedSockets() if self.config.share_socket else None

    @property
    def sessions(self) -> list[WebTransportSession]:
        return [s for s in self._sessions if not s.is_closed]

    async def __aenter__(self) -> WebTransportClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(
        self,
        url: str,
        *,
        headers: HeaderInput | None = None,
        protocols: Iterable[str] | None = None,
        timeout: float | None = None,
        pool_with: WebTransportSession | None = None,
    ) -> WebTransportSession:
        """Open a session to ``url`` (``https://host:port/path``).

        ``pool_with``: send the CONNECT on that session's QUIC connection instead of a
        new one (draft-ietf-webtrans-http3-16 §3: sessions may share a connection; the
        server's limit applies, H3_REQUEST_REJECTED beyond it). A client made with
        ``pool=True`` chooses the connection itself (see the module docstring).

        Raises SessionRejected (non-2xx or no common draft), ConnectTimeout,
        CertificateError or ConnectionFailed; each names the host and port.
        """
        if self._closed:
            raise WebTransportError("the client is closed")
        host, port, authority, path = parse_url(url)
        limit = self.config.connect_timeout if timeout is None else timeout
        request = (authority, path, _header_list(self.config.headers, headers),
                   tuple(protocols or ()), (host, port))  # fmt: skip
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        for attempt in range(2):
            shared = pool_with is not None
            future: asyncio.Future[WebTransportSession] | None = None
            if pool_with is not None:
                conn = self._connection_of(pool_with)
            elif self.pool_size:
                conn, shared, future = await self._pooled(host, port, request, deadline)
            else:
                conn = await self._open_connection(host, port, limit)
            try:
                if future is None:
                    future = self._start(conn, request)
                async with asyncio.timeout_at(deadline):
                    session = await future
            except TimeoutError:
                if not shared:
                    await self._discard(conn)
                raise ConnectTimeout(
                    f"no answer to the CONNECT for {url} from {host}:{port} within {limit} s",
                    host=host, port=port,
                ) from None  # fmt: skip
            except SessionRejected as exc:
                if not shared:
                    await self._discard(conn)
                elif pool_with is None and exc.status_code == 0 and attempt == 0:
                    conn.full = True  # refused without an answer: a session limit
                    continue
                raise self._rejected(exc, conn, url) from None
            except ConnectionFailed as exc:
                if not shared:
                    await self._discard(conn)
                raise self._failure(conn, host, port, exc) from None
            except BaseException:
                if not shared:
                    await self._discard(conn)
                raise
            break
        if session.is_closed:  # the server closed it in the batch that accepted it
            self._on_session_closed(session, conn)
            return session
        self._sessions.add(session)
        session.events.on(EventType.CLOSED, lambda _: self._on_session_closed(session, conn))
        return session

    def _connection_of(self, session: WebTransportSession) -> _Connection:
        for conn in self._connections:
            if conn.link is session.link and not conn.closed:
                return conn
        raise WebTransportError("that session's connection is not open")

    async def _pooled(
        self, host: str, port: int, request: _Request, deadline: float
    ) -> tuple[_Connection, bool, asyncio.Future[WebTransportSession]]:
        """A connection to ``(host, port)`` with room for one more session (opened if
        none has room) and the started CONNECT; the bool tells a shared connection."""
        origin = (host, port)
        lock = self._origin_locks.get(origin)
        if lock is None:
            lock = self._origin_locks[origin] = asyncio.Lock()
        self._origin_users[origin] = self._origin_users.get(origin, 0) + 1
        try:
            async with asyncio.timeout_at(deadline):
                async with lock:
                    for conn in list(self._origins.get(origin, ())):
                        if not conn.closed and pool_capacity(conn.link) == 0:
                            with contextlib.suppress(Exception):
                                await asyncio.shield(conn.link.settings)  # learn its draft
                        if conn.has_room():
                            return conn, True, self._start(conn, request)
                    loop = asyncio.get_running_loop()
                    conn = await self._open_connection(host, port, deadline - loop.time())
                    try:
                        return conn, False, self._start(conn, request)
                    except BaseException:
                        await self._discard(conn)
                        raise
        except TimeoutError:
            raise ConnectTimeout(
                f"QUIC handshake with {host}:{port} timed out", host=host, port=port
            ) from None
        finally:
            users = self._origin_users.pop(origin) - 1
            if users:
                self._origin_users[origin] = users
            elif not self._origins.get(origin):
                self._origin_locks.pop(origin, None)

    async def _open_connection(self, host: str, port: int, limit: float) -> _Connection:
        config = self.config
        if self.pool_size:  # announce (and allow) the pooled sessions
            config = dataclasses.replace(config, max_sessions=max(config.max_sessions,
                                                                  self.pool_size))  # fmt: skip
        qconfig = config.quic_configuration(server_name=host)
        wt_config = config.webtransport_configuration()
        links: list[WtLink] = []

        def setup(quic_session: QuicSession) -> None:
            links.append(
                WtLink(
                    quic_session,
                    wt_config,
                    datagram_queue=config.datagram_queue_size,
                    datagram_queue_bytes=config.datagram_queue_bytes,
                    stream_backlog=config.stream_backlog,
                )
            )

        stack = contextlib.AsyncExitStack()
        try:
            async with asyncio.timeout(limit):
                await stack.enter_async_context(
                    quic_connect(host, port, qconfig, session_setup=setup, sockets=self._sockets)
                )
        except TimeoutError:
            await stack.aclose()
            raise ConnectTimeout(
                f"QUIC handshake with {host}:{port} timed out after {limit:g} s (no answer)",
                host=host, port=port,
            ) from None  # fmt: skip
        except ConnectionUnreachable as exc:
            await stack.aclose()
            raise ConnectionFailed(
                f"cannot connect to {host}:{port}: nothing is listening there (the OS "
                f"reports an ICMP unreachable: {exc.strerror})",
                exc.error_code, exc.reason, host=host, port=port,
            ) from exc  # fmt: skip
        except ConnectionClosed as exc:
            await stack.aclose()
            term = links[0].termination if links else None
            raise _closed_error(host, port, "", exc, term, config.server_name or host) from None
        except OSError as exc:
            await stack.aclose()
            raise ConnectionFailed(
                f"cannot connect to {host}:{port}: {exc}", host=host, port=port
            ) from exc
        conn = _Connection(stack, links[0], (host, port))
        self._connections.add(conn)
        if self.pool_size:
            self._origins.setdefault(conn.origin, []).append(conn)
        return conn

    def _start(self, conn: _Connection, request: _Request) -> asyncio.Future[WebTransportSession]:
        """Queue the CONNECT on ``conn``; the future resolves with the session."""
        link = conn.link
        authority, path, headers, protocols, remote = request
        try:
            link.check_open()
        except ConnectionFailed as exc:
            raise self._failure(conn, remote[0], remote[1], exc) from None
        future: asyncio.Future[WebTransportSession] = link.loop.create_future()

        def factory(event: SessionEstablished) -> WebTransportSession:
            return WebTransportSession(
                link,
                event.session_id,
                path=path,
                authority=authority,
                headers=decode_headers(event.headers),
                draft=event.draft,
                protocol=event.protocol,
                remote_address=remote,
            )

        try:
            link.connect(authority, path, headers, protocols, future, factory)
        except ProtocolApiError as exc:
            raise WebTransportError(str(exc)) from exc
        return future

    def _failure(
        self, conn: _Connection, host: str, port: int, exc: ConnectionFailed
    ) -> ConnectionFailed:
        """``exc`` (the connection ended during the CONNECT) with host, port and draft."""
        term = conn.link.termination
        closed = ConnectionClosed(exc.code, exc.reason, term.by_peer if term else False)
        return _closed_error(host, port, conn.draft, closed, term, self.config.server_name or host)

    def _rejected(self, exc: SessionRejected, conn: _Connection, url: str) -> SessionRejected:
        host, port = conn.origin
        draft = conn.draft
        link = conn.link
        if exc.status_code == 0 and link.draft is None and link.peer_settings is not None:
            drafts = sorted(link.configuration.drafts, reverse=True)
            ours = ", ".join(draft_name(d) for d in drafts)
            why = (f"{host}:{port} offers none of our WebTransport drafts (ours: {ours}; "
                   f"its SETTINGS: {_drafts_of(link.peer_settings)})")  # fmt: skip
        else:
            why = f"{host}:{port} answered status {exc.status_code}" if exc.status_code else (
                f"{host}:{port} refused it without an answer")  # fmt: skip
            if draft:
                why += f" ({draft})"
            if exc.reason:
                why += f": {exc.reason}"
        return SessionRejected(
            exc.status_code, exc.reason, exc.headers, url=url, draft=draft,
            message=f"session {url} rejected: {why}",
        )  # fmt: skip

    async def _discard(self, conn: _Connection) -> None:
        await conn.close()
        self._forget(conn)

    def _forget(self, conn: _Connection) -> None:
        self._connections.discard(conn)
        pooled = self._origins.get(conn.origin)
        if pooled is not None:
            with contextlib.suppress(ValueError):
                pooled.remove(conn)
            if not pooled:
                del self._origins[conn.origin]
                if conn.origin not in self._origin_users:
                    self._origin_locks.pop(conn.origin, None)

    def _on_session_closed(self, session: WebTransportSession, conn: _Connection) -> None:
        self._sessions.discard(session)

        async def finish() -> None:
            link = conn.link
            await link.wait_stream_flushed(session.session_id, 2.0)
            if not link.sessions and not link.pending:
                with contextlib.suppress(Exception):
                    await link.aclose(H3ErrorCode.H3_NO_ERROR)
                await conn.close()
                self._forget(conn)

        task = asyncio.get_running_loop().create_task(finish())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Close every session (code 0) and every connection."""
        self._closed = True
        for session in list(self._sessions):
            with contextlib.suppress(Exception):
                await session.close()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for conn in list(self._connections):
            with contextlib.suppress(Exception):
                await conn.link.aclose(H3ErrorCode.H3_NO_ERROR)
            await conn.close()
        self._connections.clear()
        if self._sockets is not None:
            self._sockets.close()
        self._origins.clear()
        self._origin_locks.clear()


_Request = tuple[str, str, list[tuple[bytes, bytes]], tuple[str, ...], tuple[str, int]]


def _closed_error(
    host: str,
    port: int,
    draft: str,
    exc: ConnectionClosed,
    term: ConnectionTerminated | None,
    server_name: str,
) -> ConnectionFailed:
    """The API exception for a connection that ended while connecting, in words."""
    code, reason = exc.error_code, exc.reason
    application = term.is_application if term is not None else False
    by_peer = term.by_peer if term is not None else exc.by_peer
    where = f"{host}:{port}" + (f" ({draft})" if draft else "")
    alert = "" if application else (tls_alert_text(code) or "")
    if term is not None and term.idle_timeout:
        return ConnectionFailed(f"no answer from {where}: the connection timed out idle",
                                code, reason, host=host, port=port, draft=draft)  # fmt: skip
    if not application and code in _CERTIFICATE_ALERTS and not by_peer:
        problem = certificate_problem(reason, code)
        if problem.endswith("does not name the server"):
            problem += f" {server_name!r}"
        return CertificateError(
            f"certificate of {where} refused: {problem} [{reason or 'TLS alert ' + alert}]",
            code, reason, host=host, port=port, draft=draft, alert=alert, problem=problem,
        )  # fmt: skip
    who = "the server closed" if by_peer else "we closed"
    text = (
        f"cannot connect to {where}: {who} the connection with {error_code_text(code, application)}"
    )
    if reason:
        text += f": {reason}"
    if by_peer and code == _CRYPTO_ERROR + AlertDescription.no_application_protocol:
        text += " (the server does not offer HTTP/3, ALPN h3)"
    cls = CertificateError if not application and code in _CERTIFICATE_ALERTS else ConnectionFailed
    return cls(text, code, reason, host=host, port=port, draft=draft, alert=alert)
