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
SessionClosed /       the session (:class:`SessionEndpoint`)
SessionDraining /
DatagramReceived /
FlowCreditAvailable /
StreamOpened
StreamData / Reset /  the stream (:class:`StreamEndpoint`), by QUIC stream ID
StopSending
====================  ============================================================

A QUIC ``DatagramReceived`` takes a shortcut when it can (issue 10: one per datagram
of a ping-pong): :meth:`WebTransportConnection.datagram_route` says whether all the core
and HTTP/3 would do with it is one ``DatagramReceived`` for an established session (the
query changes nothing); then its payload goes to that session's ``on_datagram`` at
once, with no HTTP/3 or WebTransport event made. Anything else takes the general path.

The link is the only object that touches the core (:attr:`wt`) and the QUIC
connection. Sessions and streams talk to it through its small public interface —
commands (``open_stream``, ``send_stream_data``, ``consume``, ``close_session``, ...),
``flush`` to have the pump transmit, ``wait_progress`` to wait for the next transmit
(acknowledgments and credit may have changed), and the stream table
(``add_stream``/``remove_stream``) — and it calls them back only through the
``on_*`` methods of :class:`SessionEndpoint` and :class:`StreamEndpoint`.

Receive backpressure is flow control: a stream's bytes are credited (QUIC stream and
connection credit, draft-16 WT_MAX_DATA) only when the application reads them
(:meth:`WtLink.consume`), so a reader that does not read holds at most the windows we
advertised and the peer's writer blocks.

Errors: nothing escapes the QUIC event callback. The core never raises on peer input;
an exception here anyway is a bug of ours: it is logged once and closes that
connection with H3_INTERNAL_ERROR, and the endpoint goes on serving the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from h3.errors import H3ErrorCode
from pywebtransport.exceptions import CertificateError, ConnectionFailed, SessionRejected
from pywebtransport.protocol import Draft, WebTransportConfiguration, WebTransportConnection
from pywebtransport.protocol import WebTransportError as ProtocolApiError
from pywebtransport.protocol import events as ev
from quic import events as qe
from quic.aio import ConnectionClosed, QuicSession
from quic.tls.alerts import AlertDescription

__all__ = [
    "SessionEndpoint",
    "SessionFactory",
    "StreamEndpoint",
    "WtLink",
    "connection_error",
    "decode_headers",
]

logger = logging.getLogger("pywebtransport")

_CONSUMED = (qe.StreamDataReceived, qe.StreamReset, qe.StopSendingReceived, qe.DatagramReceived)
_DATAGRAM = qe.DatagramReceived  # per datagram: a global, not a module attribute
_STREAM_DATA = qe.StreamDataReceived  # per stream chunk: likewise
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


class StreamEndpoint(Protocol):
    """What the link calls on a stream object (its receive and send events)."""

    stream_id: int

    def on_data(self, data: bytes, fin: bool) -> None: ...

    def on_reset(self, code: int | None, http_code: int) -> None: ...

    def on_stop_sending(self, code: int | None, http_code: int) -> None: ...

    def on_writable(self) -> None: ...

    def on_failed(self, exc: BaseException) -> None: ...


class SessionEndpoint(Protocol):
    """What the link calls on a session object."""

    session_id: int

    def on_stream_opened(self, stream_id: int, bidirectional: bool) -> None: ...

    def on_datagram(self, data: bytes) -> None: ...

    def on_credit(self) -> None: ...

    def on_draining(self) -> None: ...

    def on_closed(self, code: int, reason: str, by_peer: bool, http_code: int | None) -> None: ...


SessionFactory = Callable[[ev.SessionEstablished], SessionEndpoint]


