"""Glue between one QUIC connection (:mod:`quic.aio`) and the Sans-I/O WebTransport core.

Theory of operation
-------------------
A :class:`WtLink` is installed by the ``session_setup`` hook of :func:`quic.aio.connect`
/ :func:`quic.aio.serve` as the :class:`~quic.aio.QuicSession`'s ``event_listener``,
before the connection reports any event. Every QUIC event it is given goes to
:meth:`WebTransportConnection.handle_event` (except ``StreamWritable``, which only wakes
a writer); stream and datagram events are consumed, so the QUIC session's own
readers never see them. The WebTransport events are then drained with ``next_event``
and routed:

====================  ============================================================
event                 goes to
====================  ============================================================
SessionRequested      the server's ``on_request`` callback (a SessionRequest)
SessionEstablished    the pending client ``connect`` future
SessionRejected       the pending client ``connect`` future (as an exception)
SessionClosed /       the :class:`~pywebtransport.session.WebTransportSession`
SessionDraining /
DatagramReceived /
FlowCreditAvailable
StreamOpened          the session, which creates the stream object
StreamData / Reset /  the stream object (by QUIC stream ID)
StopSending
====================  ============================================================

Commands (``open_stream``, ``send_stream_data``, ...) are called on :attr:`wt` by the
session and stream objects, which then call :meth:`WtLink.flush`; after a command
that can itself produce WebTransport events (``accept``, ``close_session``),
:meth:`WtLink.process` drains them. :meth:`WtLink.wait_progress` waits for the pump's
next transmit (acknowledgments and credit may have changed), turning a closed QUIC
connection into :class:`~pywebtransport.exceptions.ConnectionFailed`.

Receive backpressure: a stream whose unread bytes exceed the configured buffer asks
QUIC to hold its data back (:meth:`QuicConnection.pause_stream_receive`), so the peer
runs into its stream flow-control window until the application reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from h3.errors import H3ErrorCode
from pywebtransport.exceptions import CertificateError, ConnectionFailed, SessionRejected
from pywebtransport.protocol import WebTransportConfiguration, WebTransportConnection
from pywebtransport.protocol import WebTransportError as ProtocolApiError
from pywebtransport.protocol import events as ev
from quic import events as qe
from quic.aio import ConnectionClosed, QuicSession
from quic.tls.alerts import AlertDescription

if TYPE_CHECKING:
    from pywebtransport.session import WebTransportSession
    from pywebtransport.stream import _StreamBase

__all__ = ["SessionFactory", "WtLink", "connection_error", "decode_headers"]

SessionFactory = Callable[[ev.SessionEstablished], "WebTransportSession"]

logger = logging.getLogger("pywebtransport")

_CONSUMED = (qe.StreamDataReceived, qe.StreamReset, qe.StopSendingReceived, qe.DatagramReceived)
_WT_INPUT = (*_CONSUMED, qe.HandshakeCompleted, qe.ProtocolNegotiated, qe.ConnectionTerminated)
_CRYPTO_ERROR = 0x100  # RFC 9001 §4.8: CRYPTO_ERROR = 0x100 + TLS alert
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


def decode_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Header fields as a ``str`` dict (repeated fields joined with ", ")."""
    result: dict[str, str] = {}
    for name, value in headers:
        key = name.decode("latin-1")
        text = value.decode("utf-8", "replace")
        result[key] = f"{result[key]}, {text}" if key in result else text
    return result


def connection_error(error_code: int, reason: str, by_peer: bool = False) -> ConnectionFailed:
    """The API exception for a closed QUIC connection."""
    side = "peer" if by_peer else "local"
    message = f"connection closed by {side} (code {error_code:#x})"
    if reason:
        message += f": {reason}"
    if error_code in _CERTIFICATE_ALERTS:
        return CertificateError(message, error_code, reason)
    return ConnectionFailed(message, error_code, reason)


