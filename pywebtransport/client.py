"""WebTransport client for asyncio.

Theory of operation
-------------------
:meth:`WebTransportClient.connect` opens one QUIC connection per session (ALPN
``h3``) through :func:`quic.aio.connect`, whose ``session_setup`` hook installs a
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
session's final capsules were acknowledged. :meth:`WebTransportClient.close` (or
leaving ``async with``) closes every session and connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from h3.errors import H3ErrorCode
from pywebtransport._link import WtLink, connection_error, decode_headers
from pywebtransport.config import ClientConfig
from pywebtransport.events import EventType
from pywebtransport.exceptions import ConnectionFailed, ConnectTimeout, WebTransportError
from pywebtransport.protocol import SessionEstablished
from pywebtransport.protocol import WebTransportError as ProtocolApiError
from pywebtransport.session import WebTransportSession
from quic.aio import ConnectionClosed, QuicSession
from quic.aio import connect as quic_connect

__all__ = ["WebTransportClient", "parse_url"]

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


class _Connection:
    """One QUIC connection of the client and its exit stack."""

    def __init__(self, stack: contextlib.AsyncExitStack, link: WtLink) -> None:
        self.stack = stack
        self.link = link
        self.closed = False

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            await self.stack.aclose()


class WebTransportClient:
    """Connects to WebTransport servers; an async context manager."""

    def __init__(self, config: ClientConfig | None = None) -> None:
        self.config = config or ClientConfig()
        self._connections: set[_Connection] = set()
        self._sessions: set[WebTransportSession] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

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
        server's limit applies, H3_REQUEST_REJECTED beyond it).

        Raises SessionRejected (non-2xx or no common draft), ConnectTimeout,
        CertificateError or ConnectionFailed.
        """
        if self._closed:
            raise WebTransportError("the client is closed")
        host, port, authority, path = parse_url(url)
        config = self.config
        limit = config.connect_timeout if timeout is None else timeout
        if pool_with is None:
            conn = await self._open_connection(host, port, limit)
        else:
            conn = self._connection_of(pool_with)
        try:
            async with asyncio.timeout(limit):
                session = await self._request(
                    conn.link, authority, path, _header_list(config.headers, headers),
                    tuple(protocols or ()), (host, port),
                )  # fmt: skip
        except TimeoutError:
            if pool_with is None:
                await conn.close()
            raise ConnectTimeout(f"no answer to the CONNECT for {url} within {limit} s") from None
        except BaseException:
            if pool_with is None:
                await conn.close()
            raise
        self._sessions.add(session)
        session.events.on(EventType.CLOSED, lambda _: self._on_session_closed(session, conn))
        return session

    def _connection_of(self, session: WebTransportSession) -> _Connection:
        for conn in self._connections:
            if conn.link is session.link and not conn.closed:
                return conn
        raise WebTransportError("that session's connection is not open")

    async def _open_connection(self, host: str, port: int, limit: float) -> _Connection:
        config = self.config
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
                    quic_connect(host, port, qconfig, session_setup=setup)
                )
        except TimeoutError:
            await stack.aclose()
            raise ConnectTimeout(f"QUIC handshake with {host}:{port} timed out") from None
        except ConnectionClosed as exc:
            await stack.aclose()
            raise connection_error(exc.error_code, exc.reason, exc.by_peer) from None
        except OSError as exc:
            await stack.aclose()
            raise ConnectionFailed(f"cannot connect to {host}:{port}: {exc}") from exc
        conn = _Connection(stack, links[0])
        self._connections.add(conn)
        return conn

    async def _request(
        self,
        link: WtLink,
        authority: str,
        path: str,
        headers: list[tuple[bytes, bytes]],
        protocols: tuple[str, ...],
        remote: tuple[str, int],
    ) -> WebTransportSession:
        link.check_open()
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
        return await future

    def _on_session_closed(self, session: WebTransportSession, conn: _Connection) -> None:
        self._sessions.discard(session)

        async def finish() -> None:
            link = conn.link
            await link.wait_stream_flushed(session.session_id, 2.0)
            if not link.sessions and not link.pending:
                with contextlib.suppress(Exception):
                    await link.aclose(H3ErrorCode.H3_NO_ERROR)
                await conn.close()
                self._connections.discard(conn)

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