def decode_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Header fields as a ``str`` dict (repeated fields joined with ", ").

    Names and values are interned: the fields every session of a server keeps (its
    request's) are mostly the same strings, one object each for all of them instead of
    one per session (issue 10, memory per idle session; an interned string still goes
    with its last user)."""
    intern = sys.intern
    result: dict[str, str] = {}
    for name, value in headers:
        key = intern(name.decode("latin-1"))
        text = intern(value.decode("utf-8", "replace"))
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

    __slots__ = (  # per connection: no per-instance dict (issue 10, memory)
        "__dict__",
        "_failed",
        "_on_closed",
        "_on_request",
        "_quic",
        "_settings",
        "datagram_queue",
        "datagram_queue_bytes",
        "flush",
        "is_client",
        "loop",
        "pending",
        "quic_session",
        "send_buffer_high",
        "send_buffered",
        "send_stream_data",
        "sessions",
        "stream_backlog",
        "streams",
        "termination",
        "wt",
    )

    def __init__(
        self,
        session: QuicSession,
        configuration: WebTransportConfiguration,
        *,
        datagram_queue: int = 1024,
        datagram_queue_bytes: int = 1 << 20,
        stream_backlog: int = 256,
        on_request: Callable[[WtLink, ev.SessionRequested], None] | None = None,
        on_closed: Callable[[WtLink], None] | None = None,
    ) -> None:
        self.quic_session = session
        self._quic = session.connection
        #: a writer waits while more than this many bytes of its stream are unacked
        #: (the QUIC connection's, fixed when it was made)
        self.send_buffer_high: int = session.connection.configuration.stream_send_buffer_high
        #: bytes of a stream written and not yet acknowledged: the QUIC connection's
        #: method itself (asked after every write; no call of ours around it)
        self.send_buffered: Callable[[int], int] = session.connection.send_buffered
        self.wt = WebTransportConnection(session.connection, configuration)
        # Per write and per stream, so the callees themselves, no call of ours around:
        #: have the pump transmit what was queued
        self.flush: Callable[[], None] = session.schedule_flush
        #: ``(stream_id, data, end_stream)``: queue stream data; returns how much the
        #: draft-16 session data limit let through (raises the core's WebTransportError)
        self.send_stream_data: Callable[[int, bytes | bytearray | memoryview, bool], int] = (
            self.wt.send_stream_data
        )
        self.loop = asyncio.get_running_loop()
        self.is_client = self.wt.is_client
        #: per session: datagrams and their bytes kept for the application, and streams
        #: the peer opened that the application did not take yet
        self.datagram_queue = max(1, datagram_queue)
        self.datagram_queue_bytes = max(1, datagram_queue_bytes)
        self.stream_backlog = max(1, stream_backlog)
        self.sessions: dict[int, SessionEndpoint] = {}
        self.streams: dict[int, StreamEndpoint] = {}
        #: client: session ID -> (future, factory building the session object)
        self.pending: dict[int, tuple[asyncio.Future[Any], SessionFactory]] = {}
        self._settings: asyncio.Future[None] | None = None  # made when asked (settings)
        self.termination: qe.ConnectionTerminated | None = None
        self._on_request = on_request
        self._on_closed = on_closed
        self._failed = False
        session.event_listener = self._on_quic_event

    @property
    def settings(self) -> asyncio.Future[None]:
        """Done once the peer's SETTINGS arrived; failed with the connection's error if
        it ended first. Made when first asked (a server never asks: no future per
        connection, issue 10), settled at once if the answer is known already."""
        settings = self._settings
        if settings is None:
            settings = self._settings = self.loop.create_future()
            term = self.termination
            if self.wt.peer_settings is not None:
                settings.set_result(None)
            elif term is not None:
                settings.set_exception(
                    connection_error(term.error_code, term.reason_phrase, term.by_peer)
                )
                settings.exception()  # mark retrieved
        return settings

    # -- input ------------------------------------------------------------------------

    def _on_quic_event(self, event: qe.QuicEvent) -> bool:
        """The QUIC session's listener: never raises (an asyncio callback runs it)."""
        try:
            if type(event) is _STREAM_DATA:  # per stream chunk: the common case first
                self.wt.handle_event(event)
                settings = self._settings  # the SETTINGS come on the control stream
                if (
                    settings is not None
                    and not settings.done()
                    and self.wt.peer_settings is not None
                ):
                    settings.set_result(None)
                self.process()
                self.quic_session.flush_after_event()
                return True
            if type(event) is _DATAGRAM:  # per datagram: the shortcut (module docstring)
                route = self.wt.datagram_route(event.data)
                if route is not None:
                    # A datagram that the layers below have nothing to do with, straight
                    # to its session. No flush is asked for: nothing was written (the
                    # pump transmits after every batch of events anyway, and a reply
                    # asks for its own).
                    session_id, data = route
                    session = self.sessions.get(session_id)
                    if session is not None:
                        try:
                            session.on_datagram(data)
                        except Exception:  # as process(): keep the link alive
                            logger.exception("handling a datagram of session %d failed", session_id)
                    return True
            return self._handle_quic_event(event)
        except Exception:
            self._internal_error()
            return isinstance(event, _CONSUMED)

    def _handle_quic_event(self, event: qe.QuicEvent) -> bool:
        if type(event) is qe.DatagramReceived:  # per datagram: no settings, no close
            self.wt.handle_event(event)
            self.process()
            self.quic_session.schedule_flush()
            return True
        if isinstance(event, qe.StreamWritable):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.on_writable()
            return False
        if not isinstance(event, _WT_INPUT):
            return False
        if isinstance(event, qe.ConnectionTerminated) and self.termination is None:
            self.termination = event  # pending connects fail with the connection's error
        self.wt.handle_event(event)
        settings = self._settings
        if settings is not None and not settings.done() and self.wt.peer_settings is not None:
            settings.set_result(None)
        self.process()
        if isinstance(event, qe.ConnectionTerminated):
            self._on_terminated(event)
        self.quic_session.flush_after_event()
        return isinstance(event, _CONSUMED)

    def _internal_error(self) -> None:
        if not self._failed:
            self._failed = True
            logger.exception("WebTransport link failed; closing the connection")
        with contextlib.suppress(Exception):
            self.quic_session.close(H3ErrorCode.H3_INTERNAL_ERROR, "internal error")

    def process(self) -> None:
        """Route every queued WebTransport event (see the module docstring)."""
        wt = self.wt
        while (event := wt.next_event()) is not None:
            try:
                self._route(event)
            except Exception:  # an application callback failed: keep the link alive
                logger.exception("handling %r failed", event)

    def _route(self, event: ev.WebTransportEvent) -> None:
        if type(event) is ev.DatagramReceived:  # the per-datagram case first
            session = self.sessions.get(event.session_id)
            if session is not None:
                session.on_datagram(event.data)
            return
        if isinstance(event, ev.StreamData):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.on_data(event.data, event.fin)
            elif event.data:  # nobody holds this stream any more: its bytes are read
                self.wt.consume_stream_data(event.stream_id, len(event.data))
        elif type(event) is ev.StreamOpened:  # per peer stream: no test chain below
            session = self.sessions.get(event.session_id)
            if session is not None:
                session.on_stream_opened(event.stream_id, event.bidirectional)
            else:  # no session object: nobody reads it
                self.refuse_stream(event.stream_id)
        elif isinstance(event, (ev.StreamReset, ev.StopSending)):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                if isinstance(event, ev.StreamReset):
                    stream.on_reset(event.code, event.http_code)
                else:
                    stream.on_stop_sending(event.code, event.http_code)
        elif isinstance(event, ev.SessionRequested):
            if self._on_request is not None:
                self._on_request(self, event)
            else:
                # no application: the resource supports no WebTransport (draft-16 §3.2)
                self.wt.reject(event.session_id, 405, [(b"allow", b"")])
        elif isinstance(event, ev.SessionEstablished):
            self._on_established(event)
        elif isinstance(event, ev.SessionRejected):
            if self.termination is not None:
                return  # reported by _on_terminated with the connection's error
            entry = self.pending.pop(event.session_id, None)
            if entry is not None and not entry[0].done():
                exc = SessionRejected(event.status, event.reason, decode_headers(event.headers))
                entry[0].set_exception(exc)
        else:
            self._route_to_session(event)

    def _route_to_session(self, event: ev.WebTransportEvent) -> None:
        if isinstance(event, ev.SessionClosed):
            session = self.sessions.pop(event.session_id, None)
            if session is not None:
                session.on_closed(event.code, event.reason, event.by_peer, event.http_code)
            return
        if not isinstance(
            event,
            (ev.StreamOpened, ev.DatagramReceived, ev.SessionDraining, ev.FlowCreditAvailable),
        ):
            return
        session = self.sessions.get(event.session_id)
        if session is None:
            if isinstance(event, ev.StreamOpened):  # no session object: nobody reads it
                self.refuse_stream(event.stream_id)
            return
        if isinstance(event, ev.StreamOpened):
            session.on_stream_opened(event.stream_id, event.bidirectional)
        elif isinstance(event, ev.DatagramReceived):
            session.on_datagram(event.data)
        elif isinstance(event, ev.SessionDraining):
            session.on_draining()
        else:
            session.on_credit()

    def _on_established(self, event: ev.SessionEstablished) -> None:
        entry = self.pending.pop(event.session_id, None)
        if entry is None:
            return
        future, factory = entry
        session = factory(event)  # registered now: its streams may follow
        self.sessions[event.session_id] = session
        if not future.done():
            future.set_result(session)
        else:  # the connect was abandoned (timeout, cancel)
            self.sessions.pop(event.session_id, None)
            with contextlib.suppress(ProtocolApiError):
                self.wt.close_session(event.session_id, 0, "")

    def _on_terminated(self, event: qe.ConnectionTerminated) -> None:
        exc = connection_error(event.error_code, event.reason_phrase, event.by_peer)
        for future, _ in self.pending.values():
            if not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved
        self.pending.clear()
        settings = self._settings
        if settings is not None and not settings.done():
            settings.set_exception(exc)
            settings.exception()
        for session in list(self.sessions.values()):  # the core reported them already
            session.on_closed(0, event.reason_phrase, True, event.error_code)
        self.sessions.clear()
        for stream in list(self.streams.values()):
            stream.on_failed(exc)
        self.streams.clear()
        if self._on_closed is not None:
            self._on_closed(self)

    # -- state ------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self.termination is not None or self.quic_session.is_closed

    def check_open(self) -> None:
        term = self.termination or self.quic_session.termination
        if term is not None:
            raise connection_error(term.error_code, term.reason_phrase, term.by_peer)

    @property
    def peer_address(self) -> Any:
        return self._quic.peer_address

    @property
    def draft(self) -> Draft | None:
        """Client: the draft chosen from the server's SETTINGS (None before they
        arrived, or when no draft is common)."""
        return self.wt.draft

    @property
    def peer_settings(self) -> Mapping[int, int] | None:
        """The peer's HTTP/3 SETTINGS (None before they arrived)."""
        return self.wt.peer_settings

    @property
    def configuration(self) -> WebTransportConfiguration:
        return self.wt.config

    @property
    def flow_control(self) -> bool:
        """Draft-16 session flow control is on for this connection (§5.1)."""
        return self.wt.flow_control

    @property
    def draft_flow_control(self) -> bool:
        """Session flow control is on for the connection's draft (draft-13 or -16, both
        endpoints declared it; False before the draft is known)."""
        draft = self.draft
        return draft is not None and self.wt.flow_control_for(draft)

    @property
    def max_datagram_payload(self) -> int:
        """Largest QUIC DATAGRAM payload that fits one packet now (0: none)."""
        return self._quic.max_datagram_payload

    def connection_info(self) -> dict[str, Any]:
        """RTT, congestion window, version and path MTU of the QUIC connection
        (diagnostics)."""
        stats = self._quic.stats()
        return {
            "rtt": stats.smoothed_rtt,
            "min_rtt": stats.min_rtt,
            "cwnd": stats.congestion_window,
            "bytes_in_flight": stats.bytes_in_flight,
            "quic_version": stats.version,
            # the path MTU in use and datagrams dropped when it shrank (docs/datagrams.md)
            "path_max_datagram_size": stats.max_datagram_size,
            "datagrams_dropped_too_large": stats.datagrams_dropped_too_large,
        }

    def stats(self) -> dict[str, Any]:
        return {"sessions": len(self.sessions), "streams": len(self.streams)}

    def table_sizes(self) -> dict[str, int]:
        """The size of every table of this link and of its core (0 when idle)."""
        sizes = {
            "link_sessions": len(self.sessions),
            "link_streams": len(self.streams),
            "link_pending": len(self.pending),
        }
        sizes.update((f"core_{k}", v) for k, v in self.wt.table_sizes().items())
        return sizes

    # -- commands (sessions, streams, client and server) -------------------------------

    async def wait_progress(self) -> None:
        """Wait for the pump's next transmit; ConnectionFailed once closed."""
        try:
            await self.quic_session.wait_progress()
        except ConnectionClosed as exc:
            raise connection_error(exc.error_code, exc.reason, exc.by_peer) from None

    def connect(
        self,
        authority: str,
        path: str,
        headers: list[tuple[bytes, bytes]],
        protocols: tuple[str, ...],
        future: asyncio.Future[Any],
        factory: SessionFactory,
    ) -> int:
        """Client: start a session; ``future`` gets what ``factory`` builds (or the
        rejection). Raises the core's WebTransportError."""
        session_id = self.wt.connect(authority, path, headers, protocols)
        self.pending[session_id] = (future, factory)
        self.process()  # a local refusal (no common draft) is already queued
        self.quic_session.transmit_now()  # the caller waits for the answer: it leaves now
        return session_id

    def accept(
        self,
        session: SessionEndpoint,
        headers: list[tuple[bytes, bytes]],
        protocol: str | None,
    ) -> None:
        """Server: accept a requested session; ``session`` receives its events (the
        streams and datagrams that waited for it come right away, §4.7)."""
        self.wt.accept(session.session_id, headers, protocol)
        self.sessions[session.session_id] = session
        self.process()
        self.flush()

    def reject(self, session_id: int, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Server: refuse a requested session with an HTTP status."""
        self.wt.reject(session_id, status, headers)
        self.process()
        self.flush()

    def send_goaway(self) -> None:
        """HTTP/3 GOAWAY (RFC 9114 §5.2): the peer opens no new sessions here."""
        with contextlib.suppress(Exception):  # the connection may be closing
            self.wt.send_goaway()
        self.flush()

    def open_stream(self, session_id: int, bidirectional: bool) -> int:
        """Open a stream (raises FlowControlBlocked, StreamLimitReached, or the core's
        WebTransportError)."""
        return self.wt.open_stream(session_id, bidirectional)

    def consume(self, stream_id: int, nbytes: int) -> None:
        """The application read ``nbytes`` of a stream: their credit goes back (a
        transmit only when that queued a credit frame or capsule)."""
        if self.wt.consume_stream_data(stream_id, nbytes):
            self.flush()

    def reset_stream(self, stream_id: int, code: int) -> None:
        self.wt.reset_stream(stream_id, code)
        self.flush()

    def set_stop_sending_answer(self, stream_id: int, code: int) -> None:
        self.wt.set_stop_sending_answer(stream_id, code)

    def stop_sending(self, stream_id: int, code: int) -> None:
        self.wt.stop_sending(stream_id, code)
        self.flush()

    def refuse_stream(self, stream_id: int) -> None:
        """A peer stream nobody will take: stop and reset it (WT_BUFFERED_STREAM_REJECTED,
        draft-16 §4.7, the code for streams the receiver cannot buffer)."""
        code = H3ErrorCode.WT_BUFFERED_STREAM_REJECTED
        with contextlib.suppress(ProtocolApiError):
            self.wt.abandon_stream(stream_id, code)
        self.flush()

    def send_datagram(self, session_id: int, data: bytes | bytearray | memoryview) -> None:
        """ConnectionFailed once the connection is closed (:meth:`check_open`, inline:
        per datagram), else the layers' errors (ValueError: too large)."""
        term = self.termination or self.quic_session.termination
        if term is not None:
            raise connection_error(term.error_code, term.reason_phrase, term.by_peer)
        self.wt.send_datagram(session_id, data)
        self.quic_session.transmit_reply()  # a task's reply leaves at once (the pump)

    def close_session(self, session_id: int, code: int, reason: str) -> None:
        """WT_CLOSE_SESSION and FIN; the session's ``on_closed`` runs before this returns."""
        with contextlib.suppress(ProtocolApiError):  # ended meanwhile
            self.wt.close_session(session_id, code, reason)
        self.quic_session.transmit_now()  # the caller waits for its acknowledgement
        self.process()

    def drain_session(self, session_id: int) -> bool:
        sent = self.wt.drain_session(session_id)
        self.flush()
        return sent

    def export_keying_material(
        self, session_id: int, label: bytes, context: bytes, length: int
    ) -> bytes:
        return self.wt.export_keying_material(session_id, label, context, length)

    # -- the stream table -----------------------------------------------------------------

    def add_stream(self, stream: StreamEndpoint) -> None:
        self.streams[stream.stream_id] = stream

    def remove_stream(self, stream_id: int) -> None:
        self.streams.pop(stream_id, None)

    # -- sending progress -------------------------------------------------------------

    async def wait_stream_flushed(self, stream_id: int, timeout: float) -> None:
        """Wait (up to ``timeout``) until a stream's sent data was acknowledged."""
        with contextlib.suppress(TimeoutError, ConnectionFailed):
            async with asyncio.timeout(timeout):
                while self.send_buffered(stream_id) and not self.is_closed:
                    await self.wait_progress()

    async def aclose(self, error_code: int = H3ErrorCode.H3_NO_ERROR, reason: str = "") -> None:
        """Close the QUIC connection (after the session streams were flushed)."""
        for session_id in list(self.sessions):
            await self.wait_stream_flushed(session_id, 1.0)
        await self.quic_session.aclose(error_code, reason, timeout=2.0)