class WtLink:
    """WebTransport over one :class:`QuicSession` (both roles); see the module doc."""

    def __init__(
        self,
        session: QuicSession,
        configuration: WebTransportConfiguration,
        *,
        receive_buffer: int = 1 << 20,
        datagram_queue: int = 1024,
        on_request: Callable[[WtLink, ev.SessionRequested], None] | None = None,
        on_closed: Callable[[WtLink], None] | None = None,
    ) -> None:
        self.quic_session = session
        self.quic = session.connection
        self.wt = WebTransportConnection(session.connection, configuration)
        self.loop = asyncio.get_running_loop()
        self.receive_buffer = receive_buffer
        self.datagram_queue = datagram_queue
        self.sessions: dict[int, WebTransportSession] = {}
        self.streams: dict[int, _StreamBase] = {}
        #: client: session ID -> (future, factory building the session object)
        self.pending: dict[int, tuple[asyncio.Future[WebTransportSession], SessionFactory]] = {}
        self.settings: asyncio.Future[None] = self.loop.create_future()
        self.termination: qe.ConnectionTerminated | None = None
        self._on_request = on_request
        self._on_closed = on_closed
        session.event_listener = self._on_quic_event

    # -- input ------------------------------------------------------------------------

    def _on_quic_event(self, event: qe.QuicEvent) -> bool:
        if isinstance(event, qe.StreamWritable):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream._wake_writer()
            return False
        if not isinstance(event, _WT_INPUT):
            return False
        if isinstance(event, qe.ConnectionTerminated) and self.termination is None:
            self.termination = event  # pending connects fail with the connection's error
        self.wt.handle_event(event)
        if self.wt.peer_settings is not None and not self.settings.done():
            self.settings.set_result(None)
        self.process()
        if isinstance(event, qe.ConnectionTerminated):
            self._on_terminated(event)
        self.quic_session.schedule_flush()
        return isinstance(event, _CONSUMED)

    def process(self) -> None:
        """Route every queued WebTransport event (see the module docstring)."""
        wt = self.wt
        while (event := wt.next_event()) is not None:
            try:
                self._route(event)
            except Exception:  # an application callback failed: keep the link alive
                logger.exception("handling %r failed", event)

    def _route(self, event: ev.WebTransportEvent) -> None:
        if isinstance(event, ev.StreamData):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream._on_data(event.data, event.fin)
        elif isinstance(event, ev.StreamOpened):
            session = self.sessions.get(event.session_id)
            if session is not None:
                session._on_stream_opened(event.stream_id, event.bidirectional)
        elif isinstance(event, ev.DatagramReceived):
            session = self.sessions.get(event.session_id)
            if session is not None:
                session._on_datagram(event.data)
        elif isinstance(event, (ev.StreamReset, ev.StopSending)):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                if isinstance(event, ev.StreamReset):
                    stream._on_reset(event.code, event.http_code)
                else:
                    stream._on_stop_sending(event.code, event.http_code)
        elif isinstance(event, ev.SessionRequested):
            if self._on_request is not None:
                self._on_request(self, event)
            else:
                self.wt.reject(event.session_id, 404)
        elif isinstance(event, ev.SessionEstablished):
            entry = self.pending.pop(event.session_id, None)
            if entry is not None:
                future, factory = entry
                session = factory(event)  # registered now: its streams may follow
                self.sessions[event.session_id] = session
                if not future.done():
                    future.set_result(session)
                else:  # the connect was abandoned (timeout, cancel)
                    with contextlib.suppress(ProtocolApiError):
                        self.wt.close_session(event.session_id, 0, "")
        elif isinstance(event, ev.SessionRejected):
            if self.termination is not None:
                return  # reported by _on_terminated with the connection's error
            entry = self.pending.pop(event.session_id, None)
            if entry is not None and not entry[0].done():
                exc = SessionRejected(event.status, event.reason, decode_headers(event.headers))
                entry[0].set_exception(exc)
        elif isinstance(event, ev.SessionClosed):
            session = self.sessions.pop(event.session_id, None)
            if session is not None:
                session._on_closed(event.code, event.reason, event.by_peer, event.http_code)
        elif isinstance(event, ev.SessionDraining):
            session = self.sessions.get(event.session_id)
            if session is not None:
                session._on_draining()
        elif isinstance(event, ev.FlowCreditAvailable):
            session = self.sessions.get(event.session_id)
            if session is not None:
                session._on_credit()

    def _on_terminated(self, event: qe.ConnectionTerminated) -> None:
        exc = connection_error(event.error_code, event.reason_phrase, event.by_peer)
        for future, _ in self.pending.values():
            if not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved
        self.pending.clear()
        if not self.settings.done():
            self.settings.set_exception(exc)
            self.settings.exception()
        for session in list(self.sessions.values()):  # the core reported them already
            session._on_closed(0, event.reason_phrase, True, event.error_code)
        self.sessions.clear()
        for stream in list(self.streams.values()):
            stream._fail(exc)
        self.streams.clear()
        if self._on_closed is not None:
            self._on_closed(self)

    # -- output -----------------------------------------------------------------------

    def flush(self) -> None:
        """Have the pump transmit what was queued."""
        self.quic_session.schedule_flush()

    @property
    def is_closed(self) -> bool:
        return self.termination is not None or self.quic_session.is_closed

    def check_open(self) -> None:
        term = self.termination or self.quic_session.termination
        if term is not None:
            raise connection_error(term.error_code, term.reason_phrase, term.by_peer)

    async def wait_progress(self) -> None:
        """Wait for the pump's next transmit; ConnectionFailed once closed."""
        try:
            await self.quic_session.wait_progress()
        except ConnectionClosed as exc:
            raise connection_error(exc.error_code, exc.reason, exc.by_peer) from None

    def pause_receive(self, stream_id: int, paused: bool) -> None:
        with contextlib.suppress(Exception):  # the stream may be gone already
            self.quic.pause_stream_receive(stream_id, paused)
        if not paused:
            self.flush()  # deliver what was held back, send MAX_STREAM_DATA

    async def wait_stream_flushed(self, stream_id: int, timeout: float) -> None:
        """Wait (up to ``timeout``) until a stream's sent data was acknowledged."""
        with contextlib.suppress(TimeoutError, ConnectionFailed):
            async with asyncio.timeout(timeout):
                while self.quic.streams.send_buffered(stream_id) and not self.is_closed:
                    await self.wait_progress()

    async def aclose(self, error_code: int = H3ErrorCode.H3_NO_ERROR, reason: str = "") -> None:
        """Close the QUIC connection (after the session streams were flushed)."""
        for session_id in list(self.sessions):
            await self.wait_stream_flushed(session_id, 1.0)
        await self.quic_session.aclose(error_code, reason, timeout=2.0)

    def register(self, session: WebTransportSession) -> None:
        self.sessions[session.session_id] = session

    def stats(self) -> dict[str, Any]:
        return {"sessions": len(self.sessions), "streams": len(self.streams)}
